"""Real training batches: index gathers from the packed uint8 array, in an order that a
checkpoint describes with one number.

A mixed-label training split (prepare's ``unlabelled/`` folder: label -1) trains a conditional
GAN on every image. Each unlabelled image is given, once and seeded, a category for the fake it is
paired with, drawn in the labelled images' proportions, and carries it encoded as ``-1 - class``:
the generator makes that category (``generator_classes``), while the discriminator sees a
negative label on both sides and leaves out its projection term there (``models.dcgan``), so
the unlabelled share of each batch is judged by the unconditional part of D alone, real and fake
alike. Where under ``LABELLED_SHARE`` of the images have a category, each labelled image is drawn
that many times more often, so that a quarter of every batch teaches D the categories."""

from __future__ import annotations

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.errors import ProductganError
from productgan.train.distributed import SINGLE, Context


class BatchSource:
    """Real batches gathered by index from the in-memory uint8 array.

    Each epoch's order is a permutation seeded by (seed, epoch), so the position in the data is
    fully described by the number of global batches drawn: that counter is all a checkpoint needs,
    whatever the number of processes. Under torchrun each rank takes its own slice of every global
    batch. The last incomplete batch of an epoch is dropped.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        context: Context = SINGLE,
        pool: torch.Tensor | None = None,
    ):
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.pool = pool  # the rows an epoch goes through (some more than once); None: each row once
        self.local_batch = batch_size // context.world_size  # config.resolve checked that it divides
        self.offset = context.rank * self.local_batch
        self.epoch_length = len(images) if pool is None else len(pool)
        self.batches_per_epoch = self.epoch_length // batch_size
        self.batches_drawn = 0
        self._epoch, self._order = -1, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (uint8 images, int64 labels) of this rank's slice of the global batch."""
        epoch, position = divmod(self.batches_drawn, self.batches_per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.epoch_length, generator=rng)
            if self.pool is not None:
                self._order = self.pool[self._order]
            self._order = self._order.to(self.images.device)
            self._epoch = epoch
        start = position * self.batch_size + self.offset
        index = self._order[start : start + self.local_batch]
        self.batches_drawn += 1
        return self.images.index_select(0, index), self.labels.index_select(0, index.to(self.labels.device))


class MappedImages:
    """Training images left in a memory-mapped array and read batch by batch, for datasets
    larger than memory; it stands in for the in-memory uint8 tensor in ``BatchSource``."""

    device = torch.device("cpu")  # where BatchSource keeps its index order

    def __init__(self, array: np.ndarray, rows: np.ndarray, target: torch.device):
        self.array, self.rows, self.target = array, rows, target

    def __len__(self) -> int:
        return len(self.rows)

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        picked = self.rows[index.numpy()]
        order = np.argsort(picked, kind="stable")  # read the file front to back
        batch = np.empty((len(picked), *self.array.shape[1:]), np.uint8)
        batch[order] = self.array[picked[order]]
        return torch.from_numpy(batch).to(self.target)


def to_training_range(
    images: torch.Tensor, pixel_range: list[float], flip_rng: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 images as floats in the generator's range; with ``flip_rng``, half of them (a seeded
    draw) mirrored left to right."""
    low, high = pixel_range
    batch = images.float().mul_((high - low) / 255.0).add_(low)
    if flip_rng is not None:
        flip = torch.rand(len(batch), device=batch.device, generator=flip_rng) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return batch


LABELLED_SHARE = 0.25  # the least share of a mixed-label batch that has a category (drawn more often)


def generator_classes(labels: torch.Tensor) -> torch.Tensor:
    """The categories the generator makes for a batch's labels: a labelled image's own, the one
    drawn for an unlabelled image (encoded ``-1 - class``)."""
    return torch.where(labels >= 0, labels, -1 - labels)


def mixed_labels(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A training split's labels with each unlabelled image's (-1) fake category encoded as
    ``-1 - class``, drawn seeded in the labelled images' proportions, and the pool of rows an
    epoch draws from (labelled rows repeated up to ``LABELLED_SHARE``); ``labels`` and None when
    every image has a category."""
    unlabelled = labels < 0
    if not unlabelled.any():
        return labels, None
    known = labels[~unlabelled]
    if not len(known):
        raise ProductganError(
            "No training image has a category, so a conditional GAN has nothing to learn the categories "
            "from; prepare the data with a sub-folder per category, or train without --conditional."
        )
    proportions = np.bincount(known) / len(known)
    rng = np.random.default_rng([seed, len(labels), 0x66616B65])
    encoded = labels.copy()
    encoded[unlabelled] = -1 - rng.choice(len(proportions), size=int(unlabelled.sum()), p=proportions)
    rows = np.arange(len(labels))
    repeat = max(1, round(LABELLED_SHARE * unlabelled.sum() / ((1 - LABELLED_SHARE) * len(known))))
    pool = np.concatenate([rows[unlabelled], np.repeat(rows[~unlabelled], repeat)])
    return encoded, pool


def describe_mixed(source: BatchSource) -> str | None:
    """One line on a mixed-label split's batches for the start of a run; None for any other."""
    if source.pool is None:
        return None
    unlabelled = int((source.labels < 0).sum())
    labelled = len(source.labels) - unlabelled
    repeat = (len(source.pool) - unlabelled) // max(labelled, 1)
    return (
        f"{unlabelled:,} of the {len(source.labels):,} training images have no category: D judges them (and "
        f"their fakes) without the category; each of the {labelled:,} labelled ones is drawn {repeat} "
        f"time{'s' if repeat != 1 else ''} an epoch."
    )


def training_batches(
    dataset: PackedDataset,
    batch_size: int,
    seed: int,
    device: torch.device,
    context: Context = SINGLE,
    conditional: bool = False,
) -> BatchSource:
    """The train split on ``device`` (or read from the mapped file when it is larger than
    memory), served as seeded global batches; for a ``conditional`` GAN on a mixed-label split,
    with the labels and the pool of ``mixed_labels``."""
    rows = dataset.indices("train")
    labels, pool = mixed_labels(dataset.labels[rows], seed) if conditional else (dataset.labels[rows], None)
    if isinstance(dataset.images, np.memmap):
        images = MappedImages(dataset.images, rows, device)
    else:
        images = torch.from_numpy(np.ascontiguousarray(dataset.images[rows])).to(device)
    labels = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
    pool = None if pool is None else torch.from_numpy(pool)
    return BatchSource(images, labels, batch_size, seed, context, pool)
