"""Does synthetic data help? A classifier trained on a small real set, with and without synth's images.

Fashion-MNIST (the real data) cut down to a small train split, with its 5,000 validation and
10,000 test images whole, in three scenarios:

    1pct    1% of the train split in every category (55 images each)
    5pct    5% in every category (275 each)
    rare2   5% in every category but two (Shirt, Sneaker), which keep 0.5% (28 each)

For each, a class-conditional GAN with the fmnist-32 preset's settings trains on the small train
split (``--gan-images`` images), and ``synth`` makes images from it: ``--synth-per-class`` per
category in 1pct and 5pct, ``--balance`` (the two rare categories topped up) in rare2. Then a
classifier of the evaluator's architecture and recipe (``train_evaluator``) is trained on

    (a) real         the small real train split
    (b) + synth      the same plus synth's images (guardrails on)
    (c) + unguarded  the same plus synth's images made with --no-guardrails (same request and seed)

for exactly the same number of SGD steps in every arm (``--classifier-steps``, so that more
images do not also mean more training), and scored on the whole test split: accuracy and recall per
category, over ``--seeds`` seeds (seed k draws synth's images with seed k and trains the
classifier with seed k), reported as the mean and a 95% t-interval.

Then synth's throughput on a trained fmnist-32 generator (``--throughput-run``, 55,000 training
images to compare against): kept images/s with guardrails, the drop rate per reason, beside the
generator alone, the evaluator's pass and the nearest-neighbour searches measured in the same run.

Prints a table and writes benchmarks/results/synth_uplift.json (synth_uplift-quick.json with
``--quick``, a smoke run of a few minutes; ``--results NAME`` for another name). The datasets and
GAN runs stay in ``--work``, so a second call trains no GAN again.

    python benchmarks/synth_uplift.py --quick
    python benchmarks/synth_uplift.py               # about 35 minutes on an idle 2-core CPU
    python benchmarks/synth_uplift.py --scenarios 1pct --seeds 2 --steps 450 --arms "real,+ synth" \
        --throughput-run "" --results synth_uplift-1pct-450steps.json      # a longer training budget
    python benchmarks/synth_uplift.py --scenarios "" --results synth_uplift-throughput.json  # throughput only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from productgan.config import RunConfig, from_dict, preset_settings
from productgan.data import PackedDataset, open_dataset
from productgan.errors import ProductganError
from productgan.evaluator import EvaluatorConfig, class_probabilities, features_and_probabilities, native_images
from productgan.evaluator.training import train_evaluator
from productgan.explore.guardrails import CHECKS, Guardrails, guardrails_for
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.synth import PACKED_DIR, synth_run
from productgan.generator.sampler import load_generator
from productgan.machine import cpu_model
from productgan.metrics.distances import distance_blocks
from productgan.train import train

RESULTS = Path(__file__).resolve().parent / "results"
RARE = ("Shirt", "Sneaker")
SCENARIOS = {  # name: (share of the train split kept per category, the categories kept at RARE_SHARE)
    "1pct": (0.01, ()),
    "5pct": (0.05, ()),
    "rare2": (0.05, RARE),
}
RARE_SHARE = 0.005
ARMS = ("real", "+ synth", "+ unguarded")
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def small_dataset(full: PackedDataset, out: Path, share: float, rare: tuple[str, ...], seed: int = 0) -> Path:
    """``full`` with ``share`` of each category's train images kept (``RARE_SHARE`` of the
    ``rare`` ones), chosen with ``seed``; val and test whole."""
    if (out / "dataset.json").is_file():
        return out
    rows = full.indices("train")
    rng = np.random.default_rng(seed)
    keep = []
    for label, name in enumerate(full.class_names):
        members = rows[full.labels[rows] == label]
        count = max(1, round(len(members) * (RARE_SHARE if name in rare else share)))
        keep.append(rng.choice(members, size=count, replace=False))
    picked = np.sort(np.concatenate([*keep, full.indices("val"), full.indices("test")]))
    meta = {**full.meta, "source": f"fashion-mnist-{out.parent.name}", "subset": f"{share:g} per category"}
    return PackedDataset(full.images[picked], full.labels[picked], full.class_names, full.split[picked], meta).save(out)


def train_gan(data: Path, out: Path, images: int) -> float:
    """Train the fmnist-32 recipe on ``data`` for ``images`` images (skipped when ``out`` holds a
    finished run); returns the minutes training took, as its log records them."""
    if (out / "generator" / "model.safetensors").is_file():
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"] / 60
    shutil.rmtree(out, ignore_errors=True)
    config = from_dict(RunConfig, preset_settings("fmnist-32"))
    config.data, config.out, config.images, config.train.precision = str(data), str(out), images, "fp32"
    train(config, progress=False)
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"] / 60


def classifier_scores(
    images: np.ndarray, labels: np.ndarray, test: tuple[np.ndarray, np.ndarray], steps: int, seed: int
) -> dict:
    """Accuracy and per-category recall on ``test`` of the evaluator's network trained on
    (images, labels) for exactly ``steps`` SGD steps of 128 images: the set is repeated, each
    copy shuffled, to ``steps`` x 128 images and trained on for one epoch, so that every arm gets
    the same training whatever its size (the recipe's schedule depends on steps alone)."""
    rng = np.random.default_rng(seed)
    copies = math.ceil(steps * 128 / len(images))
    order = np.concatenate([rng.permutation(len(images)) for _ in range(copies)])[: steps * 128]
    config = EvaluatorConfig(epochs=1, seed=seed)
    net = train_evaluator(images[order], labels[order], 10, config, progress=False)
    predicted = class_probabilities(net, test[0]).argmax(dim=1).numpy()
    recall = [float((predicted[test[1] == c] == c).mean()) for c in range(10)]
    return {"accuracy": float((predicted == test[1]).mean()), "recall": recall, "passes": steps * 128 / len(images)}


def guardrail_floor(index: NeighbourIndex, rails: Guardrails, images: np.ndarray, labels: np.ndarray) -> dict:
    """The share of real held-out images each check flags when they are judged as if generated,
    each in its own category and in order: what the guardrails cost a perfect generator."""
    features, probabilities = features_and_probabilities(index.net, images)
    copy = index.query_features(features, k=1).copy
    confidence, predicted = probabilities.max(dim=1)
    off = (predicted.numpy() != labels) & (confidence.numpy() >= rails.min_confidence)
    duplicate = np.zeros(len(images), bool)
    for start, block in distance_blocks(features, features):
        rows = np.arange(start, start + len(block))
        distances = block.numpy()
        distances[np.arange(len(features))[None, :] >= rows[:, None]] = np.inf  # earlier images only
        duplicate[rows] = distances.min(axis=1) < rails.duplicate_threshold
    return {
        "images": len(images),
        "near-copy": float(copy.mean()),
        "off-category": float(off.mean()),
        "near-duplicate": float(duplicate.mean()),
    }


def interval(values: list[float]) -> dict:
    """Mean and the half-width of its 95% t-interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "values": values}
    half = T_975.get(len(values), 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "ci95": half, "values": values}


def run_scenario(name: str, full: PackedDataset, work: Path, args) -> dict:
    share, rare = SCENARIOS[name]
    folder = work / name
    data = small_dataset(full, folder / "dataset", share, rare)
    small = PackedDataset.load(data)
    gan_minutes = train_gan(data, folder / "run", args.gan_images)
    run_dir = folder / "run"
    index = NeighbourIndex.from_run(run_dir)
    test_images = native_images(small, "test")
    test_labels = small.labels[small.indices("test")]
    if args.test_n < len(test_labels):
        pick = np.sort(np.random.default_rng(0).choice(len(test_labels), args.test_n, replace=False))
        test_images, test_labels = test_images[pick], test_labels[pick]
    guard_accuracy = float((class_probabilities(index.net, test_images).argmax(1).numpy() == test_labels).mean())
    rails = guardrails_for(index, load_generator(run_dir))
    floor = guardrail_floor(index, rails, test_images, test_labels)
    real_images = native_images(small, "train")
    real_labels = small.labels[small.indices("train")]
    request = {"balance": True} if rare else {"per_class": args.synth_per_class}
    arms = {arm: [] for arm in ARMS if arm in args.arms}
    synth_records = {arm: [] for arm in ARMS[1:]}
    for seed in range(args.seeds):
        if "real" in arms:
            arms["real"].append(
                classifier_scores(real_images, real_labels, (test_images, test_labels), args.steps, seed)
            )
            print(f"{name} seed {seed} real: test accuracy {arms['real'][-1]['accuracy']:.3f}", flush=True)
        for arm, guarded in (("+ synth", True), ("+ unguarded", False)):
            if arm not in arms:
                continue
            out = folder / f"synth-{'guarded' if guarded else 'unguarded'}-seed{seed}"
            try:
                summary = synth_run(
                    run_dir, out, **request, seed=seed, guardrails=guarded, packed=True, overwrite=True,
                    progress=False, index=index,
                )  # fmt: skip
            except ProductganError as error:  # a category synth could not fill: recorded, not scored
                synth_records[arm].append({"error": str(error)})
                continue
            made = PackedDataset.load(out / PACKED_DIR)
            images = np.concatenate([real_images, native_images(made, "train")])
            labels = np.concatenate([real_labels, made.labels[made.indices("train")]])
            arms[arm].append(classifier_scores(images, labels, (test_images, test_labels), args.steps, seed))
            print(f"{name} seed {seed} {arm}: test accuracy {arms[arm][-1]['accuracy']:.3f}", flush=True)
            synth_records[arm].append(
                {k: summary[k] for k in ("kept", "candidates", "dropped", "flagged", "drop_rates", "kept_per_second")}
            )
            shutil.rmtree(out)
    rare_index = [small.class_names.index(c) for c in RARE]
    counts = np.bincount(real_labels, minlength=10).tolist()
    results = {}
    for arm, runs in arms.items():
        if not runs:  # synth filled no set for this arm: its errors say why
            results[arm] = {"accuracy": None, "synth": synth_records.get(arm)}
            continue
        results[arm] = {
            "accuracy": interval([r["accuracy"] for r in runs]),
            "recall": {c: interval([r["recall"][i] for r in runs]) for i, c in enumerate(small.class_names)},
            "worst_recall": interval([min(r["recall"]) for r in runs]),
            "rare_recall": interval([statistics.fmean(r["recall"][i] for i in rare_index) for r in runs]),
            "classifier_passes_over_the_set": runs[0]["passes"],
            "synth": synth_records.get(arm),
        }
    return {
        "scenario": name,
        "real_train_per_category": dict(zip(small.class_names, counts, strict=True)),
        "synth_request": request,
        "gan_minutes": gan_minutes,
        "guardrail_evaluator_test_accuracy": guard_accuracy,
        "guardrails": rails.describe(),
        "guardrails_on_real_test_images": floor,
        "arms": results,
    }


def throughput(run_dir: Path, work: Path, per_class: int) -> dict:
    """synth's kept images/s on a trained generator, beside the generator, the evaluator pass
    and the nearest-neighbour search alone, measured in the same run."""
    sampler = load_generator(run_dir)
    started = time.perf_counter()
    index = NeighbourIndex.from_run(run_dir, progress=True)
    setup_s = time.perf_counter() - started
    n = per_class * sampler.generator.num_classes
    started = time.perf_counter()
    images = sampler(n, seed=1000).numpy()
    generator_s = time.perf_counter() - started
    started = time.perf_counter()
    features, _ = features_and_probabilities(index.net, images)
    evaluator_s = time.perf_counter() - started
    started = time.perf_counter()
    index.query_features(features, k=1)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    index.query_features(features, k=1, images_uint8=images)  # the copy flag as synth applies it
    both_s = time.perf_counter() - started
    out = {}
    for guarded in (True, False):
        folder = work / f"throughput-{'guarded' if guarded else 'unguarded'}"
        summary = synth_run(
            run_dir, folder, per_class=per_class, guardrails=guarded, overwrite=True, progress=False, index=index
        )
        out["guardrails" if guarded else "no_guardrails"] = {
            k: summary[k]
            for k in ("kept", "candidates", "dropped", "drop_rates", "seconds", "write_seconds", "kept_per_second")
        }
        shutil.rmtree(folder)
    return {
        "run": str(run_dir),
        "per_class": per_class,
        "training_images_compared": int(len(index.positions)),
        "copy_threshold": index.threshold,
        "index_setup_s": setup_s,
        "reference_images_per_s": {
            "generator": n / generator_s,
            "evaluator_pass": n / evaluator_s,
            "nearest_neighbour_search": n / search_s,
            "nearest_neighbour_search_features_and_thumbnails": n / both_s,
        },
        **out,
    }


def show(value: dict, scale: float = 100) -> str:
    ci = "" if value["ci95"] is None else f" ± {value['ci95'] * scale:.1f}"
    return f"{value['mean'] * scale:5.1f}{ci}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few minutes (tiny budgets).")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="Which scenarios, comma-separated.")
    parser.add_argument("--gan-images", type=int, default=96_000, help="Images each GAN trains on.")
    parser.add_argument("--synth-per-class", type=int, default=500, help="synth's images per category (1pct, 5pct).")
    parser.add_argument("--steps", "--classifier-steps", dest="steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Which of {', '.join(ARMS)}, comma-separated.")
    parser.add_argument("--results", default=None, help="File name under benchmarks/results for the JSON.")
    parser.add_argument("--test-n", type=int, default=10_000, help="Test images scored (the whole split: 10,000).")
    parser.add_argument("--throughput-run", default="/work/ev/fm32", help="A trained fmnist-32 run ('' to skip).")
    parser.add_argument("--throughput-per-class", type=int, default=1000)
    parser.add_argument("--work", default="runs/synth-uplift", help="Folder for the datasets, runs and synth outputs.")
    args = parser.parse_args()
    args.arms = [arm.strip() for arm in args.arms.split(",")]
    if args.quick:
        args.scenarios, args.gan_images, args.synth_per_class, args.steps, args.seeds = "1pct", 6400, 20, 20, 2
        args.test_n, args.throughput_per_class = 1000, 50
        args.work = str(Path(args.work).with_name(Path(args.work).name + "-quick"))

    started, load_at_start = time.perf_counter(), os.getloadavg()
    work = Path(args.work)
    full = open_dataset("fashion-mnist")
    scenarios = [run_scenario(name, full, work, args) for name in args.scenarios.split(",") if name]
    speed = throughput(Path(args.throughput_run), work, args.throughput_per_class) if args.throughput_run else None
    result = {
        "benchmark": "synth_uplift",
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items() if k != "quick"},
        "machine": {
            "cpu": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_min": {"start": load_at_start, "end": os.getloadavg()},
        },
        "minutes": (time.perf_counter() - started) / 60,
        "scenarios": scenarios,
        "throughput": speed,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (args.results or ("synth_uplift-quick.json" if args.quick else "synth_uplift.json"))
    path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nsynth uplift on {cpu_model()} ({torch.get_num_threads()} threads), {args.seeds} seeds, mean ± 95% CI")
    print(f"{'scenario':<8} {'arm':<12} {'real/cat':>8} {'test acc %':>12} {'worst recall %':>15} "
          f"{'Shirt+Sneaker %':>16} {'dropped (copy/off/dup)':>24}")  # fmt: skip
    for scenario in scenarios:
        counts = scenario["real_train_per_category"]
        real = (
            f"{min(counts.values())}-{max(counts.values())}"
            if len(set(counts.values())) > 1
            else str(max(counts.values()))
        )
        for arm, value in scenario["arms"].items():
            made = [s for s in value["synth"] or [] if "error" not in s]
            drops = ""
            if made:
                dropped = [sum(s["dropped"][reason] for s in made) for reason in CHECKS]
                tried = sum(s["candidates"] for s in made)
                drops = "/".join(f"{100 * d / tried:.1f}" for d in dropped) + " %"
            if len(made) < len(value["synth"] or []):
                drops += f" ({len(value['synth']) - len(made)} unfilled)"
            if value["accuracy"] is None:
                print(f"{scenario['scenario']:<8} {arm:<12} {real:>8} {'no set':>12} {'':>15} {'':>16} {drops:>24}")
                continue
            print(
                f"{scenario['scenario']:<8} {arm:<12} {real:>8} {show(value['accuracy']):>12} "
                f"{show(value['worst_recall']):>15} {show(value['rare_recall']):>16} {drops:>24}"
            )
        floor = scenario["guardrails_on_real_test_images"]
        print(
            f"{'':<8} (GAN {scenario['gan_minutes']:.1f} min; guardrail evaluator test accuracy "
            f"{scenario['guardrail_evaluator_test_accuracy']:.1%}; real test images flagged "
            + "/".join(f"{100 * floor[reason]:.1f}" for reason in CHECKS)
            + f" %; synth {scenario['synth_request']})"
        )
    if speed:
        guarded = speed["guardrails"]
        reference = speed["reference_images_per_s"]
        print(
            f"\nthroughput on {speed['run']} ({speed['per_class']} per category, against "
            f"{speed['training_images_compared']:,} training images): {guarded['kept_per_second']:,.0f} kept images/s "
            f"with guardrails ({speed['no_guardrails']['kept_per_second']:,.0f} without), drop rates "
            + ", ".join(f"{k} {v:.2%}" for k, v in guarded["drop_rates"].items())
        )
        print(
            f"reference, same run: generator alone {reference['generator']:,.0f} images/s, evaluator pass "
            f"{reference['evaluator_pass']:,.0f}/s, nearest-neighbour search "
            f"{reference['nearest_neighbour_search']:,.0f}/s (with the thumbnail test "
            f"{reference['nearest_neighbour_search_features_and_thumbnails']:,.0f}/s)"
        )
    print(f"\nwritten to {path} ({result['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
