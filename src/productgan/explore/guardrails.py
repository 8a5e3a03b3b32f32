"""synth's guarded draw: the checks a generated image must pass to join a synthetic set, each
measured on the run's own data (``guardrails_for``), and the rounds that draw, score and judge
candidates until every category is full (``synthesize``, with ``Selection`` as its state).

- **near-copy**: the image is closer to a training image, in the evaluator's features or in its
  16 x 16 thumbnail, than all but 0.5% of the held-out validation images are to theirs
  (``NeighbourIndex.threshold`` and ``pixel_threshold``);
- **off-category**: the evaluator is at least ``MIN_CONFIDENCE`` sure it shows another
  category than the one asked for (or, where it is never that sure, as sure as it is on the
  median held-out image it classifies correctly);
- **near-duplicate**: the image is closer to an image already kept than all but 1% of the
  held-out validation images are to the nearest other one.

Each candidate gets one record, kept or dropped, naming the first check that fired.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from productgan.errors import ProductganError, UsageError
from productgan.evaluator import features_and_probabilities, native_images
from productgan.evaluator.training import CLASSES_TASK, task_for
from productgan.explore.names import MAX_INDEX, ImageName
from productgan.explore.neighbours import COPY_QUANTILE, REFERENCE_SPLIT, THUMBNAIL, NeighbourIndex, Neighbours
from productgan.generator.latents import check_temperature
from productgan.generator.sampler import Sampler
from productgan.metrics.distances import distance_blocks, kth_neighbour_distances

UNLABELLED = "unlabelled"  # the category folder of an unconditional generator's images

NEAR_COPY, OFF_CATEGORY, NEAR_DUPLICATE = "near-copy", "off-category", "near-duplicate"
CHECKS = (NEAR_COPY, OFF_CATEGORY, NEAR_DUPLICATE)  # a dropped image's reason is the first that fired
DUPLICATE_QUANTILE = 0.01  # held-out real images closer than this share of their kind to another are duplicates
MIN_CONFIDENCE = 0.9  # the evaluator's probability of another category that makes an image off-category
MIN_KEEP_RATE = 0.05  # the lowest keep rate a category's next round is planned with
MAX_ATTEMPTS = 10  # candidates drawn per image asked for, at most, in each category
BATCH_SIZE = 500  # candidates generated and scored together


@dataclass(frozen=True)
class Guardrails:
    """What the checks measure against, and whether a flagged image is dropped."""

    enabled: bool  # drop flagged images (False: keep everything, flags only in the manifest)
    copy_threshold: float  # feature distance to the nearest training image below which an image is a near-copy
    thumbnail_threshold: float  # the same in 16 x 16 thumbnails (NeighbourIndex.pixel_threshold)
    duplicate_threshold: float  # feature distance to a kept image below which an image is a near-duplicate
    min_confidence: float  # evaluator probability of another category that makes an image off-category
    check_category: bool  # the evaluator knows the generator's categories (a labelled dataset)
    held_out: int  # images of the reference split every threshold was measured on

    def describe(self) -> dict[str, Any]:
        """The thresholds as synth.json records them, with how each was calibrated."""
        where = f"over the {self.held_out:,} {REFERENCE_SPLIT} images"
        return {
            "enabled": self.enabled,
            NEAR_COPY: {
                "threshold": self.copy_threshold,
                "thumbnail_threshold": self.thumbnail_threshold,
                "calibration": f"the {COPY_QUANTILE / 2:.1%} quantile of the distance from a held-out real image to "
                f"its nearest training image in the evaluator's features (threshold), and the same in "
                f"{THUMBNAIL} x {THUMBNAIL} thumbnails (thumbnail_threshold), {where}; either test flags an image",
            },
            OFF_CATEGORY: {
                "min_confidence": self.min_confidence,
                "applies": self.check_category,
                "calibration": f"{MIN_CONFIDENCE:g}, or the evaluator's median probability of the right category "
                f"on the {REFERENCE_SPLIT} images it classifies correctly where that is lower",
            },
            NEAR_DUPLICATE: {
                "threshold": self.duplicate_threshold,
                "calibration": f"the {DUPLICATE_QUANTILE:.0%} quantile of the distance from a held-out real image "
                f"to the nearest other one in the evaluator's features, {where}",
            },
        }


def guardrails_for(index: NeighbourIndex, sampler: Sampler, enabled: bool = True) -> Guardrails:
    """The guardrails of a run. A near-copy is what the run's NeighbourIndex flags as a likely
    copy (in the evaluator's features or in thumbnails). A near-duplicate is closer to a kept
    image than all but ``DUPLICATE_QUANTILE`` of the held-out images are to the nearest other
    held-out image, in the evaluator's features: the copy threshold is measured against the whole
    training split, and with a small one it is far wider than the gaps between the images of a
    synthetic set many times its size, so it would drop sound images as duplicates.

    The category check applies where the evaluator learned the generator's categories. An image
    is off-category when the evaluator gives another category at least ``MIN_CONFIDENCE``, or,
    for an evaluator that is never that sure (one trained on a few hundred images), at least its
    median probability for the right category on the held-out images it classifies correctly."""
    dataset = index.dataset
    features, probabilities = features_and_probabilities(index.net, native_images(dataset, REFERENCE_SPLIT))
    if len(features) >= 2:
        duplicate = float(np.quantile(kth_neighbour_distances(features, 1).numpy(), DUPLICATE_QUANTILE))
    else:
        duplicate = float(index.threshold)
    check_category = sampler.conditional and task_for(dataset.num_classes) == CLASSES_TASK
    min_confidence = MIN_CONFIDENCE
    if check_category and len(features):
        confidence, predicted = probabilities.max(dim=1)
        right = predicted.numpy() == dataset.labels[dataset.indices(REFERENCE_SPLIT)]
        if right.any():
            min_confidence = min(MIN_CONFIDENCE, float(np.median(confidence.numpy()[right])))
    return Guardrails(
        enabled=enabled,
        copy_threshold=float(index.threshold),
        thumbnail_threshold=float(index.pixel_threshold),
        duplicate_threshold=duplicate,
        min_confidence=min_confidence,
        check_category=check_category,
        held_out=len(features),
    )


def check_settings(seed: int, temperature: float, max_attempts: int) -> float:
    """The temperature as a float, or one sentence on a seed, temperature or attempt bound
    synth cannot use (a temperature must read back the same from an image name)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a whole number of 0 or more, not {seed!r}.")
    temperature = check_temperature(temperature)
    if float(f"{temperature:g}") != temperature:
        raise UsageError(
            f"--temperature {temperature!r} has more digits than an image name keeps; give at most six "
            f"significant digits (such as {temperature:g})."
        )
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise UsageError(f"--max-attempts must be a whole number of 1 or more, not {max_attempts!r}.")
    return temperature


def synthesize(
    sampler: Sampler,
    index: NeighbourIndex,
    counts: dict[int | None, int],
    seed: int = 0,
    temperature: float = 1.0,
    guardrails: Guardrails | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> SynthResult:
    """Make ``counts[c]`` kept images of each class c (key None for an unconditional generator).

    Candidates are drawn in rounds from the seed's stream of latent vectors, generated and scored
    ``batch_size`` at a time; each round asks every category still short of its count for as many
    candidates as its keep rate so far says it needs. A category that has used ``max_attempts``
    candidates per image asked and is still short ends the call with one sentence naming it and
    what was dropped.
    """
    rails = guardrails or guardrails_for(index, sampler)
    temperature = check_settings(seed, temperature, max_attempts)
    if sampler.conditional and list(sampler.class_names) != list(index.dataset.class_names):
        raise ProductganError(
            "The generator's categories differ from those of the run's dataset; export the generator again "
            "from this run."
        )
    sampler.check_memory(sum(counts.values()))
    selection = Selection(counts, index.net.feature_dim, sampler, rails)
    stream = LatentStream(seed, sampler.generator.config.nz)
    started = time.perf_counter()
    bar = tqdm(total=sum(counts.values()), unit="img", desc="synth", disable=not progress, dynamic_ncols=True)
    try:
        while selection.short():
            plan = selection.plan(max_attempts)
            for start in range(0, len(plan), batch_size):
                classes = [c for c in plan[start : start + batch_size] if selection.need[c]]
                if not classes:
                    continue
                first, z = stream.take(len(classes))
                if temperature != 1.0:
                    z = z * temperature  # as Sampler.latents and latent.name_point scale them
                labels = torch.tensor(classes, dtype=torch.long) if sampler.conditional else None
                images = sampler.from_noise(z, "native", labels=labels).numpy()
                features, probabilities = features_and_probabilities(index.net, images)
                found = index.query_features(features, k=1, images_uint8=images)
                batch = Batch(classes, first, z, images, features, probabilities, found)
                bar.update(selection.judge(batch, seed, temperature))
                bar.set_postfix(dropped=len(selection.records) - len(selection.names), refresh=False)
    finally:
        bar.close()
    return selection.result(time.perf_counter() - started, sampler.conditional)


@dataclass
class SynthResult:
    """The kept images (uint8 native size, N x C x H x W) grouped by category, their latent
    vectors, class indices (None: an unconditional generator) and names; one record per
    candidate scored (kept and dropped, in the order drawn); counts per category and timing; the
    evaluator's class probabilities of each kept image (soft labels)."""

    images: np.ndarray
    latents: torch.Tensor
    labels: np.ndarray | None
    names: list[str]
    records: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)
    probabilities: np.ndarray | None = None  # the evaluator's, N x classes (None: it learned no categories)


class LatentStream:
    """The latent vectors of one seed, handed out in order: rows start..start+m of
    ``noise(start + m, nz, seed)``, drawn once each."""

    def __init__(self, seed: int, nz: int):
        self.rng, self.nz, self.position = np.random.default_rng(seed), nz, 0

    def take(self, count: int) -> tuple[int, torch.Tensor]:
        if self.position + count > MAX_INDEX:
            raise ProductganError(
                f"The images of one seed are named up to index {MAX_INDEX - 1:,}, and this request needs more "
                f"candidates than that; ask for fewer images or lower --max-attempts."
            )
        start = self.position
        self.position += count
        return start, torch.from_numpy(self.rng.standard_normal((count, self.nz), dtype=np.float32))


def category_label(sampler: Sampler, class_index: int) -> str:
    """The class as an image name writes it: its name when the name reads back as this class
    (``ImageName.parse`` and ``Sampler.class_index``), else its index."""
    for text in (sampler.class_names[class_index], str(class_index)):
        try:
            parsed = ImageName.parse(str(ImageName(0, 0, text)))
            if parsed.label is not None and sampler.class_index(parsed.label) == class_index:
                return parsed.label
        except UsageError:
            continue
    raise ProductganError(f"Class {class_index} of this generator cannot be written in an image name.")


@dataclass
class Batch:
    """Candidates generated and scored together: their classes, the stream index of the first,
    latent vectors, images, evaluator features and class probabilities, nearest training images."""

    classes: list[int | None]
    first: int
    latents: torch.Tensor
    images: np.ndarray
    features: torch.Tensor
    probabilities: torch.Tensor
    found: Neighbours


class Selection:
    """One synthesize call's state: what each category asked for, tried, kept and dropped, and
    the kept images with their features (the near-duplicate check compares against them)."""

    def __init__(self, counts: dict[int | None, int], feature_dim: int, sampler: Sampler, rails: Guardrails):
        self.counts, self.class_names, self.rails = counts, sampler.class_names, rails
        self.labels_text = {c: None if c is None else category_label(sampler, c) for c in counts}
        self.need = dict(counts)
        self.tried = dict.fromkeys(counts, 0)
        self.kept = dict.fromkeys(counts, 0)
        self.dropped = {c: dict.fromkeys(CHECKS, 0) for c in counts}
        self.bank = torch.empty(sum(counts.values()), feature_dim, dtype=torch.float64)
        self.names: list[str] = []
        self.images: list[np.ndarray] = []
        self.latents: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.probabilities: list[torch.Tensor] = []
        self.records: list[dict[str, Any]] = []

    def short(self) -> bool:
        return any(self.need.values())

    def plan(self, max_attempts: int) -> list[int | None]:
        """The classes of the next round's candidates: for each category still short, as many as
        its keep rate so far says it needs (and a tenth more), within its attempt bound."""
        plan: list[int | None] = []
        for c, asked in self.counts.items():
            if self.need[c] == 0:
                continue
            budget = max_attempts * asked - self.tried[c]
            if budget <= 0:
                raise self.unfilled(c, max_attempts)
            if self.tried[c]:
                rate = max(self.kept[c] / self.tried[c], MIN_KEEP_RATE)
                plan += [c] * min(budget, math.ceil(self.need[c] / rate * 1.1))
            else:
                plan += [c] * min(budget, self.need[c])
        return plan

    def judge(self, batch: Batch, seed: int, temperature: float) -> int:
        """Record, and keep or drop, each candidate of ``batch`` in order; returns how many were
        kept. Candidates of a category filled earlier in the batch are left unrecorded."""
        rails, names = self.rails, self.class_names
        bank_distance, bank_row = _nearest_kept(batch.features, self.bank[: len(self.names)])
        within = _pairwise(batch.features)
        kept_here: dict[int, str] = {}  # rows of this batch kept so far, and their names
        for row, c in enumerate(batch.classes):
            if self.need[c] == 0:
                continue
            nearest = bank_distance[row]
            nearest_name = self.names[bank_row[row]] if bank_row[row] >= 0 else None
            for other, other_name in kept_here.items():
                if within[row, other] < nearest:
                    nearest, nearest_name = within[row, other], other_name
            predicted = int(batch.probabilities[row].argmax())
            confidence = float(batch.probabilities[row, predicted])
            flags = [
                check
                for check, fired in (
                    (NEAR_COPY, bool(batch.found.copy[row])),
                    (OFF_CATEGORY, rails.check_category and predicted != c and confidence >= rails.min_confidence),
                    (NEAR_DUPLICATE, nearest_name is not None and nearest < rails.duplicate_threshold),
                )
                if fired
            ]
            keep = not (rails.enabled and flags)
            name = str(ImageName(seed, batch.first + row, self.labels_text[c], temperature))
            self.records.append(
                {
                    "name": name,
                    "category": "" if c is None else names[c],
                    "seed": seed,
                    "index": batch.first + row,
                    "temperature": temperature,
                    "status": "kept" if keep else "dropped",
                    "reason": "" if keep else flags[0],
                    "flags": ";".join(flags),
                    "predicted": names[predicted] if rails.check_category else "",
                    "confidence": round(confidence, 6) if rails.check_category else "",
                    "probabilities": soft_label_text(batch.probabilities[row]) if rails.check_category else "",
                    "nearest_train_index": int(batch.found.indices[row, 0]),
                    "nearest_train_distance": round(float(batch.found.distances[row, 0]), 6),
                    "nearest_train_thumbnail_distance": round(float(batch.found.pixel_distances[row]), 4),
                    "nearest_generated": nearest_name or "",
                    "nearest_generated_distance": "" if nearest_name is None else round(float(nearest), 6),
                    "copy_threshold": round(rails.copy_threshold, 6),
                    "thumbnail_threshold": round(rails.thumbnail_threshold, 4),
                    "duplicate_threshold": round(rails.duplicate_threshold, 6),
                    "min_confidence": rails.min_confidence if rails.check_category else "",
                }
            )
            self.tried[c] += 1
            if not keep:
                self.dropped[c][flags[0]] += 1
                continue
            self.bank[len(self.names)] = batch.features[row]
            kept_here[row] = name
            self.names.append(name)
            self.images.append(batch.images[row])
            self.latents.append(batch.latents[row])
            self.labels.append(-1 if c is None else c)
            self.probabilities.append(batch.probabilities[row])
            self.kept[c] += 1
            self.need[c] -= 1
        return len(kept_here)

    def unfilled(self, c: int | None, max_attempts: int) -> ProductganError:
        what = "The images" if c is None else f"Category {self.class_names[c]!r}"
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in self.dropped[c].items() if count) or "none"
        return ProductganError(
            f"{what} could not be filled: {self.kept[c]:,} of {self.counts[c]:,} images kept after "
            f"{self.tried[c]:,} candidates (the most --max-attempts {max_attempts} allows), dropped as {reasons}; "
            f"ask for fewer images, raise --max-attempts, or pass --no-guardrails to keep every image."
        )

    def result(self, seconds: float, conditional: bool) -> SynthResult:
        """The kept images grouped by category (each in the order drawn), and the counts."""
        order = np.argsort(np.asarray(self.labels, np.int64), kind="stable")
        key = {c: UNLABELLED if c is None else self.class_names[c] for c in self.counts}
        return SynthResult(
            images=np.stack(self.images)[order],
            latents=torch.stack(self.latents)[order],
            labels=np.asarray(self.labels, np.int64)[order] if conditional else None,
            names=[self.names[i] for i in order],
            records=self.records,
            probabilities=torch.stack(self.probabilities).float().numpy()[order] if self.rails.check_category else None,
            stats={
                "seconds": seconds,
                "asked": {key[c]: self.counts[c] for c in self.counts},
                "tried": {key[c]: self.tried[c] for c in self.counts},
                "kept": {key[c]: self.kept[c] for c in self.counts},
                "dropped": {key[c]: self.dropped[c] for c in self.counts},
            },
        )


def soft_label_text(probabilities: torch.Tensor) -> str:
    """The manifest's ``probabilities``: one per category in the run's order, ``;``-separated."""
    return ";".join(f"{float(p):.6f}" for p in probabilities)


def _nearest_kept(features: torch.Tensor, bank: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and row of, each feature's nearest kept image (inf and -1 when none is kept)."""
    distance = np.full(len(features), np.inf)
    row = np.full(len(features), -1, np.int64)
    if len(bank):
        for start, block in distance_blocks(features, bank):
            values, where = block.min(dim=1)
            distance[start : start + len(block)] = values.numpy()
            row[start : start + len(block)] = where.numpy()
    return distance, row


def _pairwise(features: torch.Tensor) -> np.ndarray:
    """Distances between the images of one batch (N x N)."""
    out = np.empty((len(features), len(features)))
    for start, block in distance_blocks(features, features):
        out[start : start + len(block)] = block.numpy()
    return out
