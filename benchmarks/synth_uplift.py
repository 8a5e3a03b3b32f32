"""Does synthetic data help? A classifier trained on a small real set, with and without synth's images.

Fashion-MNIST (the real data) cut down to a small train split, with its 5,000 validation and
10,000 test images whole, in three scenarios:

    1pct    1% of the train split in every category (55 images each)
    5pct    5% in every category (275 each)
    rare2   5% in every category but two (Shirt, Sneaker), which keep 0.5% (28 each)

For each, a class-conditional GAN with the fmnist-32 preset's settings trains on the small train
split (``--gan-images`` images), and ``synth`` makes a set from it per seed: ``--synth-per-class``
per category in 1pct and 5pct, ``--balance`` (the two rare categories topped up) in rare2. Then a
classifier of the evaluator's architecture (``productgan.explore.proxy``) is trained for exactly
``--steps`` SGD steps of 128 images in every arm, so that more images never also means more
training, by each recipe of ``proxy.RECIPES``:

    real      the small real train split alone (also the teacher of soft and stream)
    pooled    real and synthetic images pooled, each drawn equally often
    half      half of each batch synthetic
    soft      as half, with soft labels: half the category asked for, half the real-only
              classifier's softened probabilities
    bridged   the first half of the steps on synthetic images alone, then real ones
    stream    as soft, with fresh images from the generator every batch, filtered by the teacher
              (off-category and the easiest 30% dropped), categories drawn to balance the batches

scored on the whole test split: accuracy and recall per category, over ``--seeds`` seeds (seed k
makes synth's set with seed k and trains every classifier with seed k), as the mean and a 95%
t-interval of the paired difference to real only. No early stopping: the one-cycle schedule ends
at its lowest learning rate, and every arm is scored after its last step.

Then ``productgan uplift`` on the scenario's seed-0 set (scored on the validation split, as a
team would run it), to compare its verdict with the test figures.

Then synth's throughput on a trained fmnist-32 generator (``--throughput-run``, 55,000 training
images to compare against): kept images/s with guardrails, the drop rate per reason, beside the
generator alone, the evaluator's pass and the nearest-neighbour searches measured in the same run.

Prints a table and writes benchmarks/results/synth_uplift.json (synth_uplift-quick.json with
``--quick``, a smoke run of a few minutes; ``--results NAME`` for another name). The datasets and
GAN runs stay in ``--work``, so a second call trains no GAN again.

    python benchmarks/synth_uplift.py --quick
    python benchmarks/synth_uplift.py --throughput-run ""   # about 35 minutes on an idle 2-core CPU
    python benchmarks/synth_uplift.py --scenarios "" --results synth_uplift-throughput.json  # throughput only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from productgan.config import RunConfig, from_dict, preset_settings
from productgan.data import UNLABELLED as UNLABELLED_LABEL
from productgan.data import PackedDataset, open_dataset
from productgan.evaluator import class_probabilities, features_and_probabilities, native_images
from productgan.explore.guardrails import CHECKS, Guardrails, guardrails_for
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.proxy import RECIPES, Labelled, scores, train_arm, train_proxy
from productgan.explore.synth import synth_run
from productgan.explore.uplift import interval, read_synth, uplift
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
ARMS = tuple(RECIPES)
UNLABELLED = "1pct+unlabelled"
UNLABELLED_SOURCES = ("GAN images", "mixed-label GAN images", "unlabelled photos")
UNLABELLED_ARMS = ("real", *(f"{source}, {recipe}" for source in UNLABELLED_SOURCES for recipe in ("soft", "half")))


def picked_rows(full: PackedDataset, share: float, rare: tuple[str, ...] = (), seed: int = 0) -> np.ndarray:
    """The train rows of ``full`` a scenario keeps: ``share`` of each category's (``RARE_SHARE`` of
    the ``rare`` ones), chosen with ``seed``."""
    rows = full.indices("train")
    rng = np.random.default_rng(seed)
    keep = []
    for label, name in enumerate(full.class_names):
        members = rows[full.labels[rows] == label]
        count = max(1, round(len(members) * (RARE_SHARE if name in rare else share)))
        keep.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(keep))


def small_dataset(full: PackedDataset, out: Path, share: float, rare: tuple[str, ...], seed: int = 0) -> Path:
    """``full`` with only ``picked_rows`` of its train split; val and test whole."""
    if (out / "dataset.json").is_file():
        return out
    picked = np.sort(np.concatenate([picked_rows(full, share, rare, seed), full.indices("val"), full.indices("test")]))
    meta = {**full.meta, "source": f"fashion-mnist-{out.parent.name}", "subset": f"{share:g} per category"}
    return PackedDataset(full.images[picked], full.labels[picked], full.class_names, full.split[picked], meta).save(out)


def native_rows(full: PackedDataset, rows: np.ndarray) -> Labelled:
    """Rows of ``full`` at native size, with their labels."""
    part = PackedDataset(
        full.images[rows], full.labels[rows], full.class_names, np.zeros(len(rows), np.int8), full.meta
    )
    return Labelled(native_images(part, "train"), full.labels[rows])


def train_gan(data: Path | str, out: Path, images: int, conditional: bool = True) -> float:
    """Train the fmnist-32 recipe on ``data`` for ``images`` images (skipped when ``out`` holds a
    finished run); returns the minutes training took, as its log records them."""
    if (out / "generator" / "model.safetensors").is_file():
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"] / 60
    shutil.rmtree(out, ignore_errors=True)
    config = from_dict(RunConfig, preset_settings("fmnist-32"))
    config.data, config.out, config.images, config.train.precision = str(data), str(out), images, "fp32"
    config.model.conditional = conditional
    train(config, progress=False)
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"] / 60


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
    sampler = load_generator(run_dir)
    rails = guardrails_for(index, sampler)
    floor = guardrail_floor(index, rails, test_images, test_labels)
    real = Labelled(native_images(small, "train"), small.labels[small.indices("train")])
    test = Labelled(test_images, test_labels)
    request = {"balance": True} if rare else {"per_class": args.synth_per_class}
    arms = {arm: [] for arm in ARMS if arm in args.arms}
    synth_records, check = [], None
    for seed in range(args.seeds):
        out = folder / f"synth-seed{seed}"
        summary = synth_run(
            run_dir, out, **request, seed=seed, guardrails=not args.no_guardrails, overwrite=True, progress=False,
            index=index,
        )  # fmt: skip
        synth_records.append({k: summary[k] for k in ("kept", "candidates", "dropped", "drop_rates")})
        synthetic = read_synth(out, run_dir, small.class_names, real.images.shape[1:])
        teacher = train_proxy(real, 10, RECIPES["real"], args.steps, seed)
        for arm in arms:
            net = teacher
            if arm != "real":
                net = train_arm(real, 10, RECIPES[arm], args.steps, seed, teacher, synthetic, sampler)
            arms[arm].append(scores(net, test, 10))
            print(f"{name} seed {seed} {arm}: test accuracy {arms[arm][-1]['accuracy']:.4f}", flush=True)
        if seed == 0 and args.uplift_seeds:
            check = uplift(run_dir, out, out=folder / "uplift.json", seeds=args.uplift_seeds, steps=args.steps,
                           overwrite=True, progress=False)  # fmt: skip
            print(f"{name} uplift: accuracy {check['accuracy']['verdict']} "
                  f"({100 * check['accuracy']['difference']['mean']:+.2f} points on val)", flush=True)  # fmt: skip
        shutil.rmtree(out)
    rare_index = [small.class_names.index(c) for c in RARE]
    counts = np.bincount(real.labels, minlength=10).tolist()
    results = {}
    for arm, runs in arms.items():
        baseline = arms.get("real", runs)
        results[arm] = {
            "accuracy": interval([r["accuracy"] for r in runs]),
            "gain_over_real": interval([r["accuracy"] - b["accuracy"] for r, b in zip(runs, baseline, strict=True)]),
            "recall": {c: interval([r["recall"][i] for r in runs]) for i, c in enumerate(small.class_names)},
            "worst_recall": interval([min(r["recall"]) for r in runs]),
            "rare_recall": {c: interval([r["recall"][small.class_names.index(c)] for r in runs]) for c in RARE},
            "rare_recall_mean": interval([statistics.fmean(r["recall"][i] for i in rare_index) for r in runs]),
        }
    return {
        "scenario": name,
        "real_train_per_category": dict(zip(small.class_names, counts, strict=True)),
        "synth_request": request,
        "synth": synth_records,
        "classifier_steps": args.steps,
        "uplift_on_val": None
        if check is None
        else {
            "recipe": check["recipe"],
            "seeds": check["seeds"],
            "accuracy": check["accuracy"],
            "categories": {c: {k: v[k] for k in ("difference", "verdict")} for c, v in check["categories"].items()},
            "recommendation": check["recommendation"],
            "seconds": check["seconds"],
        },
        "gan_minutes": gan_minutes,
        "guardrail_evaluator_test_accuracy": guard_accuracy,
        "guardrails": rails.describe(),
        "guardrails_on_real_test_images": floor,
        "arms": results,
    }


def mixed_dataset(full: PackedDataset, out: Path, labelled_rows: np.ndarray) -> Path:
    """``full`` with the labels of every train image outside ``labelled_rows`` taken away (-1),
    as ``prepare`` packs a folder with an ``unlabelled/`` part."""
    if (out / "dataset.json").is_file():
        return out
    labels = full.labels.copy()
    labels[np.setdiff1d(full.indices("train"), labelled_rows)] = UNLABELLED_LABEL
    meta = {**full.meta, "source": "fashion-mnist-1pct-labelled", "unlabelled_images": int((labels < 0).sum())}
    return PackedDataset(full.images, labels, full.class_names, full.split, meta).save(out)


def run_unlabelled(full: PackedDataset, work: Path, args) -> dict:
    """1% labelled, 99% unlabelled: the GANs learn from every training image; the classifier has
    the 1pct scenario's 550 labelled images. Two GANs of the fmnist-32 recipe: an unconditional
    one, which never sees a label, and a conditional one on the mixed-label split (the 550 with
    their category, the rest without: ``train.batches``). Per seed, ``--unlabelled-n`` images of
    three kinds join training by the soft and the half recipe: the unconditional GAN's (labelled
    by the real-only classifier, the teacher), the conditional GAN's (the category asked for,
    softened by the teacher's probabilities in the soft recipe), and as many of the unlabelled
    real photos (labelled by the teacher: pseudo-labelling, the obvious alternative to a GAN)."""
    folder = work / UNLABELLED
    labelled_rows = picked_rows(full, 0.01)
    pool = np.setdiff1d(full.indices("train"), labelled_rows)
    gan_minutes = train_gan("fashion-mnist", folder / "run", args.gan_images, conditional=False)
    mixed = mixed_dataset(full, folder / "mixed-data", labelled_rows)
    mixed_minutes = train_gan(mixed, folder / "mixed-run", args.gan_images, conditional=True)
    sampler = load_generator(folder / "run")
    conditional = load_generator(folder / "mixed-run")
    real = native_rows(full, labelled_rows)
    test = Labelled(native_images(full, "test"), full.labels[full.indices("test")])
    arms = {arm: [] for arm in UNLABELLED_ARMS}
    agreement = []  # the share of the conditional GAN's images the teacher puts in the category asked for
    for seed in range(args.seeds):
        teacher = train_proxy(real, 10, RECIPES["real"], args.steps, seed)
        arms["real"].append(scores(teacher, test, 10))
        sources = {
            "GAN images": (sampler(args.unlabelled_n, seed=seed).numpy(), None),
            "mixed-label GAN images": (
                conditional(args.unlabelled_n, seed=seed).numpy(),
                conditional.labels(args.unlabelled_n).numpy(),
            ),
            "unlabelled photos": (
                native_rows(
                    full, np.sort(np.random.default_rng(seed).choice(pool, args.unlabelled_n, replace=False))
                ).images,
                None,
            ),
        }
        for source, (images, asked) in sources.items():
            probabilities = class_probabilities(teacher, images).float().numpy()
            labels = probabilities.argmax(axis=1) if asked is None else asked
            taught = Labelled(images, labels, probabilities)
            if asked is not None:
                agreement.append(float((probabilities.argmax(axis=1) == asked).mean()))
            for recipe in ("soft", "half"):
                net = train_proxy(real, 10, RECIPES[recipe], args.steps, seed, synthetic=taught)
                arms[f"{source}, {recipe}"].append(scores(net, test, 10))
        for arm, runs in arms.items():
            print(f"{UNLABELLED} seed {seed} {arm}: test accuracy {runs[-1]['accuracy']:.4f}", flush=True)
    results = {}
    for arm, runs in arms.items():
        results[arm] = {
            "accuracy": interval([r["accuracy"] for r in runs]),
            "gain_over_real": interval(
                [r["accuracy"] - b["accuracy"] for r, b in zip(runs, arms["real"], strict=True)]
            ),
            "recall": {c: interval([r["recall"][i] for r in runs]) for i, c in enumerate(full.class_names)},
            "worst_recall": interval([min(r["recall"]) for r in runs]),
            "rare_recall": {c: interval([r["recall"][full.class_names.index(c)] for r in runs]) for c in RARE},
        }
    return {
        "scenario": UNLABELLED,
        "labelled_train_images": len(labelled_rows),
        "unlabelled_train_images": len(pool),
        "gan": "unconditional fmnist-32 on all 55,000 training images",
        "gan_minutes": gan_minutes,
        "mixed_label_gan": "conditional fmnist-32 on the 550 labelled and 54,450 unlabelled training images",
        "mixed_label_gan_minutes": mixed_minutes,
        "mixed_label_teacher_agreement": interval(agreement),
        "images_per_arm": args.unlabelled_n,
        "classifier_steps": args.steps,
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
    parser.add_argument("--scenarios", default=",".join([*SCENARIOS, UNLABELLED]), help="Which, comma-separated.")
    parser.add_argument("--gan-images", type=int, default=96_000, help="Images each GAN trains on.")
    parser.add_argument("--synth-per-class", type=int, default=500, help="synth's images per category (1pct, 5pct).")
    parser.add_argument("--steps", "--classifier-steps", dest="steps", type=int, default=300)
    parser.add_argument("--no-guardrails", action="store_true", help="synth keeps every image (--quick's GAN).")
    parser.add_argument("--uplift-seeds", type=int, default=3, help="Seeds of the uplift check (0: skip it).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--unlabelled-n", type=int, default=5000, help=f"Images of each kind added in {UNLABELLED}.")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Which of {', '.join(ARMS)}, comma-separated.")
    parser.add_argument("--results", default=None, help="File name under benchmarks/results for the JSON.")
    parser.add_argument("--test-n", type=int, default=10_000, help="Test images scored (the whole split: 10,000).")
    parser.add_argument("--throughput-run", default="", help="A trained fmnist-32 run for synth's throughput.")
    parser.add_argument("--throughput-per-class", type=int, default=1000)
    parser.add_argument("--work", default="runs/synth-uplift", help="Folder for the datasets, runs and synth outputs.")
    args = parser.parse_args()
    args.arms = [arm.strip() for arm in args.arms.split(",")]
    if args.quick:
        args.scenarios, args.gan_images, args.synth_per_class, args.steps, args.seeds = "1pct", 6400, 20, 20, 2
        args.test_n, args.throughput_per_class, args.uplift_seeds = 1000, 50, 2
        args.no_guardrails = True
        args.work = str(Path(args.work).with_name(Path(args.work).name + "-quick"))

    started, load_at_start = time.perf_counter(), os.getloadavg()
    work = Path(args.work)
    full = open_dataset("fashion-mnist")
    scenarios = [
        run_unlabelled(full, work, args) if name == UNLABELLED else run_scenario(name, full, work, args)
        for name in args.scenarios.split(",")
        if name
    ]
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
    print(f"{'scenario':<8} {'arm':<8} {'test acc %':>12} {'gain (paired)':>14} {'Shirt recall %':>15} "
          f"{'Sneaker recall %':>17} {'worst recall %':>15}")  # fmt: skip
    for scenario in scenarios:
        for arm, value in scenario["arms"].items():
            print(
                f"{scenario['scenario']:<8} {arm:<8} {show(value['accuracy']):>12} {show(value['gain_over_real']):>14} "
                f"{show(value['rare_recall']['Shirt']):>15} {show(value['rare_recall']['Sneaker']):>17} "
                f"{show(value['worst_recall']):>15}"
            )
        if scenario["scenario"] == UNLABELLED:
            print(
                f"{'':<8} (GANs on all training images: unconditional {scenario['gan_minutes']:.1f} min, mixed-label "
                f"conditional {scenario['mixed_label_gan_minutes']:.1f} min; the teacher puts "
                f"{show(scenario['mixed_label_teacher_agreement'])} % of the latter's images in the category asked for)"
            )
            continue
        floor = scenario["guardrails_on_real_test_images"]
        made = scenario["synth"]
        dropped = [sum(m["dropped"][reason] for m in made) for reason in CHECKS]
        tried = sum(m["candidates"] for m in made)
        print(
            f"{'':<8} (GAN {scenario['gan_minutes']:.1f} min; synth {scenario['synth_request']}, dropped "
            + "/".join(f"{100 * d / tried:.1f}" for d in dropped)
            + f" % (copy/off/dup); guardrail evaluator test accuracy "
            f"{scenario['guardrail_evaluator_test_accuracy']:.1%}; real test images flagged "
            + "/".join(f"{100 * floor[reason]:.1f}" for reason in CHECKS)
            + " %)"
        )
        check = scenario["uplift_on_val"]
        if check:
            diff = check["accuracy"]["difference"]
            print(
                f"{'':<8} uplift ({check['recipe']}, {check['seeds']} seeds, val): {check['accuracy']['verdict']}, "
                f"{100 * diff['mean']:+.2f} ± {100 * (diff['ci95'] or 0):.2f} points, {check['seconds']:.0f} s"
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
