"""Pixel conversions shared by the sampler and the evaluator: model range to uint8, and the
training size back to the dataset's native size.

Both sides go through these same functions so that generated and real images reach the
evaluator along one pixels-to-native path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def to_uint8(images: torch.Tensor, pixel_range: tuple[float, float] | list[float]) -> torch.Tensor:
    """Float images on ``pixel_range`` -> uint8 0..255 (rounded, values outside clamped)."""
    low, high = pixel_range
    scaled = (images.float() - low) * (255.0 / (high - low))
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


def to_native(images: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Undo the fit made by prepare: scale back to the padded native square, then crop the pad.

    Float images in, float images out. Works on any batch; a no-op when the fit recorded no pad.
    """
    padded = info.get("padded_size")
    pad = info.get("pad")
    if not padded or not pad:
        return images
    if list(images.shape[-2:]) != list(padded):
        images = F.interpolate(images, size=tuple(padded), mode="bilinear", antialias=True, align_corners=False)
    top, bottom, left, right = pad
    return images[..., top : padded[0] - bottom, left : padded[1] - right]
