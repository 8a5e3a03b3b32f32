"""``productgan uplift RUN --synth DIR``: will this synthetic set help a classifier, category by category?

A quick proxy classifier (the evaluator's network and recipe, ``explore/proxy.py``) is trained
on the run's real training split alone and with the synthetic images of DIR (a folder ``synth``
made from this run's generator), by the recipe docs/synth.md measured best for a set made once
(``auto``: ``soft``, half of each batch synthetic with soft labels from the real-only classifier,
where the categories are about even; ``half``, hard labels, where one is far smaller), for the
same number of steps, over ``seeds`` seeds. Both are scored on the run's validation split; each
category's recall with and without, the paired difference and its 95% t-interval, give the
verdict: helps (the interval above 0), hurts (below 0) or unclear, and a plain recommendation.

Written to ``RUN/uplift/<DIR's name>.json`` (``run.folder.uplift_report_path``) unless ``out``
is given; ``productgan report`` shows it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from productgan.errors import UsageError
from productgan.evaluator import labelled_images, native_images
from productgan.explore.proxy import RECIPES, Labelled, compare, recipe_named
from productgan.explore.synth import FORMAT as SYNTH_FORMAT
from productgan.explore.synth import MANIFEST_CSV, SUMMARY_FILE
from productgan.files import Outputs
from productgan.generator.sampler import load_generator
from productgan.run import load_run_config
from productgan.run.folder import uplift_report_path
from productgan.run.records import open_recorded_dataset

FORMAT = "productgan.explore.uplift"
FORMAT_VERSION = 1
DEFAULT_RECIPE = "auto"
UNEVEN = 0.5  # a training split whose smallest category holds less than this share of its largest is uneven
MAX_SEEDS = 10
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def default_steps(real_images: int) -> int:
    """The proxy's steps: two passes over the real training split, at least 300 and at most 3,000."""
    return int(min(3000, max(300, math.ceil(2 * real_images / 128))))


