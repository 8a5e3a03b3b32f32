"""How well the latent tools work on a trained run: projection, walks, variants, the copy flag.

- projection: ``--photos`` held-out test images, each written to PNG and projected as
  ``productgan project`` does; the median reconstruction distance (evaluator features; pixels as
  root mean square on 0..255) next to the median distance of the same images to their nearest
  training image, the share projected into their true category, and seconds per projection;
- walks: the mean feature distance between neighbouring frames of 16-frame walks against the mean
  distance between the random image pairs they join (smooth walks: far smaller);
- variants: for each spread, the mean latent and feature distance of variants from their image;
- neighbours: the copy-flag rate on held-out real images (the floor, about 1% by construction) and
  on the generator's images.

Prints a table and writes benchmarks/results/latent_tools-<run>.json.

    python benchmarks/latent_tools.py runs/00000-fashion-mnist-32 --photos 200
    python benchmarks/latent_tools.py runs/memorised --photos 0      # the copy flag only
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from productgan.evaluator import extract_features
from productgan.evaluator.inference import native_images
from productgan.explore.latent import render, walk_images
from productgan.explore.names import point, variant_points
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.photos import fit_photo
from productgan.explore.projection import DEFAULT_RESTARTS, DEFAULT_STEPS, project
from productgan.generator.grid import to_pil
from productgan.generator.sampler import load_generator
from productgan.machine import cpu_model
from productgan.metrics.distances import nearest_neighbours

RESULTS = Path(__file__).resolve().parent / "results"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def projection_figures(sampler, index: NeighbourIndex, photos: int, steps: int, restarts: int) -> dict:
    dataset = index.dataset
    test = native_images(dataset, "test")
    labels = dataset.labels[dataset.indices("test")]
    pick = np.random.default_rng(0).choice(len(test), min(photos, len(test)), replace=False)
    train = native_images(dataset, "train").reshape(len(index.positions), -1)
    feature, pixel, same, seconds = [], [], [], []
    for number, row in enumerate(pick):
        fitted = fit_photo(png(test[row]), sampler.info, sampler.generator.image_size, sampler.generator.channels)
        start = time.perf_counter()
        result = project(sampler, fitted, index.net, steps=steps, restarts=restarts, seed=int(row))
        seconds.append(time.perf_counter() - start)
        feature.append(result.feature_distance)
        pixel.append(result.pixel_distance)
        same.append(result.label == dataset.class_names[labels[row]])
        if (number + 1) % 20 == 0:
            print(f"  projected {number + 1}/{len(pick)}", flush=True)
    chosen = test[pick]
    nn_feature = index.query(chosen, k=1).distances[:, 0]
    flat = torch.from_numpy(chosen.reshape(len(chosen), -1)).double()
    nn_pixel, _ = nearest_neighbours(flat, torch.from_numpy(train).double())
    size = flat.shape[1]
    return {
        "photos": len(pick),
        "steps": steps,
        "restarts": restarts,
        "feature_distance_median": float(np.median(feature)),
        "nearest_training_feature_distance_median": float(np.median(nn_feature)),
        "pixel_rms_median": float(np.median(pixel)),
        "nearest_training_pixel_rms_median": float(np.median(nn_pixel.numpy() / np.sqrt(size))),
        "category_match": float(np.mean(same)) if sampler.conditional else None,
        "seconds_per_projection_median": float(np.median(seconds)),
    }


def walk_figures(sampler, index: NeighbourIndex, walks: int = 40, frames: int = 16) -> dict:
    rng = np.random.default_rng(1)
    neighbour_steps, pair_distances = [], []
    for _ in range(walks):
        seed_a, seed_b = (int(s) for s in rng.integers(0, 10_000, 2))
        ends = [point(sampler, f"{seed_a}:0"), point(sampler, f"{seed_b}:0")]
        images = walk_images(sampler, ends, frames).numpy()
        features = extract_features(index.net, images)
        neighbour_steps.append(float((features[1:] - features[:-1]).norm(dim=1).mean()))
        pair_distances.append(float((features[-1] - features[0]).norm()))
    return {
        "walks": walks,
        "frames": frames,
        "neighbouring_frames_feature_distance": float(np.mean(neighbour_steps)),
        "end_to_end_feature_distance": float(np.mean(pair_distances)),
    }


def variant_figures(sampler, index: NeighbourIndex, bases: int = 20, per_base: int = 8) -> dict:
    out = {}
    for spread in (0.1, 0.3, 0.5, 1.0):
        latent, feature = [], []
        for base_index in range(bases):
            base = point(sampler, f"11:{base_index}")
            points = variant_points(sampler, base, per_base, spread, seed=base_index)
            images = render(sampler, [base, *points])
            features = extract_features(index.net, images.numpy())
            latent += [float((p.z - base.z).norm()) for p in points]
            feature += (features[1:] - features[0]).norm(dim=1).tolist()
        out[str(spread)] = {"latent_distance": float(np.mean(latent)), "feature_distance": float(np.mean(feature))}
    return out


def copy_flag_figures(sampler, index: NeighbourIndex, n: int = 1000) -> dict:
    real = native_images(index.dataset, "test")
    real = real[np.random.default_rng(2).choice(len(real), min(n, len(real)), replace=False)]
    generated = sampler(n=n, seed=3).numpy()
    real_found, fake_found = index.query(real, k=1), index.query(generated, k=1)
    return {
        "copy_threshold": index.threshold,
        "held_out_real_flag_rate": float(real_found.copy.mean()),
        "generated_flag_rate": float(fake_found.copy.mean()),
        "held_out_real_nn_median": float(np.median(real_found.distances[:, 0])),
        "generated_nn_median": float(np.median(fake_found.distances[:, 0])),
        "images": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--photos", type=int, default=200, help="Held-out images to project (0: none).")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    sampler = load_generator(args.run)
    index = NeighbourIndex.from_run(args.run, progress=True)
    results = {"run": str(args.run), "machine": cpu_model(), "threads": torch.get_num_threads()}
    if args.photos:
        results["projection"] = projection_figures(sampler, index, args.photos, args.steps, args.restarts)
    results["walks"] = walk_figures(sampler, index)
    results["variants"] = variant_figures(sampler, index)
    results["copy_flag"] = copy_flag_figures(sampler, index)
    print(f"\n{args.run} on {results['machine']} ({results['threads']} threads)")
    if "projection" in results:
        p = results["projection"]
        print(
            f"projection of {p['photos']} held-out images ({p['steps']} steps x {p['restarts']} restarts): feature "
            f"distance median {p['feature_distance_median']:.3f} (their nearest training image: "
            f"{p['nearest_training_feature_distance_median']:.3f}); pixel RMS median {p['pixel_rms_median']:.1f} "
            f"(nearest training image: {p['nearest_training_pixel_rms_median']:.1f}); category match "
            f"{p['category_match']}; {p['seconds_per_projection_median']:.2f} s per projection"
        )
    w = results["walks"]
    print(
        f"walks: neighbouring frames {w['neighbouring_frames_feature_distance']:.3f} apart vs "
        f"{w['end_to_end_feature_distance']:.3f} between their ends ({w['walks']} walks of {w['frames']} frames)"
    )
    for spread, v in results["variants"].items():
        print(
            f"variants, spread {spread}: latent distance {v['latent_distance']:.2f}, "
            f"feature distance {v['feature_distance']:.3f}"
        )
    c = results["copy_flag"]
    print(
        f"copy flag (threshold {c['copy_threshold']:.3f}): held-out real {c['held_out_real_flag_rate']:.1%}, "
        f"generated {c['generated_flag_rate']:.1%} (median nearest-training distance "
        f"{c['held_out_real_nn_median']:.3f} real vs {c['generated_nn_median']:.3f} generated)"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"latent_tools-{args.run.name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
