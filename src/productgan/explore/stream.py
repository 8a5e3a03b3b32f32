"""Fresh synthetic images for a training loop: ``SynthStream``, an endless iterable of batches.

A set made once is seen many times by a classifier; a stream shows it new images every batch.
Each batch is drawn from the run's generator with every category in turn (or in given proportions), scored by the run's
evaluator, and filtered to a confidence band: images the evaluator gives to another category are
dropped (off-category), and so are the easiest ones, those of each drawn chunk whose probability
for their own category is in its top ``easiest`` share (they teach the classifier least). Every
image carries its name (``SEED:INDEX:CATEGORY@T``, as ``synth`` and ``generate`` name it), its
category and the evaluator's probabilities (soft labels).

Typical use::

    stream = SynthStream.from_run("runs/00000-fmnist-32-32", batch_size=64, temperature=1.2)
    for batch in stream:            # endless: stop when the training loop has had enough
        train_on(batch.images, batch.labels, batch.probabilities)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from productgan.errors import UsageError
from productgan.evaluator import Evaluator, EvaluatorNet, class_probabilities
from productgan.explore.guardrails import LatentStream, category_label, check_settings
from productgan.explore.names import ImageName
from productgan.generator.sampler import Sampler, load_generator
from productgan.run import load_run_config
from productgan.run.records import open_recorded_dataset

CHUNK = 256  # candidates generated and scored at a time


@dataclass
class StreamBatch:
    """Images of one batch (uint8, native size, N x C x H x W), their class indices, the
    evaluator's probabilities (N x classes, float32) and their names."""

    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    names: list[str]


class SynthStream:
    """An endless iterable of ``StreamBatch``es from a class-conditional generator (module docstring).

    ``temperature`` scales the latent vectors (above 1: more varied images); ``easiest`` is the
    share of each chunk's on-category candidates dropped as the easiest (0 keeps them all);
    ``weights`` (one per category) draws the categories at random in those proportions instead of
    in turn. The same ``seed`` gives the same batches."""

    def __init__(
        self,
        sampler: Sampler,
        net: EvaluatorNet,
        batch_size: int = 64,
        temperature: float = 1.0,
        seed: int = 0,
        easiest: float = 0.1,
        weights=None,
    ):
        if not sampler.conditional:
            raise UsageError("A stream of labelled images needs a class-conditional generator (train --conditional).")
        if net.config["num_classes"] != sampler.generator.num_classes:
            raise UsageError(
                f"The evaluator knows {net.config['num_classes']} categories and the generator "
                f"{sampler.generator.num_classes}; use the evaluator of the generator's own run."
            )
        if isinstance(batch_size, bool) or not 1 <= batch_size <= 65_536:
            raise UsageError(f"The batch size must be between 1 and 65,536, not {batch_size}.")
        if not 0 <= easiest < 1:
            raise UsageError(f"The share of easiest images dropped must be at least 0 and below 1, not {easiest}.")
        self.classes = sampler.generator.num_classes
        if weights is not None:
            weights = np.asarray(weights, np.float64)
            finite = weights.shape == (self.classes,) and np.isfinite(weights).all()
            if not finite or (weights < 0).any() or not weights.sum() > 0:
                raise UsageError(f"Give one weight per category ({self.classes}), none negative and not all zero.")
            weights = weights / weights.sum()
        self.weights = weights
        self._category_rng = np.random.default_rng([seed, 1])
        self.temperature = check_settings(seed, temperature, 1)
        self.sampler, self.net, self.batch_size, self.seed, self.easiest = sampler, net, batch_size, seed, easiest
        self.labels_text = [category_label(sampler, c) for c in range(self.classes)]
        self._latents = LatentStream(seed, sampler.generator.config.nz)
        self._rest: StreamBatch | None = None  # what the last take left of its chunk
        self.drawn = self.kept = 0

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str = "cpu", **options) -> SynthStream:
        """The stream of a run's generator, scored by the run's evaluator (trained once and cached)."""
        config = load_run_config(run_dir)
        sampler = load_generator(run_dir, device=device)
        evaluator = Evaluator(config.data, open_recorded_dataset(config, run_dir), progress=False, device=device)
        return cls(sampler, evaluator.net, **options)

    def __iter__(self) -> Iterator[StreamBatch]:
        while True:
            yield self.take(self.batch_size)

    def take(self, count: int) -> StreamBatch:
        """The next ``count`` images of the stream."""
        parts, have = [], 0
        while have < count:
            part, self._rest = self._rest or self._chunk(), None
            need = count - have
            if len(part.labels) > need:
                part, self._rest = _rows(part, slice(0, need)), _rows(part, slice(need, None))
            parts.append(part)
            have += len(part.labels)
        return StreamBatch(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.probabilities for p in parts]),
            [name for p in parts for name in p.names],
        )

    @property
    def keep_rate(self) -> float | None:
        """The share of candidates drawn so far that the band kept."""
        return self.kept / self.drawn if self.drawn else None

    def _chunk(self) -> StreamBatch:
        """CHUNK candidates, every category in turn from a seeded start, filtered to the band."""
        first, z = self._latents.take(CHUNK)
        if self.temperature != 1.0:
            z = z * self.temperature
        if self.weights is None:
            labels = (torch.arange(first, first + CHUNK) % self.classes).long()
        else:
            labels = torch.from_numpy(self._category_rng.choice(self.classes, CHUNK, p=self.weights)).long()
        images = self.sampler.from_noise(z, "native", labels=labels).numpy()
        probabilities = class_probabilities(self.net, images).float().numpy()
        asked = labels.numpy()
        own = probabilities[np.arange(CHUNK), asked]
        keep = probabilities.argmax(axis=1) == asked
        if self.easiest > 0 and keep.sum() > 1:
            keep &= own <= np.quantile(own[keep], 1 - self.easiest)
        rows = np.flatnonzero(keep)
        self.drawn += CHUNK
        self.kept += len(rows)
        names = [
            str(ImageName(self.seed, first + int(row), self.labels_text[asked[row]], self.temperature)) for row in rows
        ]
        return StreamBatch(images[rows], asked[rows].astype(np.int64), probabilities[rows], names)


def _rows(batch: StreamBatch, rows: slice) -> StreamBatch:
    return StreamBatch(batch.images[rows], batch.labels[rows], batch.probabilities[rows], batch.names[rows])
