"""How far "more like this" strays at each spread: the figures behind ``DEFAULT_SPREAD``.

For each spread, ``--bases`` images of the run (``11:0``, ``11:1``, ...; every category in turn)
and ``--per-base`` variants of each, as ``productgan variants`` makes them:

- the mean evaluator-feature distance from a base image to its variants, against the mean
  distance between two real held-out images of one category (variants that spread like different
  products of one category come near it) and between two real images of different categories;
- the share of variants the evaluator puts in the category it puts their base in (kept category),
  and the same over the bases it puts in the category they were made in (clear bases: a base
  the evaluator misreads takes the variants' agreement with it down at every spread);
- the share of variants the evaluator puts in the category they were made in.

    python benchmarks/variant_spread.py runs/00000-fashion-mnist-32 --bases 100 --per-base 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from productgan.evaluator import features_and_probabilities
from productgan.evaluator.inference import native_images
from productgan.explore.latent import render
from productgan.explore.names import point, variant_points
from productgan.explore.neighbours import NeighbourIndex
from productgan.generator.sampler import load_generator
from productgan.machine import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
SPREADS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def real_distances(index: NeighbourIndex, per_class: int = 200) -> tuple[float, float]:
    """Mean feature distance between two held-out real images of one category, and of two categories."""
    dataset = index.dataset
    images = native_images(dataset, "test")
    labels = np.asarray(dataset.labels)[dataset.indices("test")]
    features, _ = features_and_probabilities(index.net, images)
    rng = np.random.default_rng(0)
    same, other = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = rng.choice(members, min(per_class, len(members)), replace=False)
        outside = rng.choice(np.flatnonzero(labels != label), len(members), replace=False)
        block = features[members]
        pairwise = torch.cdist(block.double(), block.double())
        same.append(float(pairwise[~torch.eye(len(members), dtype=torch.bool)].mean()))
        other.append(float((block.double() - features[outside].double()).norm(dim=1).mean()))
    return float(np.mean(same)), float(np.mean(other))


def spread_figures(sampler, index: NeighbourIndex, spread: float, bases: int, per_base: int) -> dict:
    distances, kept, clear, as_made = [], [], [], []
    for base_index in range(bases):
        base = point(sampler, f"11:{base_index}")
        points = variant_points(sampler, base, per_base, spread, seed=base_index)
        images = render(sampler, [base, *points]).numpy()
        features, probabilities = features_and_probabilities(index.net, images)
        predicted = probabilities.argmax(dim=1)
        distances += (features[1:] - features[0]).norm(dim=1).tolist()
        kept += (predicted[1:] == predicted[0]).tolist()
        if base.label is not None:
            as_made += (predicted[1:] == base.label).tolist()
            if predicted[0] == base.label:
                clear += (predicted[1:] == predicted[0]).tolist()
    return {
        "feature_distance": float(np.mean(distances)),
        "category_kept": float(np.mean(kept)),
        "category_kept_clear_bases": float(np.mean(clear)) if clear else None,
        "made_category": float(np.mean(as_made)) if as_made else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="A run directory (its evaluator judges the variants).")
    parser.add_argument("--bases", type=int, default=100)
    parser.add_argument("--per-base", type=int, default=8)
    args = parser.parse_args()

    sampler = load_generator(args.run)
    index = NeighbourIndex.from_run(args.run)
    same, other = real_distances(index)
    rows = {str(s): spread_figures(sampler, index, s, args.bases, args.per_base) for s in SPREADS}
    print(f"{cpu_model()}; {args.bases} bases x {args.per_base} variants")
    print(f"real held-out pairs: same category {same:.3f}, different categories {other:.3f}")
    print(
        "| spread | feature distance to the base | / same-category real pair | category kept | kept, clear bases "
        "| made category |"
    )
    print("|---|---|---|---|---|---|")
    for spread, row in rows.items():
        made = "-" if row["made_category"] is None else f"{row['made_category']:.1%}"
        clear = "-" if row["category_kept_clear_bases"] is None else f"{row['category_kept_clear_bases']:.1%}"
        print(
            f"| {spread} | {row['feature_distance']:.3f} | {row['feature_distance'] / same:.2f} | "
            f"{row['category_kept']:.1%} | {clear} | {made} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"variant_spread-{Path(args.run).name}.json"
    record = {"machine": cpu_model(), "same_category_real": same, "other_category_real": other, "spreads": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
