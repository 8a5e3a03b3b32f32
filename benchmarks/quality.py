"""Quality after M minutes: productgan's Fashion-MNIST preset against the reference recipe.

Both train for the same wall-clock minutes on this machine, then both generators are scored the
same way with productgan's evaluator at the native 28x28 (the reference's 64x64 output is
scaled down with an antialiased filter): fid_productgan, precision / recall, the rarest class's
share, on the validation and the test split, next to the real-data floor. Prints a table with
the targets and writes benchmarks/results/quality-<machine>-<minutes>min.json.

    python benchmarks/quality.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from throughput import matmul_gflop_per_s

from productgan.config import PRESETS, RunConfig, from_dict, preset_settings
from productgan.data import open_dataset
from productgan.data.source_kind import preset_for
from productgan.evaluator import Evaluator, features_and_probabilities, native_images
from productgan.machine import cpu_model, machine_label
from productgan.reports.evaluation import evaluate_run
from productgan.run import load_run_config
from productgan.train import train
from productgan.train.precision import cpu_has_native_bf16

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("fid_productgan", "precision", "recall", "rarest_class_share")


def run_productgan(preset: str, minutes: float, seed: int, out: Path, n: int) -> dict:
    config = from_dict(RunConfig, preset_settings(preset, {"out": str(out), "minutes": minutes, "seed": seed}))
    config.train.log_every = 100
    started = time.perf_counter()
    summary = train(config, progress=False)
    wall = time.perf_counter() - started
    recorded = load_run_config(out).train  # what --train.precision auto chose, and on what figures
    scores = {
        split: evaluate_run(out, split=split, n=n, seed=seed, progress=False, floor=split == "test")
        for split in ("val", "test")
    }
    return {
        "preset": preset,
        "precision": recorded.precision,
        "precision_measured": recorded.precision_measured,
        "steps": summary["step"],
        "images_seen": summary["images_seen"],
        "train_minutes": round(wall / 60, 2),
        "val": {k: scores["val"]["metrics"][k] for k in KEYS},
        "test": {k: scores["test"]["metrics"][k] for k in KEYS},
        "floor": {k: scores["test"]["real_data_floor"][k] for k in KEYS},
        "class_shares": scores["test"]["metrics"]["class_shares"],
    }


@torch.no_grad()
def reference_images(netG: torch.nn.Module, n: int, seed: int) -> np.ndarray:
    """n images from the reference generator as its own loop would make them (train-mode
    BatchNorm, batches of 64), scaled from 64x64 to the native 28x28."""
    from reference import BATCH, NZ

    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, n, BATCH):
        z = torch.randn(min(BATCH, n - start), NZ, 1, 1, generator=generator)
        images = netG(z)  # -1..1, N x 1 x 64 x 64
        small = F.interpolate(images, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        parts.append(((small + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(parts)


def run_reference(minutes: float, seed: int, n: int) -> dict:
    from reference import ReferenceTrainer

    dataset = open_dataset("fashion-mnist")
    train_images = native_images(dataset, "train")[:, 0]  # the same 55,000 training images, 28x28
    started = time.perf_counter()
    trainer = ReferenceTrainer(train_images, seed=seed)
    steps = 0
    while time.perf_counter() - started < minutes * 60:
        trainer.step()
        steps += 1
    wall = time.perf_counter() - started
    evaluator = Evaluator("fashion-mnist", dataset, progress=False)
    images = reference_images(trainer.netG, n, seed)
    feats, probs = features_and_probabilities(evaluator.net, images)
    scores = {
        split: evaluator.score_features(feats, probs, split, seed, memorisation=False) for split in ("val", "test")
    }
    return {
        "steps": steps,
        "images_seen": steps * 64,
        "train_minutes": round(wall / 60, 2),
        "val": {k: scores["val"][k] for k in KEYS},
        "test": {k: scores["test"][k] for k in KEYS},
        "class_shares": scores["test"]["class_shares"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--preset",
        default=preset_for("fashion-mnist"),
        choices=sorted(PRESETS),
        help="Default: the recipe `productgan train` chooses for Fashion-MNIST with no flags.",
    )
    parser.add_argument("--n", type=int, default=10_000, help="Generated images per score.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/quality", help="Folder for productgan's run.")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--results", help="File name under benchmarks/results (default: per machine and minutes).")
    args = parser.parse_args()

    ours = run_productgan(
        args.preset, args.minutes, args.seed, Path(args.work) / f"{args.preset}-{args.minutes:g}min", args.n
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ceilings = {dtype: matmul_gflop_per_s(device, dtype=dtype, repeats=3) for dtype in ("float32", "bfloat16")}
    print(
        f"productgan {args.preset}: {ours['steps']} steps, {ours['images_seen']:,} images in "
        f"{ours['train_minutes']} min, in {ours['precision']} (auto: {ours['precision_measured']})",
        flush=True,
    )
    print("matrix-product ceilings: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in ceilings.items()))
    ref = None if args.skip_reference else run_reference(args.minutes, args.seed, args.n)
    if ref:
        print(f"reference: {ref['steps']} steps, {ref['images_seen']:,} images in {ref['train_minutes']} min")

    print(
        f"\n{'metric (n=' + str(args.n) + ')':<24}{'ours val':>10}{'ours test':>10}{'ref val':>10}{'ref test':>10}"
        f"{'floor':>10}"
    )
    for key in KEYS:
        theirs = (ref["val"][key], ref["test"][key]) if ref else ("-", "-")
        cells = [ours["val"][key], ours["test"][key], *theirs, ours["floor"][key]]
        print(f"{key:<24}" + "".join(f"{c:>10.4f}" if isinstance(c, float) else f"{c:>10}" for c in cells))
    checks = {
        "recall >= 0.85 x floor": ours["test"]["recall"] >= 0.85 * ours["floor"]["recall"],
        "no class under 8%": ours["test"]["rarest_class_share"] >= 0.08,
    }
    if ref:
        checks["test fid <= 1/10 of the reference"] = (
            ours["test"]["fid_productgan"] <= ref["test"]["fid_productgan"] / 10
        )
    print("\ntargets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks.items()))
    if ref:
        print(f"fid ratio ours / reference: {ours['test']['fid_productgan'] / ref['test']['fid_productgan']:.3f}")

    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": "quality",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "n": args.n,
        "seed": args.seed,
        "machine": {
            "label": machine_label(torch.cuda.get_device_name() if torch.cuda.is_available() else None),
            "cpu_model": cpu_model(),
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "native_bf16": cpu_has_native_bf16(),
            "matmul_gflop_per_s": ceilings,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "productgan": ours,
        "reference": ref,
        "targets": checks,
    }
    path = RESULTS / (args.results or f"quality-{result['machine']['label']}-{args.minutes:g}min.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
