"""Image grids a run writes: fixed-noise samples over time, and the real images once."""

from __future__ import annotations

from pathlib import Path

import torch

from productgan import run
from productgan.config import RunConfig
from productgan.data import PackedDataset
from productgan.data.pixels import to_native, to_uint8
from productgan.data.subsets import seeded_subset
from productgan.generator.export import pixel_range
from productgan.generator.grid import save_grid
from productgan.generator.latents import noise
from productgan.models import Generator, eval_mode

# Pixels on the longer side of the grids a run writes, at least: native 28-pixel images are
# enlarged (each pixel repeated) so that a grid is readable on a screen as it is opened.
GRID_PIXELS = 640


class SampleGrid:
    """The same latent vectors at every sample step, so the grids show one run's progress. A
    conditional generator gets one row per class: the same noise column by column, so a row
    shows one category's variety."""

    def __init__(self, config: RunConfig, dataset: PackedDataset, device: torch.device):
        self.meta, self.pixel_range = dataset.meta, pixel_range(config.model)
        count, classes = config.train.grid_size, dataset.num_classes if config.model.conditional else 0
        self.columns, self.labels = None, None
        if classes:
            self.columns = max(1, count // classes)
            count = self.columns * classes
            self.labels = torch.arange(classes).repeat_interleave(self.columns).to(device)
        self.noise = noise(count, config.model.nz, config.seed + 2).to(device)

    @torch.no_grad()
    def save(self, generator: Generator, run_dir: Path, step: int) -> Path:
        with eval_mode(generator):  # running BatchNorm statistics, and no update of them
            images = generator(self.noise, self.labels).float()
        images = to_uint8(to_native(images, self.meta), self.pixel_range).cpu().numpy()
        return save_grid(images, run.sample_path(run_dir, step), nrow=self.columns, least=GRID_PIXELS)


def save_reals(run_dir: Path, dataset: PackedDataset, count: int, seed: int) -> Path:
    """A seeded choice of ``count`` training images at native size, as RUN_DIR/reals.png."""
    rows = dataset.indices("train")
    picks = seeded_subset(len(rows), count, seed)
    images = to_native(torch.from_numpy(dataset.images[rows[picks]]).float(), dataset.meta)
    return save_grid(to_uint8(images, (0, 255)).numpy(), run_dir / run.REALS_FILE, least=GRID_PIXELS)
