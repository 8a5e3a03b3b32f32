"""A small catalogue: adaptive augmentation against always-on and off, and a start from another run,
on the stand-in catalogue at 64x64 with few images per category.

From a packed catalogue (``--data``, e.g. ``prepare``'s output of ``benchmarks/standin_products.py``),
``--per-class`` training images per category are drawn (seeded; the validation and test splits stay
whole). Each arm trains ``productgan train --preset products-64`` on them for ``--minutes``:

- ``auto``, ``on``, ``off``: ``--augment auto|on|off`` from scratch;
- ``init``: ``--init-from`` a run trained for ``--source-minutes`` on the rest of the catalogue's
  training images (a disjoint part: none of the arms' images), for ``--init-minutes``.

Every arm's exported generator is scored on the test split with the evaluator of the whole
catalogue (trained on all its training images, so the features do not come from the few images
themselves): ``fid_productgan``, precision and recall of ``--n`` images, and the classification
accuracy score (a classifier of the evaluator's design trained on ``--n`` generated images, tested on
the test split). Validation is off, so every arm is scored on its last weights (their average).
Writes benchmarks/results/catalogue_data-<machine>-<per-class>-seed<seed>.json.

    python benchmarks/catalogue_data.py --data /tmp/standin-64 --per-class 200 --minutes 15 --arms auto on off init
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from productgan.cli import main as productgan
from productgan.data import PackedDataset, open_dataset
from productgan.evaluator import Evaluator, features_and_probabilities
from productgan.evaluator.cas import evaluate_cas
from productgan.generator.sampler import load_generator
from productgan.machine import cpu_model, machine_label, usable_cpus

RESULTS = Path(__file__).resolve().parent / "results"


def split_catalogue(full: PackedDataset, per_class: int, seed: int, work: Path) -> tuple[Path, Path]:
    """(``per_class`` train images a category, the rest of the train split): two packed datasets with
    the whole validation and test splits."""
    train_rows = full.indices("train")
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [
            rng.choice(train_rows[full.labels[train_rows] == c], per_class, replace=False)
            for c in range(full.num_classes)
        ]
    )
    held = np.concatenate([full.indices("val"), full.indices("test")])
    rest = np.setdiff1d(train_rows, keep)
    out = []
    for name, train in (("subset", keep), ("rest", rest)):
        rows = np.sort(np.concatenate([train, held]))
        meta = {**full.meta, "subset": f"{name}: {len(train)} train images, seed {seed}"}
        dataset = PackedDataset(full.images[rows], full.labels[rows], full.class_names, full.split[rows], meta)
        out.append(dataset.save(work / f"{name}-{per_class}", overwrite=True))
    return out[0], out[1]


def train_arm(data: Path, out: Path, minutes: float, seed: int, extra: list[str]) -> float:
    """Train one arm (unless an earlier call did); its minutes of wall-clock time."""
    if (out / "generator").is_dir():
        return float("nan")
    started = time.perf_counter()
    command = ["train", "--preset", "products-64", "--data", str(data), "--out", str(out)]
    command += ["--minutes", str(minutes), "--seed", str(seed), "--no-progress", *extra]
    if productgan(command):
        raise SystemExit(f"training {out} failed")
    return (time.perf_counter() - started) / 60


def scores(run: Path, evaluator: Evaluator, full: PackedDataset, n: int, seed: int) -> dict:
    sampler = load_generator(run)
    features, probabilities = features_and_probabilities(evaluator.net, sampler(n=n, seed=seed).numpy())
    metrics = evaluator.score_features(features, probabilities, "test", seed, memorisation=False)
    cas = evaluate_cas(sampler, full, "test", n, seed)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    strength = [r["augment_p"] for r in log if "augment_p" in r]
    return {
        **{k: metrics[k] for k in ("fid_productgan", "precision", "recall")},
        "cas": cas["cas"],
        "cas_real_baseline": cas["cas_real_baseline"],
        "steps": sampler.info["step"],
        "images_seen": sampler.info["images_seen"],
        "final_augment_p": strength[-1] if strength else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="A packed catalogue (prepare's output).")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument(
        "--arms", nargs="+", default=["auto", "on", "off", "init"], choices=["auto", "on", "off", "init"]
    )
    parser.add_argument("--source-minutes", type=float, default=15.0)
    parser.add_argument("--init-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000, help="Generated images per score.")
    parser.add_argument("--work", default="runs/catalogue-data")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    full = open_dataset(args.data)
    subset, rest = split_catalogue(full, args.per_class, args.seed, work)
    evaluator = Evaluator(args.data, full, progress=False)
    rows = []
    for arm in args.arms:
        out = work / f"{arm}-{args.per_class}-seed{args.seed}"
        if arm == "init":
            source = work / f"source-{args.per_class}-seed{args.seed}"
            source_minutes = train_arm(rest, source, args.source_minutes, args.seed, [])
            minutes = train_arm(subset, out, args.init_minutes, args.seed, ["--init-from", str(source)])
        else:
            source_minutes = None
            minutes = train_arm(subset, out, args.minutes, args.seed, ["--augment", arm])
        row = {
            "arm": arm,
            "minutes": minutes,
            "source_minutes": source_minutes,
            **scores(out, evaluator, full, args.n, args.seed),
        }
        rows.append(row)
        print(
            f"{arm:<5} fid_productgan {row['fid_productgan']:.3f}, precision {row['precision']:.3f}, recall "
            f"{row['recall']:.3f}, CAS {row['cas']:.3f} (real {row['cas_real_baseline']:.3f}); {row['steps']} steps, "
            f"{row['images_seen']:,} images, final augment p {row['final_augment_p']}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": "catalogue_data",
        "data": str(args.data),
        "per_class": args.per_class,
        "minutes": args.minutes,
        "init_minutes": args.init_minutes,
        "source_minutes": args.source_minutes,
        "seed": args.seed,
        "n": args.n,
        "split_sizes": PackedDataset.load(subset).split_sizes(),
        "machine": f"{cpu_model()}, {usable_cpus()} CPUs",
        "runs": rows,
    }
    out = RESULTS / f"catalogue_data-{machine_label()}-{args.per_class}-seed{args.seed}.json"
    if out.exists():  # arms of another call: keep them beside these
        earlier = json.loads(out.read_text())
        result["runs"] = [r for r in earlier["runs"] if r["arm"] not in args.arms] + rows
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
