"""Standing BatchNorm statistics: a weight-averaged generator's, measured on its own samples."""

from __future__ import annotations

import copy

import torch
from torch import nn

from productgan.generator.latents import balanced_labels
from productgan.models import Generator

# Images a weight-averaged generator's BatchNorm statistics are measured on (``measure_statistics``),
# and in batches of how many.
STATISTICS_IMAGES, STATISTICS_BATCH = 2048, 256


@torch.no_grad()
def measure_statistics(generator: Generator, seed: int) -> Generator:
    """``generator`` with BatchNorm statistics of its own ("standing statistics", as in BigGAN):
    measured over STATISTICS_IMAGES of its samples in batches of STATISTICS_BATCH, balanced over
    the classes, noise from ``seed``. A weight average's statistics are copies of the live
    generator's, which fit the live weights rather than the averaged ones; measured ones scored
    higher recall and lower FID on every run tried (docs/training.md). The measurement runs on a
    contiguous copy, so a channels-last model in training and one rebuilt from its
    checkpoint get the same statistics; they are written into ``generator``'s own buffers, in
    place, as a captured CUDA graph needs."""
    work = copy.deepcopy(generator).to(memory_format=torch.contiguous_format).train()
    norms = nn.modules.batchnorm._BatchNorm
    pairs = [(a, b) for a, b in zip(generator.modules(), work.modules()) if isinstance(a, norms)]
    if not pairs:
        return generator
    device = next(work.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    for _, norm in pairs:
        norm.reset_running_stats()
        norm.momentum = None  # a plain mean over the batches
    classes = generator.num_classes
    for start in range(0, STATISTICS_IMAGES, STATISTICS_BATCH):
        z = torch.randn(STATISTICS_BATCH, generator.config.nz, device=device, generator=rng)
        work(z, balanced_labels(STATISTICS_BATCH, classes, start).to(device) if classes else None)
    for norm, measured in pairs:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            getattr(norm, name).copy_(getattr(measured, name))
    return generator
