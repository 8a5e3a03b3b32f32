"""A category added later: how near a category added with few images to a trained run comes to the
same category trained from scratch with many.

    python benchmarks/new_category.py --minutes 5                     # Fashion-MNIST, fmnist-32
    python benchmarks/new_category.py --minutes 15 --category Sneaker --added 100 --per-class 1000
    python benchmarks/new_category.py --data standin-64 --preset products-64 --per-class 800 --minutes 15

Three runs of the same recipe, each for the same minutes, one after the other:

1. reference: every category with ``--per-class`` training images, from scratch;
2. source: every category but ``--category``, the same images, from scratch;
3. added: ``--init-from`` the source on the source's data plus ``--added`` images of the category.

The added category's images from the reference and the added run are scored against the test
images of that category with the dataset's evaluator (fid_productgan, precision and recall of
that category alone; 1,000 generated images each). The target (issue 31): the added run within
1.5 times the reference's FID, or its recall at least the reference's divided by 1.5. Prints a
table and writes benchmarks/results/new_category-MACHINE.json (new_category-DATA-MACHINE.json for
a packed ``--data`` folder). Run it on an otherwise idle
machine: the runs have a time budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from productgan.cli import main as productgan  # noqa: E402
from productgan.data import PackedDataset, open_dataset  # noqa: E402
from productgan.evaluator import Evaluator, features_and_probabilities, native_images  # noqa: E402
from productgan.generator.sampler import load_generator  # noqa: E402
from productgan.machine import cpu_model, machine_label, usable_cpus  # noqa: E402
from productgan.metrics import fid_from_features, precision_recall  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def subset(full: PackedDataset, per_class: dict[int, int], out: Path, seed: int) -> Path:
    """``full`` with at most ``per_class[c]`` training images of category c (0 drops it; the
    category is then left out of the class list), val and test whole for the kept categories."""
    rng = np.random.default_rng(seed)
    train_rows = full.indices("train")
    kept_classes = [c for c in range(full.num_classes) if per_class.get(c, 1) > 0]
    rows = []
    for c in kept_classes:
        members = train_rows[full.labels[train_rows] == c]
        rows.append(rng.choice(members, size=min(len(members), per_class[c]), replace=False))
        rows.append(np.flatnonzero((full.labels == c) & (full.split != 0)))
    rows = np.sort(np.concatenate(rows))
    relabel = {c: i for i, c in enumerate(kept_classes)}
    labels = np.array([relabel[int(c)] for c in full.labels[rows]], dtype=full.labels.dtype)
    names = [full.class_names[c] for c in kept_classes]
    meta = {**full.meta, "subset": {full.class_names[c]: per_class[c] for c in kept_classes}}
    return PackedDataset(full.images[rows], labels, names, full.split[rows], meta).save(out, overwrite=True)


def train_run(data: Path, out: Path, minutes: float, preset: str, extra: list[str]) -> Path:
    if not (out / "generator").is_dir():
        code = productgan(
            ["train", "--preset", preset, "--data", str(data), "--out", str(out), "--minutes", str(minutes)]
            + ["--no-progress", *extra]
        )
        if code:
            raise SystemExit(f"training {out} failed ({code})")
    return out


def category_scores(run: Path, evaluator: Evaluator, test: np.ndarray, name: str, n: int) -> dict:
    sampler = load_generator(run)
    fake, _ = features_and_probabilities(evaluator.net, sampler(n=n, seed=0, label=name).numpy())
    real, _ = features_and_probabilities(evaluator.net, test)
    precision, recall = precision_recall(real, fake)
    return {"fid_productgan": float(fid_from_features(real, fake)), "precision": precision, "recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--preset", default="fmnist-32")
    parser.add_argument("--category", default="Sneaker")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--added", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--freeze-d", type=int, default=1)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/new-category")
    args = parser.parse_args()

    work = Path(args.work)
    full = open_dataset(args.data)
    target = next(i for i, name in enumerate(full.class_names) if name.casefold() == args.category.casefold())
    everyone = dict.fromkeys(range(full.num_classes), args.per_class)
    reference_data = subset(full, everyone, work / "data-reference", args.seed)
    source_data = subset(full, {**everyone, target: 0}, work / "data-source", args.seed)
    added_data = subset(full, {**everyone, target: args.added}, work / "data-added", args.seed)
    reference = train_run(reference_data, work / "reference", args.minutes, args.preset, [])
    source = train_run(source_data, work / "source", args.minutes, args.preset, [])
    added = train_run(
        added_data,
        work / "added",
        args.minutes,
        args.preset,
        ["--init-from", str(source), "--freeze-d", str(args.freeze_d)],
    )

    evaluator = Evaluator(args.data, full, progress=False)
    test_rows = np.flatnonzero((full.labels == target) & (full.split == 2))
    test = native_images(full, "test")[full.labels[full.indices("test")] == target]
    name = full.class_names[target]
    rows = {
        arm: category_scores(run, evaluator, test, name, args.n)
        for arm, run in (("reference", reference), ("added", added))
    }
    ratio = rows["added"]["fid_productgan"] / rows["reference"]["fid_productgan"]
    recall_ratio = rows["reference"]["recall"] / max(rows["added"]["recall"], 1e-9)
    print(
        f"{name}: {args.per_class} images from scratch against {args.added} added to a run of the others, "
        f"{args.minutes:g} minutes each ({cpu_model()}, {usable_cpus()} CPUs)"
    )
    print(f"{'arm':<10} {'fid_productgan':>15} {'precision':>10} {'recall':>8}")
    for arm, scores in rows.items():
        print(f"{arm:<10} {scores['fid_productgan']:>15.3f} {scores['precision']:>10.3f} {scores['recall']:>8.3f}")
    met = ratio <= 1.5 or recall_ratio <= 1.5
    print(
        f"added / reference FID {ratio:.2f}, reference / added recall {recall_ratio:.2f}: target (1.5) "
        f"{'met' if met else 'missed'}"
    )
    RESULTS.mkdir(exist_ok=True)
    # Fashion-MNIST's file keeps its first name; another dataset's carries the dataset's folder name
    dataset = "" if args.data == "fashion-mnist" else f"-{Path(args.data).name}"
    out = RESULTS / f"new_category{dataset}-{machine_label()}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "category": name,
                "test_images": len(test_rows),
                "scores": rows,
                "fid_ratio": ratio,
                "recall_ratio": recall_ratio,
                "target_met": met,
                "machine": f"{cpu_model()}, {usable_cpus()} CPUs",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