def chosen_recipe(name: str, real_labels: np.ndarray, classes: int) -> tuple[str, str]:
    """The recipe ``auto`` stands for on this training split, and why: ``soft`` when its
    categories are about even, ``half`` (hard labels) when one holds under half the largest's
    images, as the benchmark found (docs/synth.md: of the recipes for a set made once, soft labels
    the only one that never lost accuracy on even categories, hard labels the highest recall of a
    thin one); any other name as given."""
    if name != "auto":
        return name, "asked for"
    counts = np.bincount(real_labels, minlength=classes)
    if counts.min() < UNEVEN * counts.max():
        return "half", (
            f"chosen by auto: the smallest category has {int(counts.min()):,} training images against "
            f"{int(counts.max()):,}, where hard labels lifted the thin category's recall most"
        )
    return "soft", "chosen by auto: the categories are about even, where soft labels measured best"


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and the half-width of its 95% t-interval (None for one value; the normal 1.96 in place
    of t beyond ten values)."""
    mean = statistics.fmean(values)
    half = T_975.get(len(values), 1.96) * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return {"mean": mean, "ci95": half, "values": values}


def verdict(difference: dict[str, Any]) -> str:
    """helps, hurts or unclear: whether the interval of a difference lies above 0, below 0, or holds it."""
    if difference["ci95"] is None:
        return "unclear"
    if difference["mean"] - difference["ci95"] > 0:
        return "helps"
    if difference["mean"] + difference["ci95"] < 0:
        return "hurts"
    return "unclear"


def read_synth(synth_dir: str | os.PathLike, run_dir: Path, class_names: list[str], shape: tuple) -> Labelled:
    """The kept images of a synth output made from ``run_dir``'s generator, with their categories;
    one sentence when it is not one, or holds nothing this run can measure. Images a user removed
    from the folder are left out (curating a set is allowed)."""
    folder = Path(synth_dir)
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        with open(folder / MANIFEST_CSV, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("status") == "kept"]
    except (OSError, ValueError, csv.Error):
        raise UsageError(
            f"{folder} is not a folder productgan synth wrote (no readable {SUMMARY_FILE} and {MANIFEST_CSV})."
        ) from None
    if not isinstance(summary, dict) or summary.get("format") != SYNTH_FORMAT:
        raise UsageError(f"{folder}/{SUMMARY_FILE} is not a synth summary; pass the folder productgan synth wrote.")
    made_from = Path(str(summary.get("run", "")))
    if made_from.resolve() != run_dir.resolve():
        raise UsageError(
            f"{folder} was made from the generator of {made_from}, not of {run_dir}; measure it with that run."
        )
    pictures = summary.get("images") or {}
    if pictures.get("crop", "none") != "none" or pictures.get("background", "keep") != "keep":
        raise UsageError(
            f"{folder} holds cropped or transparent images; measure a set made without --crop and --background."
        )
    images, labels = [], []
    for row in rows:
        category = row.get("category", "")
        if category not in class_names:
            raise UsageError(f"{folder} has images of the category {category!r}, which this run does not have.")
        path = folder / row.get("file", "")
        if not row.get("file") or not path.is_file():
            continue
        try:
            with Image.open(path) as picture:
                pixels = np.asarray(picture.convert("L" if shape[0] == 1 else "RGB"))
        except (OSError, UnidentifiedImageError):
            raise UsageError(f"{path} cannot be read as an image; make the set again with productgan synth.") from None
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if pixels.shape != shape:
            raise UsageError(f"{path} is {pixels.shape[2]}x{pixels.shape[1]}, not the run's {shape[2]}x{shape[1]}.")
        images.append(pixels)
        labels.append(class_names.index(category))
    if not images:
        raise UsageError(f"{folder} holds no synthetic images to measure.")
    return Labelled(np.stack(images), np.asarray(labels, np.int64))


def uplift(
    run_dir: str | os.PathLike,
    synth: str | os.PathLike,
    out: str | os.PathLike | None = None,
    seeds: int = 3,
    steps: int | None = None,
    recipe: str = DEFAULT_RECIPE,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``productgan uplift``: measure whether the synthetic set ``synth`` helps a classifier of the
    run's categories (module docstring); returns the report written to ``out``."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if recipe != "auto" and recipe_named(recipe).name not in _set_recipes():
        raise UsageError(f"uplift measures a set made once; choose auto or one of {', '.join(_set_recipes())}.")
    if isinstance(seeds, bool) or not 2 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be between 2 and {MAX_SEEDS} (an interval needs two), not {seeds}.")
    if steps is not None and (isinstance(steps, bool) or not 10 <= steps <= 100_000):
        raise UsageError(f"--steps must be between 10 and 100,000, not {steps}.")
    sampler = load_generator(run_dir)
    if not sampler.conditional:
        raise UsageError(
            "uplift measures a classifier of the run's categories, and this generator has none (not --conditional)."
        )
    dataset = open_recorded_dataset(config, run_dir)
    if len(dataset.indices("val")) == 0:
        raise UsageError(
            "The run's dataset has no validation split to score on; prepare it again with one (--split or --val_size)."
        )
    names = list(dataset.class_names)
    real = Labelled(*labelled_images(dataset, "train"))  # a mixed-label split: its labelled images
    held_out = Labelled(native_images(dataset, "val"), dataset.labels[dataset.indices("val")])
    synthetic = read_synth(synth, run_dir, names, real.images.shape[1:])
    target = Path(out) if out is not None else uplift_report_path(run_dir, synth)
    steps = steps or default_steps(len(real))
    name, why = chosen_recipe(recipe, real.labels, len(names))
    chosen = recipe_named(name)
    with Outputs("uplift") as outputs:
        target = outputs.claim(target, overwrite)
        runs = compare(real, held_out, len(names), chosen, steps, seeds, synthetic=synthetic, progress=progress)
        report = uplift_report(runs, names, real, synthetic, held_out)
        report.update(
            run=str(run_dir.resolve()),
            synth=str(Path(synth).resolve()),
            recipe=chosen.name,
            recipe_reason=why,
            steps=steps,
            seeds=seeds,
            seconds=round(time.perf_counter() - started, 1),
        )
        outputs.write({target: lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")})
    report["out"] = str(target)
    return report


def _set_recipes() -> list[str]:
    return [name for name, r in RECIPES.items() if not r.stream and r.synthetic_share != 0]


def uplift_report(runs: list[dict], names: list[str], real: Labelled, synthetic: Labelled, held_out: Labelled) -> dict:
    """The verdicts and the recommendation from ``compare``'s per-seed scores."""
    real_counts = np.bincount(real.labels, minlength=len(names))
    synthetic_counts = np.bincount(synthetic.labels, minlength=len(names))
    accuracy = {
        "real": interval([r["real"]["accuracy"] for r in runs]),
        "with_synthetic": interval([r["synthetic"]["accuracy"] for r in runs]),
        "difference": interval([r["synthetic"]["accuracy"] - r["real"]["accuracy"] for r in runs]),
    }
    accuracy["verdict"] = verdict(accuracy["difference"])
    held_counts = np.bincount(held_out.labels, minlength=len(names))
    categories = {}
    for c, name in enumerate(names):
        row = {"real_images": int(real_counts[c]), "synthetic_images": int(synthetic_counts[c])}
        if not held_counts[c]:  # nothing to score it on
            categories[name] = {**row, "recall_real": None, "recall_with_synthetic": None, "difference": None}
            categories[name]["verdict"] = "unmeasured"
            continue
        difference = interval([r["synthetic"]["recall"][c] - r["real"]["recall"][c] for r in runs])
        categories[name] = {
            **row,
            "recall_real": interval([r["real"]["recall"][c] for r in runs]),
            "recall_with_synthetic": interval([r["synthetic"]["recall"][c] for r in runs]),
            "difference": difference,
            "verdict": verdict(difference),
        }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scored_on": f"the validation split ({len(held_out):,} real images)",
        "accuracy": accuracy,
        "categories": categories,
        "recommendation": recommendation(accuracy, categories),
    }


