"""How well steering does what it says, measured on a trained run: colourways and named sliders.

For ``--sources`` images of the run (``5:0``, ``5:1``, ...; every category in turn) and each target
colour (twelve hues round the circle at one lightness and chroma, plus black and a mid grey; white on
a white background cannot be seen, so white is no target), the colourway that ``productgan
colourways`` makes, and:

- colour reached: CIEDE2000 between the product's measured main colour and the target (median, 90th
  percentile);
- category kept: the share of colourways the run's evaluator puts in the category it puts the
  source in, over every source and over the sources it reads clearly (probability at least 0.9
  for the category they were made in); silhouette kept: the median IoU of the product masks before and after;
- realism: ``fid_productgan`` (test split) of the recoloured images against that of as many unedited
  samples, of unedited samples of the same colours (for each target, the generator's own images
  nearest to it in colour out of ``--pool``: a set of saturated colours is far from the data's
  colours before any edit), and of the sources themselves repeated once per colour (as little
  variety of shape);
- each named slider at -2...+2 on the sources: the median change of every attribute (entanglement
  in numbers), whether its own attribute moves the same way at every step, and the category kept;
- the time of one colourway and of a strip of all colours on this machine's CPU.

With ``--grey``, a grey run (fmnist-32) gets the same colourway measurement for greys alone;
``--first-stage`` measures colourways without their second stage (explore/colourways.py).

    python benchmarks/steering.py RUN_DIR --sources 200            # after `productgan directions RUN_DIR`
    python benchmarks/steering.py FMNIST_RUN --sources 200 --grey
"""

from __future__ import annotations

import argparse
import colorsys
import json
import time
from pathlib import Path

import numpy as np
import torch

from productgan.data.colour import ciede2000, hex_code
from productgan.data.product import (
    ATTRIBUTES,
    background_values,
    hue_difference,
    main_colours,
    mask_iou,
    measure,
    product_mask,
)
from productgan.evaluator import Evaluator, features_and_probabilities
from productgan.explore.colourways import colourways, full_lab, recolour, steer_colours, targets
from productgan.explore.latent import render
from productgan.explore.names import point
from productgan.generator.sampler import load_generator
from productgan.machine import cpu_model, machine_label
from productgan.run import load_run_config, open_recorded_dataset

RESULTS = Path(__file__).resolve().parent / "results"
AMOUNTS = (-2.0, -1.0, 0.0, 1.0, 2.0)
SLIDERS = ("lightness", "hue", "saturation", "size", "aspect")


