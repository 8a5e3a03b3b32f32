"""Real training batches: index gathers from the packed uint8 array, in an order that a
checkpoint describes with one number."""

from __future__ import annotations

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.train.distributed import SINGLE, Context


class BatchSource:
    """Real batches gathered by index from the in-memory uint8 array.

    Each epoch's order is a permutation seeded by (seed, epoch), so the position in the data is
    fully described by the number of global batches drawn: that counter is all a checkpoint needs,
    whatever the number of processes. Under torchrun each rank takes its own slice of every global
    batch. The last incomplete batch of an epoch is dropped.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, context: Context = SINGLE
    ):
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.local_batch = batch_size // context.world_size  # config.resolve checked that it divides
        self.offset = context.rank * self.local_batch
        self.batches_per_epoch = len(images) // batch_size
        self.batches_drawn = 0
        self._epoch, self._order = -1, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (uint8 images, int64 labels) of this rank's slice of the global batch."""
        epoch, position = divmod(self.batches_drawn, self.batches_per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=rng).to(self.images.device)
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


def training_batches(
    dataset: PackedDataset, batch_size: int, seed: int, device: torch.device, context: Context = SINGLE
) -> BatchSource:
    """The train split on ``device`` (or read from the mapped file when it is larger than
    memory), served as seeded global batches."""
    if isinstance(dataset.images, np.memmap):
        rows = dataset.indices("train")
        images = MappedImages(dataset.images, rows, device)
        labels = torch.from_numpy(dataset.labels[rows]).to(device)
    else:
        images, labels = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in dataset.subset("train"))
    return BatchSource(images, labels, batch_size, seed, context)
