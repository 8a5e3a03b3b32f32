"""Variants of the fmnist-32 preset under one budget: how a change trades speed (images seen in
the minutes) against quality, or, with an image budget, what it does per image seen.

Each variant trains `--preset fmnist-32` (as the preset is now: each row records it) plus its
flags, once per seed; its exported (EMA) generator is then scored on the validation split with N
images. The test split stays untouched, for benchmarks/quality.py. With a minutes budget the
variants train one at a time with every thread of this machine; with an image budget speed does
not count, so `--parallel P` may train P of them at once (a GPU is mostly idle under one process
at batch 128). A variant whose run folder already holds an export is scored again, not
retrained. Prints a table and writes benchmarks/results/preset_variants.json (10 minutes on the
CPU) or preset_variants-<budget>-<device>.json; rows measured by an earlier call are kept unless
run again.

    python benchmarks/preset_variants.py --minutes 10 --variants "D width 32 (the preset before)"
    python benchmarks/preset_variants.py --images 730112 --device cuda --parallel 8 \\
        --variants fmnist-32 "Adam betas (0.5, 0.999) (the preset before)" --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("fid_productgan", "precision", "recall", "rarest_class_share")

VARIANTS = {
    "fmnist-32": [],
    "D width 32 (the preset before)": ["--model.ndf", "32"],
    "D width 16, G width 48": ["--model.ndf", "16", "--model.ngf", "48"],
    "D width 16, R1 0.1": ["--model.ndf", "16", "--loss.r1-gamma", "0.1"],
    "D width 16, batch 256, lr 6e-4": ["--model.ndf", "16", "--batch-size", "256", "--optim.lr-g", "6e-4",
                                       "--optim.lr-d", "6e-4"],
    "D width 16, batch 64, lr 2e-4": ["--model.ndf", "16", "--batch-size", "64", "--optim.lr-g", "2e-4",
                                      "--optim.lr-d", "2e-4"],
    "Adam betas (0.5, 0.999) (the preset before)": ["--optim.beta2", "0.999"],
    "Adam betas (0.5, 0.99)": ["--optim.beta2", "0.99"],
    "Adam betas (0, 0.99)": ["--optim.beta1", "0.0", "--optim.beta2", "0.99"],
    "Adam betas (0.5, 0.9)": ["--optim.beta2", "0.9"],
    "Adam betas (0, 0.9)": ["--optim.beta1", "0.0", "--optim.beta2", "0.9"],
    "Adam betas (0.5, 0.99), lr 3e-4": ["--optim.beta2", "0.99", "--optim.lr-g", "3e-4", "--optim.lr-d", "3e-4"],
    "Adam betas (0.5, 0.99), lr 6e-4": ["--optim.beta2", "0.99", "--optim.lr-g", "6e-4", "--optim.lr-d", "6e-4"],
    "D learning rate 2e-4": ["--optim.lr-d", "2e-4"],
    "label smoothing 0.9": ["--loss.label-smoothing", "0.9"],
    "linear lr decay": ["--optim.lr-decay", "linear"],
    "linear lr decay from 6e-4": ["--optim.lr-decay", "linear", "--optim.lr-g", "6e-4", "--optim.lr-d", "6e-4"],
}


def results_path(args: argparse.Namespace) -> Path:
    if args.images is None and args.minutes == 10.0 and args.device == "cpu":
        return RESULTS / "preset_variants.json"
    budget = f"{args.images}img" if args.images is not None else f"{args.minutes:g}min"
    return RESULTS / f"preset_variants-{budget}-{args.device}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=10.0)
    budget.add_argument("--images", type=int, help="Train each variant on this many images instead.")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu", help="Where to train and score (cpu, cuda, cuda:1, ...).")
    parser.add_argument("--parallel", type=int, default=1, help="Variants trained at once (image budgets only).")
    parser.add_argument("--work", default="runs/preset-variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if args.parallel < 1 or (args.parallel > 1 and args.images is None):
        parser.error("--parallel needs an image budget (--images): under a minutes budget runs must not share "
                     "the machine.")
    if args.images is not None:
        args.minutes = None

    from productgan.config import PRESETS
    from productgan.evaluate import evaluate_run

    budget_flags = ["--images", str(args.images)] if args.images is not None else ["--minutes", str(args.minutes)]
    budget_name = f"{args.images}img" if args.images is not None else f"{args.minutes:g}min"
    jobs = []
    for name in args.variants:
        for seed in args.seeds:
            slug = "".join(c if c.isalnum() else "-" for c in name)
            folder = Path(args.work) / f"{slug}-{budget_name}-{args.device.replace(':', '')}-seed{seed}"
            jobs.append((name, seed, folder))

    # Train what is missing, at most --parallel at a time.
    pending = [job for job in jobs if not (job[2] / "generator" / "config.json").is_file()]
    for name, seed, folder in jobs:
        if (name, seed, folder) not in pending:
            print(f"{name} (seed {seed}): {folder} holds an export already; scoring it again", flush=True)
    running: list[tuple[str, int, subprocess.Popen]] = []

    def finish(entry: tuple[str, int, subprocess.Popen]) -> None:
        name, seed, process = entry
        stderr = process.communicate()[1]
        if process.returncode != 0:
            for _, _, other in running:
                other.kill()
            raise SystemExit(f"{name} (seed {seed}) failed:\n{stderr[-2000:]}")

    for name, seed, folder in pending:
        if len(running) == args.parallel:
            finish(running.pop(0))
        cmd = [sys.executable, "-m", "productgan", "train", "--preset", "fmnist-32", *VARIANTS[name],
               "--out", str(folder), *budget_flags, "--seed", str(seed), "--train.device", args.device,
               "--train.log-every", "100", "--no-progress"]
        if args.parallel > 1:
            cmd += ["--train.threads", "2"]
        running.append((name, seed, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                     text=True)))
    while running:
        finish(running.pop(0))

    path = results_path(args)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    for row in previous.get("rows", []):  # files written before seeds were per row had one seed
        row.setdefault("seed", previous.get("seed", 0))
    rows = {(r["variant"], r["seed"]): r for r in previous.get("rows", [])}
    for name, seed, folder in jobs:
        report = evaluate_run(folder, split="val", n=args.n, seed=0, floor=False, progress=False,
                              device=args.device)
        exported = json.loads((folder / "generator" / "config.json").read_text())
        rows[name, seed] = {"variant": name, "preset": PRESETS["fmnist-32"], "flags": VARIANTS[name], "seed": seed,
                            "images_seen": exported["images_seen"], **{k: report["metrics"][k] for k in KEYS}}
        print(f"{name} (seed {seed}): {exported['images_seen']:,} images, "
              + ", ".join(f"{k} {report['metrics'][k]:.4f}" for k in KEYS), flush=True)

    print(f"\n{'variant (' + budget_name + ', ' + args.device + ')':<40}{'seeds':>6}{'images':>10}{'val fid':>9}"
          f"{'prec':>7}{'recall':>7}{'rarest':>7}")
    for name in dict.fromkeys(r["variant"] for r in rows.values()):
        group = [r for r in rows.values() if r["variant"] == name]
        means = {k: mean(r[k] for r in group) for k in ("images_seen", *KEYS)}
        print(f"{name:<40}{len(group):>6}{means['images_seen']:>10,.0f}{means['fid_productgan']:>9.3f}"
              f"{means['precision']:>7.3f}{means['recall']:>7.3f}{means['rarest_class_share']:>7.3f}")
    RESULTS.mkdir(exist_ok=True)
    import torch

    path.write_text(json.dumps({"benchmark": "preset_variants", "minutes": args.minutes, "images": args.images,
                                "device": args.device, "n": args.n, "threads": torch.get_num_threads(),
                                "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                                else None, "rows": list(rows.values())}, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
