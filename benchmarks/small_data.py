"""Small data: train on a stratified 1% of Fashion-MNIST with DiffAugment off, on every image, and
adaptive (``--augment off|on|auto``).

The runs see the same training images (1% of the 55,000-image train split: 550), the same steps
and seed, and are scored during training on the same 5,000 validation images (fid_productgan of
2,000 generated images, with the evaluator productgan trains on the small train split, as a user
with that data would get). The exported (best) generators are then scored on the test split with
the full Fashion-MNIST evaluator (trained on all 55,000 train images, so the features do not come
from the 550 images themselves), including the memorisation share against the 550 training
images, the failure augmentation is meant to prevent. Prints a table and writes
benchmarks/results/small_data.json.

    python benchmarks/small_data.py --fraction 0.01 --steps 3000
    python benchmarks/small_data.py --arms off auto --steps 2000

Each run also records the adaptive strength it ended with (``augment_p``, for ``auto``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from productgan.config import RunConfig, TrainConfig
from productgan.data import PackedDataset, open_dataset
from productgan.machine import cpu_model, machine_label, usable_cpus
from productgan.train import train

RESULTS = Path(__file__).resolve().parent / "results"


def small_dataset(out: Path, fraction: float, seed: int) -> Path:
    """Fashion-MNIST with only ``fraction`` of its train split kept (stratified); val and test whole."""
    full = open_dataset("fashion-mnist")
    train_rows = full.indices("train")
    rng = np.random.default_rng(seed)
    keep = []
    for label in range(full.num_classes):
        members = train_rows[full.labels[train_rows] == label]
        keep.append(rng.choice(members, size=max(1, round(len(members) * fraction)), replace=False))
    rows = np.sort(np.concatenate([np.concatenate(keep), full.indices("val"), full.indices("test")]))
    meta = {
        **full.meta,
        "source": f"fashion-mnist-{fraction:g}",
        "subset": f"{fraction:g} of the train split, seed {seed}",
    }
    dataset = PackedDataset(full.images[rows], full.labels[rows], full.class_names, full.split[rows], meta)
    return dataset.save(out, overwrite=True)


def full_scores(run_dir: Path, small: PackedDataset, n: int, seed: int) -> dict:
    """Test-split metrics with the full-data evaluator; memorisation against the small train split."""
    import torch

    from productgan.evaluator import Evaluator, features_and_probabilities, native_images
    from productgan.generator.sampler import load_generator
    from productgan.metrics import memorisation

    evaluator = Evaluator("fashion-mnist", open_dataset("fashion-mnist"), progress=False)
    feats, probs = features_and_probabilities(evaluator.net, load_generator(run_dir)(n=n, seed=seed).numpy())
    metrics = evaluator.score_features(feats, probs, "test", seed, memorisation=False)
    train_feats, _ = features_and_probabilities(evaluator.net, native_images(small, "train"))
    test_feats, _ = evaluator.real("test")
    return {
        **{k: metrics[k] for k in ("fid_productgan", "precision", "recall", "rarest_class_share")},
        "memorisation_share": memorisation(train_feats, feats),
        "memorisation_floor": memorisation(
            train_feats, test_feats[torch.randperm(len(test_feats), generator=torch.Generator().manual_seed(seed))[:n]]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/small-data", help="Folder for the dataset and both runs.")
    parser.add_argument("--n", type=int, default=5000, help="Generated images per test score.")
    parser.add_argument("--arms", nargs="+", default=["off", "on", "auto"], choices=["off", "on", "auto"])
    args = parser.parse_args()

    work = Path(args.work)
    data = small_dataset(work / "dataset", args.fraction, args.seed)
    small = PackedDataset.load(data)
    sizes = PackedDataset.load(data).split_sizes()
    print(f"dataset: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test images")
    rows = []
    for augment in args.arms:
        name = {"off": "plain", "on": "diffaugment", "auto": "adaptive"}[augment]
        train_done = (work / name / "generator").is_dir()  # trained by an earlier call: score it again
        config = RunConfig(
            data=str(data),
            out=str(work / name),
            steps=args.steps,
            seed=args.seed,
            train=TrainConfig(augment=augment, eval_every=args.eval_every, eval_n=2000, sample_every=args.eval_every),
        )
        started = time.perf_counter()
        if not train_done:
            train(config, progress=False)
        minutes = (time.perf_counter() - started) / 60
        log = [json.loads(line) for line in (work / name / "metrics.jsonl").read_text().splitlines()]
        val = [r for r in log if "val_fid_productgan" in r]
        best = min(val, key=lambda r: r["val_fid_productgan"])
        strength = [r["augment_p"] for r in log if "augment_p" in r]
        test = full_scores(work / name, small, args.n, args.seed)
        rows.append(
            {
                "run": name,
                "augment": augment,
                "minutes": round(minutes, 1),
                "val_curve": [[r["step"], round(r["val_fid_productgan"], 3)] for r in val],
                "best_val_step": best["step"],
                "best_val_fid_productgan": best["val_fid_productgan"],
                "best_val_recall": best["val_recall"],
                "best_val_precision": best["val_precision"],
                "final_augment_p": strength[-1] if strength else None,
                "test_full_evaluator": test,
            }
        )
        print(
            f"{name:<12} best val fid_productgan {best['val_fid_productgan']:.3f} at step {best['step']} (small-data "
            f"evaluator); test with the full evaluator: fid_productgan {test['fid_productgan']:.3f}, precision "
            f"{test['precision']:.3f}, recall {test['recall']:.3f}, rarest class {test['rarest_class_share']:.3f}, "
            f"memorisation {test['memorisation_share']:.3f} (held-out real: {test['memorisation_floor']:.3f})"
        )
        print("             val curve: " + ", ".join(f"{s}:{v}" for s, v in rows[-1]["val_curve"]))
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": "small_data",
        "fraction": args.fraction,
        "steps": args.steps,
        "seed": args.seed,
        "split_sizes": sizes,
        "machine": f"{cpu_model()}, {usable_cpus()} CPUs",
        "runs": rows,
    }
    out = RESULTS / f"small_data-{machine_label()}-{'-'.join(args.arms)}-seed{args.seed}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
