"""``productgan synth``: a labelled synthetic training set from a run's generator, with guardrails
on what goes in.

``productgan synth RUN --out DIR`` makes images by category, scores each with the run's
evaluator, keeps or drops it (``productgan.explore.guardrails``: near-copy, off-category,
near-duplicate), and draws replacements for the dropped ones until every category holds the
count asked for (within ``max_attempts`` candidates per image asked).

What it writes, all at once (a staging folder, then one swap; ``files.Outputs``)::

    DIR/synth.json              the request, the thresholds, counts and drops per reason, timing
    DIR/manifest.csv            one row per candidate, kept or dropped (also manifest.jsonl)
    DIR/<category>/SEED-INDEX.png  each image (cropped to its product, its background transparent,
                                with ``crop`` and ``background``)
    DIR/packed/                 with ``packed``: a packed dataset (synthetic train split, the
                                run's real val and test splits)

Every image is named ``SEED:INDEX[:CLASS][@TEMPERATURE]`` (``productgan.explore.names.ImageName``):
image INDEX of ``productgan generate --seed SEED --label CLASS --temperature T``. All categories
draw from the one stream of latent vectors of the seed, each vector used once, so no two images
share a vector.

``--out`` is judged, and locked against a second synth, before any work; with ``--overwrite``
it replaces only an earlier synth output holding nothing but the files its synth.json and
manifest.csv list (``SYNTH_OUTPUT``): a file a user added there (checked labels, notes) makes
it refuse, naming the file, so nothing the user made is ever deleted.

Typical use::

    summary = synth_run("runs/00000-fashion-mnist-32", "synthetic", per_class=1000)
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.data.packed import IMAGES_FILE, INFO_FILE, LABELS_FILE, SOFT_LABELS_FILE, SPLIT_FILE, SPLITS
from productgan.errors import UsageError
from productgan.explore.guardrails import (
    CHECKS,
    MAX_ATTEMPTS,
    UNLABELLED,
    Guardrails,
    SynthResult,
    check_settings,
    guardrails_for,
    synthesize,
)
from productgan.explore.names import MAX_INDEX, ImageName
from productgan.explore.neighbours import NeighbourIndex
from productgan.files import FolderKind, Outputs, write_error
from productgan.generator.cutout import WHOLE, Cutout, check_options, plan_cutout
from productgan.generator.grid import to_pil
from productgan.generator.output import file_safe
from productgan.generator.sampler import Sampler, load_generator
from productgan.run import load_run_config

FORMAT = "productgan.explore.synth"
FORMAT_VERSION = 1
SUMMARY_FILE = "synth.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"
PACKED_DIR = "packed"
# One per candidate: the record Selection.judge writes, with the file write_synth fills in.
MANIFEST_COLUMNS = (
    "name",
    "file",
    "category",
    "seed",
    "index",
    "temperature",
    "status",
    "reason",
    "flags",
    "predicted",
    "confidence",
    "probabilities",
    "nearest_train_index",
    "nearest_train_distance",
    "nearest_train_thumbnail_distance",
    "nearest_generated",
    "nearest_generated_distance",
    "copy_threshold",
    "thumbnail_threshold",
    "duplicate_threshold",
    "min_confidence",
)


def check_request(conditional: bool | None, per_class: int | None, n: int | None, balance: bool) -> None:
    """One sentence unless exactly one of ``per_class``, ``n`` and ``balance`` says how many
    images to make, within bounds, and the generator has the categories it needs (not checked
    while ``conditional`` is None: before the generator is loaded)."""
    given = [flag for flag, value in (("--per-class", per_class), ("--n", n)) if value is not None]
    if len(given) + bool(balance) != 1:
        raise UsageError(
            "Say how many images to make with exactly one of --per-class N (each category), --n N (in all) "
            "or --balance (top every category up to the largest)."
        )
    for flag, value in (("--per-class", per_class), ("--n", n)):
        if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX_INDEX):
            raise UsageError(f"{flag} must be between 1 and {MAX_INDEX:,}, not {value}.")
    if conditional is False and n is None:
        raise UsageError(
            f"{given[0] if given else '--balance'} makes images by category, and this generator is not "
            f"class-conditional; ask for --n N images instead, or train a generator with --conditional."
        )


def planned_counts(
    sampler: Sampler,
    train_labels: np.ndarray,
    per_class: int | None = None,
    n: int | None = None,
    balance: bool = False,
) -> dict[int | None, int]:
    """Images to make per class index (None: the one key of an unconditional generator), from
    exactly one of ``per_class``, ``n`` (split evenly over the categories) and ``balance`` (each
    category topped up to the largest one in ``train_labels``, the run's training split)."""
    check_request(sampler.conditional, per_class, n, balance)
    if not sampler.conditional:
        return {None: n}
    classes = sampler.generator.num_classes
    if per_class is not None:
        counts = dict.fromkeys(range(classes), per_class)
    elif n is not None:
        counts = {c: n // classes + (c < n % classes) for c in range(classes)}
    else:
        held = np.bincount(np.asarray(train_labels, np.int64), minlength=classes)
        counts = {c: int(held.max() - held[c]) for c in range(classes)}
        if not any(counts.values()):
            raise UsageError(
                f"Every category of the run's training split already holds {int(held.max()):,} images, so "
                f"--balance has nothing to add; use --per-class N to add N images to each."
            )
    total = sum(counts.values())
    if total > MAX_INDEX:
        raise UsageError(f"{total:,} images were asked for; one seed names at most {MAX_INDEX:,}, so ask for fewer.")
    return {c: count for c, count in counts.items() if count > 0}


def category_folders(names: list[str]) -> list[str]:
    """A folder name for each category: the name made file-safe, never hidden, never one of
    synth's own files, and distinct (a clash is told apart by the class index)."""
    reserved = {SUMMARY_FILE, MANIFEST_CSV, MANIFEST_JSONL, PACKED_DIR}
    folders = []
    for name in names:
        folder = file_safe(name)
        if folder.startswith(".") or folder.casefold() in reserved:
            folder = "_" + folder
        folders.append(folder)
    folded = [f.casefold() for f in folders]
    return [f if folded.count(f.casefold()) == 1 else f"{i:02d}-{f}" for i, f in enumerate(folders)]


def synth_files(out: Path) -> set[str]:
    """The files an earlier synth wrote in ``out`` (paths inside it), as its synth.json and
    manifest.csv list them; none when it has no synth.json of this format."""
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
        if not isinstance(summary, dict) or summary.get("format") != FORMAT:
            return set()
        with open(out / MANIFEST_CSV, newline="", encoding="utf-8") as handle:
            images = {row.get("file") for row in csv.DictReader(handle)}
    except (OSError, ValueError, csv.Error):
        return set()
    packed = (summary.get("files") or {}).get("packed") == PACKED_DIR
    own = {SUMMARY_FILE, MANIFEST_CSV, MANIFEST_JSONL, *(f for f in images if isinstance(f, str) and f)}
    if packed:
        own |= {f"{PACKED_DIR}/{name}" for name in (IMAGES_FILE, LABELS_FILE, SPLIT_FILE, INFO_FILE, SOFT_LABELS_FILE)}
    return own


SYNTH_OUTPUT = FolderKind("a synth output", synth_files)


def manifest_csv(records: list[dict[str, Any]]) -> str:
    """The manifest as CSV text: a header row of ``MANIFEST_COLUMNS``, then one row per candidate."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue()


def packed_dataset(result: SynthResult, sampler: Sampler, dataset: PackedDataset, meta: dict) -> PackedDataset:
    """The kept images at training size as the train split, with the run's real val and test
    splits: a packed dataset productgan trains and evaluates on as it does on prepare's. Where the
    evaluator learned the categories, the soft labels are its probabilities for the synthetic
    images and one-hot rows for the real ones."""
    training_size = sampler.from_noise(
        result.latents, "training", labels=None if result.labels is None else torch.from_numpy(result.labels)
    ).numpy()
    held_out = np.concatenate([dataset.indices("val"), dataset.indices("test")])
    if result.labels is None:  # an unconditional generator: one class, real images included
        class_names = [UNLABELLED]
        synthetic_labels = np.zeros(len(training_size), np.int64)
        real_labels = np.zeros(len(held_out), np.int64)
    else:
        class_names = list(sampler.class_names)
        synthetic_labels, real_labels = result.labels, dataset.labels[held_out]
    soft = None
    if result.probabilities is not None and result.labels is not None:
        soft = np.concatenate([result.probabilities, np.eye(len(class_names), dtype=np.float32)[real_labels]])
        soft = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    return PackedDataset(
        images=np.concatenate([training_size, np.asarray(dataset.images[held_out])]),
        labels=np.concatenate([synthetic_labels, real_labels]).astype(np.int64),
        class_names=class_names,
        split=np.concatenate([np.zeros(len(training_size), np.int8), dataset.split[held_out]]).astype(np.int8),
        meta=meta,
        soft_labels=soft,
    )


def write_synth(
    result: SynthResult,
    folder: Path,
    summary: dict[str, Any],
    sampler: Sampler,
    dataset: PackedDataset,
    packed: bool = False,
    cutout: Cutout = WHOLE,
) -> Path:
    """Write the image tree, both manifests, synth.json and (``packed``) the packed dataset into
    ``folder`` (the staging folder ``files.Outputs`` puts in place in one step, so a crash leaves
    the old output or the new one). Fills in each kept record's ``file``. ``cutout`` crops the
    PNGs or makes their background transparent; the packed dataset stays whole and opaque."""
    folders = category_folders(sampler.class_names) if sampler.conditional else [UNLABELLED]
    width = max(6, len(str(max(r["index"] for r in result.records))))
    files = {}
    for position, name in enumerate(result.names):
        parsed = ImageName.parse(name)
        category = folders[0] if result.labels is None else folders[int(result.labels[position])]
        files[name] = f"{category}/{parsed.seed}-{parsed.index:0{width}d}.png"
    for record in result.records:
        record["file"] = files.get(record["name"], "") if record["status"] == "kept" else ""
    for category in {files[name].partition("/")[0] for name in files}:
        (folder / category).mkdir()
    pictures = cutout.pictures(result.images)  # H x W x C, or C x H x W
    for position, name in enumerate(result.names):
        path = folder / files[name]
        try:
            to_pil(pictures[position]).save(path, format="PNG")
        except OSError as error:  # named, so that a full disk says where (files.Outputs names it in --out)
            raise write_error(error, path) from None
    (folder / MANIFEST_CSV).write_text(manifest_csv(result.records), encoding="utf-8")
    lines = [json.dumps({column: r[column] for column in MANIFEST_COLUMNS}) for r in result.records]
    (folder / MANIFEST_JSONL).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if packed:
        meta = _packed_meta(summary, dataset)
        packed_dataset(result, sampler, dataset, meta).save(folder / PACKED_DIR)
    # synth.json goes last: synth_files keys on it.
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return folder


def _packed_meta(summary: dict[str, Any], dataset: PackedDataset) -> dict[str, Any]:
    keys = ("native_size", "fit", "padded_size", "pad", "background", "licence")
    return {
        **{k: dataset.meta[k] for k in keys if k in dataset.meta},
        "source": f"productgan synth of {summary['run']}",
        "synthetic": {
            SPLITS[0]: f"generated by productgan synth (seed {summary['seed']}; {MANIFEST_CSV} names every image)",
            SPLITS[1]: f"real: the val split of {dataset.meta.get('source', 'the run dataset')}",
            SPLITS[2]: f"real: the test split of {dataset.meta.get('source', 'the run dataset')}",
        },
    }


def synth_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    per_class: int | None = None,
    n: int | None = None,
    balance: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
    guardrails: bool = True,
    packed: bool = False,
    overwrite: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    device: str = "cpu",
    progress: bool = True,
    index: NeighbourIndex | None = None,
    crop: str = "none",
    background: str = "keep",
) -> dict[str, Any]:
    """``productgan synth``: make, check and write a labelled synthetic training set from the
    generator of ``run_dir``; returns synth.json's contents. Arguments are checked and ``out``
    judged before anything slow starts; ``index`` (the run's NeighbourIndex) is built when not given.
    ``crop`` and ``background`` apply to the PNGs (generator/cutout.py), never to ``packed``."""
    started = time.perf_counter()
    load_run_config(run_dir)  # one sentence when this is not a run
    check_options(crop, background)
    temperature = check_settings(seed, temperature, max_attempts)
    check_request(None, per_class, n, balance)
    with Outputs("synth") as outputs:
        out = outputs.claim(out, overwrite, SYNTH_OUTPUT)  # held until written: a second synth is refused now
        sampler = load_generator(run_dir, device=device)
        check_request(sampler.conditional, per_class, n, balance)
        cutout = plan_cutout(sampler, crop, background)
        index = index or NeighbourIndex.from_run(run_dir, progress=progress, device=device)
        train_labels = index.dataset.labels[index.dataset.indices("train")]
        train_labels = train_labels[train_labels >= 0]  # --balance counts the images with a category
        counts = planned_counts(sampler, train_labels, per_class, n, balance)
        rails = guardrails_for(index, sampler, enabled=guardrails)
        setup_seconds = time.perf_counter() - started
        result = synthesize(sampler, index, counts, seed, temperature, rails, max_attempts, progress=progress)
        summary = synth_summary(run_dir, sampler, rails, result, seed, temperature, per_class, n, balance, max_attempts)
        summary["setup_seconds"] = round(setup_seconds, 3)  # the generator, the index, the thresholds
        summary["files"]["packed"] = PACKED_DIR if packed else None
        summary["images"] = {"crop": crop, "background": background}  # of the PNGs; packed/ is whole and opaque
        started = time.perf_counter()
        outputs.write({out: lambda tmp: write_synth(result, tmp, summary, sampler, index.dataset, packed, cutout)})
        summary["out"] = str(out)
        summary["write_seconds"] = round(time.perf_counter() - started, 3)
    return summary


def synth_summary(
    run_dir: str | os.PathLike,
    sampler: Sampler,
    rails: Guardrails,
    result: SynthResult,
    seed: int,
    temperature: float,
    per_class: int | None,
    n: int | None,
    balance: bool,
    max_attempts: int,
) -> dict[str, Any]:
    """synth.json: the request, the generator, the thresholds, and counts per category and reason."""
    stats = result.stats
    tried = sum(stats["tried"].values())
    kept = sum(stats["kept"].values())
    dropped = {reason: sum(d[reason] for d in stats["dropped"].values()) for reason in CHECKS}
    flagged = {reason: sum(reason in r["flags"].split(";") for r in result.records) for reason in CHECKS}
    request = (
        {"per_class": per_class}
        if per_class
        else {"n": n}
        if n
        else {"balance": "every category topped up to the largest of the run's training split"}
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run": str(Path(run_dir).resolve()),
        "generator": {k: sampler.info.get(k) for k in ("dataset", "step", "images_seen", "ema", "seed")},
        "request": {**request, "max_attempts": max_attempts},
        "seed": seed,
        "temperature": temperature,
        "guardrails": rails.describe(),
        "candidates": tried,
        "kept": kept,
        "dropped": dropped,
        "flagged": flagged,
        "drop_rates": {reason: round(dropped[reason] / tried, 6) if tried else 0.0 for reason in CHECKS},
        "categories": {
            name: {
                "asked": stats["asked"][name],
                "kept": stats["kept"][name],
                "candidates": stats["tried"][name],
                "dropped": stats["dropped"][name],
            }
            for name in stats["asked"]
        },
        "seconds": round(stats["seconds"], 3),  # generating, scoring and choosing; not setup or writing
        "kept_per_second": round(kept / stats["seconds"], 1) if stats["seconds"] > 0 else None,
        "files": {"manifest": [MANIFEST_CSV, MANIFEST_JSONL], "packed": None},
    }
