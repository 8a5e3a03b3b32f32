"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for training on few images.

The discriminator sees every image, real or generated, through the same random colour,
translation and cutout transforms, and the generator's gradient flows back through them. D then
cannot memorise a small training set, and G is not pushed to reproduce the augmentations, since
they are applied to both sides alike. Everything runs on the batch's device, batched, with draws
from a given ``torch.Generator`` so that a run stays repeatable.

Images are float tensors in the generator's range (``low``..``high``), N x C x H x W.

With a probability ``p`` (adaptive augmentation, Karras et al. 2020), each transform reaches each
image with that probability: D sees mostly clean images while ``p`` is low, and the generator
learns no augmentation as long as ``p`` stays below about 0.8 (the paper's leak bound). ``p`` is
a float, or a 0-dim tensor on the device (a CUDA graph reads it from there without being captured
anew when it changes).
"""

from __future__ import annotations

import torch

TRANSLATION_RATIO = 1 / 8  # largest shift, as a fraction of the image side
CUTOUT_RATIO = 1 / 2  # side of the erased square, as a fraction of the image side


def _uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per image, shaped N x 1 x 1 x 1 to broadcast over it."""
    u = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator)
    return (low + (high - low) * u).to(x.dtype)


def color(x: torch.Tensor, generator: torch.Generator | None, span: float = 2.0) -> torch.Tensor:
    """Random brightness, saturation and contrast; ``span`` is the width of the pixel range."""
    x = x + _uniform(x, -0.25, 0.25, generator) * span
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * _uniform(x, 0.0, 2.0, generator) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator) + mean


def translation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side; the border pixels fill the uncovered edge,
    which for product photos is their background."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * TRANSLATION_RATIO + 0.5)), max(1, int(w * TRANSLATION_RATIO + 0.5))
    dy = torch.randint(-sh, sh + 1, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(-sw, sw + 1, (n, 1), device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device) + dy).clamp_(0, h - 1)  # N x H
    cols = (torch.arange(w, device=x.device) + dx).clamp_(0, w - 1)  # N x W
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around a slice put their dimensions first: N x H x W x C.
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator | None, fill: float = 0.0) -> torch.Tensor:
    """Erase one square of half the image side per image, at a random place (it may overhang)."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device, generator=generator)
    top, left = cy - ch // 2, cx - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # N x H x W
    # The fill as a plain number: a tensor made from it would be a host-to-device copy, which a
    # CUDA graph cannot capture.
    return torch.where(inside[:, None], fill, x)


def diff_augment(
    x: torch.Tensor,
    policy: tuple[str, ...],
    generator: torch.Generator | None = None,
    pixel_range: tuple[float, float] | list[float] = (-1.0, 1.0),
    p: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the transforms of ``policy`` in order; differentiable with respect to ``x``. With
    ``p``, each transform reaches each image with probability ``p`` (one draw per image and
    transform, made before the transform's own draws); without it, every image."""
    low, high = pixel_range
    memory_format = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        else torch.contiguous_format
    )
    for name in policy:
        chosen = None if p is None else torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator) < p
        if name == "color":
            augmented = color(x, generator, span=high - low)
        elif name == "translation":
            augmented = translation(x, generator)
        elif name == "cutout":
            augmented = cutout(x, generator, fill=(low + high) / 2)
        else:
            continue
        x = augmented if chosen is None else torch.where(chosen, augmented, x)
    return x.contiguous(memory_format=memory_format)