def target_colours(grey: bool) -> list[tuple[int, int, int]]:
    """Twelve hues at HSV saturation 0.75 and value 0.7, then black and a mid grey (or six greys)."""
    if grey:
        return [(v, v, v) for v in (96, 128, 160, 192, 224, 240)]
    hues = [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(k / 12, 0.75, 0.7)) for k in range(12)]
    return [*hues, (0, 0, 0), (128, 128, 128)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5, help="The sources are images SEED:0 ... SEED:N-1.")
    parser.add_argument("--grey", action="store_true", help="Greys only (a grey-scale run).")
    parser.add_argument("--first-stage", action="store_true", help="Colourways without their second stage.")
    parser.add_argument("--pool", type=int, default=20000, help="Samples the same-colour control is drawn from.")
    parser.add_argument("--out", default=None, help="Result JSON (default: benchmarks/results/steering-...).")
    args = parser.parse_args()

    torch.manual_seed(0)
    sampler = load_generator(args.run_dir)
    sampler.require_directions()
    config = load_run_config(args.run_dir)
    evaluator = Evaluator(config.data, open_recorded_dataset(config, args.run_dir), progress=False)
    background = background_values(sampler.info, sampler.generator.channels)
    colours = target_colours(args.grey)
    goal = targets(sampler, colours)
    sources = [point(sampler, f"{args.seed}:{i}") for i in range(args.sources)]
    z = torch.stack([p.z for p in sources])
    labels = torch.tensor([p.label for p in sources]) if sampler.conditional else None
    base_images = render(sampler, sources).numpy()

    def classify(images: np.ndarray) -> np.ndarray:
        return features_and_probabilities(evaluator.net, images)[1].argmax(1).numpy()

    base_class = classify(base_images)
    base_probabilities = features_and_probabilities(evaluator.net, base_images)[1].numpy()
    clear = np.ones(len(sources), bool)
    if labels is not None:
        clear = base_probabilities[np.arange(len(sources)), labels.numpy()] >= 0.9
    base_mask = product_mask(base_images, background)

    # Colourways of every source in every colour, one batch per colour.
    start = time.perf_counter()
    recoloured, per_colour = [], []
    for c, colour in enumerate(colours):
        wanted = np.repeat(goal[c : c + 1], len(sources), axis=0)
        stages = steer_colours if args.first_stage else recolour
        moved, reached, difference = stages(sampler, z, labels, wanted)
        images = sampler.from_noise(moved, "native", labels=labels).numpy()
        recoloured.append(images)
        kept = classify(images) == base_class
        iou = mask_iou(product_mask(images, background), base_mask)
        per_colour.append(
            {
                "colour": hex_code(colour),
                "ciede2000_median": float(np.nanmedian(difference)),
                "ciede2000_p90": float(np.nanpercentile(difference, 90)),
                "category_kept": float(kept.mean()),
                "iou_median": float(np.median(iou)),
                "differences": difference.tolist(),
                "kept": kept.tolist(),
                "iou": iou.tolist(),
            }
        )
        print(
            f"{hex_code(colour)}: CIEDE2000 median {per_colour[-1]['ciede2000_median']:.1f}, "
            f"p90 {per_colour[-1]['ciede2000_p90']:.1f}, category kept {kept.mean():.0%}, "
            f"IoU {np.median(iou):.2f}",
            flush=True,
        )
    seconds_all = time.perf_counter() - start
    differences = np.concatenate([np.asarray(r["differences"], dtype=float) for r in per_colour])
    kept_all = np.concatenate([np.asarray(r["kept"]) for r in per_colour])
    kept_clear = np.concatenate([np.asarray(r["kept"])[clear] for r in per_colour])
    iou_all = np.concatenate([np.asarray(r["iou"]) for r in per_colour])
    start_lab = main_colours(base_images, background)
    start_difference = np.concatenate(
        [ciede2000(start_lab, np.broadcast_to(full_lab(goal[c]), start_lab.shape)) for c in range(len(colours))]
    )

    # Realism: the recoloured set against as many fresh samples and against the sources repeated.
    edited = np.concatenate(recoloured)
    n = len(edited)
    fresh = sampler(n=n, seed=args.seed + 1000).numpy()
    repeated = np.concatenate([base_images] * len(colours))
    pool = sampler(n=args.pool, seed=args.seed + 2000).numpy()
    pool_lab, taken, same_colour = main_colours(pool, background), np.zeros(args.pool, bool), []
    for c in range(len(colours)):
        distance = ciede2000(pool_lab, full_lab(goal[c]))
        distance[taken | ~np.isfinite(distance)] = np.inf
        nearest = np.argsort(distance)[: len(sources)]
        taken[nearest] = True
        same_colour.append(pool[nearest])
    fid = {}
    for name, images in (
        ("recoloured", edited),
        ("unedited samples", fresh),
        ("unedited samples of the same colours", np.concatenate(same_colour)),
        ("sources repeated", repeated),
    ):
        features, probabilities = features_and_probabilities(evaluator.net, images)
        scores = evaluator.score_features(
            features, probabilities, "test", memorisation=False, metrics=["fid_productgan"]
        )
        fid[name] = float(scores["fid_productgan"])
    print("fid_productgan (test): " + ", ".join(f"{k} {v:.2f}" for k, v in fid.items()), flush=True)

    # Sliders on the sources.
    sliders = {}
    names = [s for s in SLIDERS if s in sampler.directions.directions]
    base_values = measure(base_images, background)
    for slider in names:
        rows = {attribute: [] for attribute in ATTRIBUTES}
        kept = []
        for amount in AMOUNTS:
            moved = sampler.directions.edit(z, ((slider, amount),), labels) if amount else z
            images = sampler.from_noise(moved, "native", labels=labels).numpy()
            values = measure(images, background)
            for attribute in ATTRIBUTES:
                a, b = base_values[attribute], values[attribute]
                delta = hue_difference(a, b) if attribute == "hue" else b - a
                rows[attribute].append(float(np.nanmedian(delta)) if np.isfinite(delta).any() else None)
            if abs(amount) == 2:
                kept.append(float(np.mean(classify(images) == base_class)))
        own = np.array(rows[slider], dtype=float)
        sliders[slider] = {
            "median_change": rows,
            "monotone": bool(np.all(np.diff(own) > 0) or np.all(np.diff(own) < 0)),
            "category_kept_at_2": min(kept),
        }
        print(
            f"slider {slider}: own change {np.round(own, 3).tolist()}, monotone {sliders[slider]['monotone']}, "
            f"category kept at +-2 {min(kept):.0%}",
            flush=True,
        )

    # Time: one colourway alone, and one source's strip of every colour (the median of five calls each).
    one = _median_seconds(lambda: colourways(sampler, sources[0], colours[:1]))
    strip = _median_seconds(lambda: colourways(sampler, sources[0], colours))

    summary = {
        "ciede2000_median": float(np.nanmedian(differences)),
        "ciede2000_p90": float(np.nanpercentile(differences, 90)),
        "ciede2000_median_before": float(np.nanmedian(start_difference)),
        "no_product": int(np.isnan(differences).sum()),
        "category_kept": float(kept_all.mean()),
        "category_kept_clear_sources": float(kept_clear.mean()),
        "clear_sources": int(clear.sum()),
        "iou_median": float(np.median(iou_all)),
        "fid_productgan_test": fid,
        "fid_ratio_recoloured_to_unedited": fid["recoloured"] / fid["unedited samples"],
        "fid_ratio_recoloured_to_same_colours": fid["recoloured"] / fid["unedited samples of the same colours"],
        "seconds_one_colourway": one,
        "seconds_strip_of_all_colours": strip,
        "seconds_all_colourways_batched": seconds_all,
    }
    print(json.dumps(summary, indent=1))
    result = {
        "run": str(args.run_dir),
        "machine": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "sources": args.sources,
        "first_stage_only": args.first_stage,
        "colours": [hex_code(c) for c in colours],
        "summary": summary,
        "per_colour": [{k: v for k, v in r.items() if k not in ("differences", "kept", "iou")} for r in per_colour],
        "sliders": sliders,
    }
    tag = ("grey" if args.grey else "colour") + ("-first-stage" if args.first_stage else "")
    out = Path(args.out) if args.out else RESULTS / f"steering-{tag}-{machine_label()}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"Wrote {out}")


def _median_seconds(work, times: int = 5) -> float:
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


if __name__ == "__main__":
    main()