def recommendation(accuracy: dict, categories: dict) -> list[str]:
    """Plain sentences: which categories to top up and by how many (the synthetic images measured),
    which to leave alone, what moved in categories that had no synthetic images, and overall."""
    made = {n: row for n, row in categories.items() if row["synthetic_images"] and row["verdict"] != "unmeasured"}
    by = {v: [n for n, row in made.items() if row["verdict"] == v] for v in ("helps", "hurts", "unclear")}
    lines = []
    if by["helps"]:
        lines.append(
            "Top up "
            + ", ".join(f"{n} with its {made[n]['synthetic_images']:,} synthetic images" for n in by["helps"])
            + ": their recall rose."
        )
    if by["hurts"]:
        lines.append("Leave out the synthetic images of " + ", ".join(by["hurts"]) + ": their recall fell.")
    if by["unclear"]:
        lines.append(
            "No clear effect on " + ", ".join(by["unclear"]) + ": leave them out, or measure again with more --seeds."
        )
    unmeasured = [n for n, row in categories.items() if row["verdict"] == "unmeasured"]
    if unmeasured:
        lines.append(f"The validation split has no images of {', '.join(unmeasured)}, so their effect is unmeasured.")
    for effect, word in (("helps", "rose"), ("hurts", "fell")):
        side = [n for n, row in categories.items() if not row["synthetic_images"] and row["verdict"] == effect]
        if side:
            lines.append(f"Without synthetic images of their own, the recall of {', '.join(side)} {word}.")
    diff = accuracy["difference"]
    said = {"helps": "rose", "hurts": "fell", "unclear": "did not clearly change"}[accuracy["verdict"]]
    lines.append(
        f"Overall accuracy {said} with the synthetic set: {100 * diff['mean']:+.1f} points "
        f"± {100 * (diff['ci95'] or 0):.1f}."
    )
    return lines
