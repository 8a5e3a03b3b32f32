"""What a product photo shows, read from its pixels: which pixels are the product (those off the
background colour ``prepare`` recorded), its box, and its measured attributes: main colour,
lightness, saturation, hue, size (share of the canvas) and aspect (width over height of its box).

No labels are needed: a catalogue photo on a plain background says all of this by itself, which is
what steering (explore/steering.py) fits its directions to and what its benchmark measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from productgan.data.colour import grey_to_lab, srgb_to_lab

# A pixel is the product's when one of its channels is this far (of 255) from the background: above
# the noise of a generated background and of JPEG, below the faintest edge of a product.
MASK_THRESHOLD = 24

# The attributes ``measure`` reads, in the order directions are fitted to them.
ATTRIBUTES = ("lightness", "saturation", "hue", "size", "aspect", "a", "b")

ATTRIBUTE_HELP = {
    "lightness": "CIELAB L* of the product's main colour (0 black to 100 white)",
    "saturation": "CIELAB chroma C*ab of the main colour (0 grey, 100+ vivid)",
    "hue": "the main colour's hue angle h_ab in degrees (0 red, 90 yellow, 180 green, 270 blue)",
    "size": "the share of the canvas the product covers (0 to 1)",
    "aspect": "log2 of the width over the height of the product's box (0 square, 1 twice as wide)",
    "a": "CIELAB a* of the main colour (green to red)",
    "b": "CIELAB b* of the main colour (blue to yellow)",
}


def background_values(info: dict[str, Any], channels: int) -> np.ndarray:
    """The background colour recorded for a dataset or an export (``background``: a grey level or
    R, G, B), as ``channels`` values 0..255; white when nothing is recorded."""
    recorded = info.get("background", 255)
    values = np.atleast_1d(np.asarray(recorded, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, channels)
    if channels == 1 and values.size == 3:
        values = values.mean(keepdims=True)
    return values


def distance_to_background(images: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint8 N x C x H x W -> N x H x W: each pixel's largest channel difference from the background."""
    images = np.asarray(images)
    return np.abs(
        images.astype(np.int16) - np.asarray(background, dtype=np.float64).round().astype(np.int16)[None, :, None, None]
    ).max(axis=1)


def product_mask(images: np.ndarray, background: np.ndarray, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """uint8 N x C x H x W -> bool N x H x W: the pixels that are the product's."""
    return distance_to_background(images, background) > threshold


def product_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (top, bottom, left, right; bottom and right exclusive) of one H x W mask, stray
    pixels left out (a row or column counts when it holds 2% of the fullest one), or None when empty."""
    rows, cols = mask.sum(axis=1), mask.sum(axis=0)
    if rows.max(initial=0) == 0:
        return None
    keep_rows = np.flatnonzero(rows >= max(1, 0.02 * rows.max()))
    keep_cols = np.flatnonzero(cols >= max(1, 0.02 * cols.max()))
    return int(keep_rows[0]), int(keep_rows[-1]) + 1, int(keep_cols[0]), int(keep_cols[-1]) + 1


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of two stacks of masks (N x H x W), one figure per pair (1 when both are empty)."""
    inter = np.logical_and(a, b).sum(axis=(-2, -1))
    union = np.logical_or(a, b).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def main_colours(images: np.ndarray, background: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The CIELAB main colour of each image's product, N x 3 (NaN where no pixel is the product's):
    the median of the product's core, the half of its pixels farthest from the background, so that
    edges blended into the background and stray pixels do not pull it towards the background."""
    images = np.asarray(images)
    distance = distance_to_background(images, background)
    mask = distance > MASK_THRESHOLD if mask is None else mask
    out = np.full((len(images), 3), np.nan)
    for i in range(len(images)):
        far = distance[i][mask[i]]
        if far.size == 0:
            continue
        core = mask[i] & (distance[i] >= np.median(far))
        pixels = images[i][:, core].T  # P x C
        lab = srgb_to_lab(pixels) if pixels.shape[1] == 3 else grey_to_lab(pixels[:, 0])
        out[i] = np.median(lab, axis=0)
    return out


def measure(images: np.ndarray, background: np.ndarray) -> dict[str, np.ndarray]:
    """Every attribute of ``ATTRIBUTES`` for each image (uint8 N x C x H x W), N values each; NaN
    where an image shows no product."""
    images = np.asarray(images)
    mask = product_mask(images, background)
    lab = main_colours(images, background, mask)
    n, height, width = mask.shape
    aspect = np.full(n, np.nan)
    for i in range(n):
        box = product_box(mask[i])
        if box is not None:
            aspect[i] = np.log2((box[3] - box[2]) / (box[1] - box[0]))
    size = mask.mean(axis=(1, 2))
    return {
        "lightness": lab[:, 0],
        "saturation": np.hypot(lab[:, 1], lab[:, 2]),
        "hue": np.degrees(np.arctan2(lab[:, 2], lab[:, 1])) % 360,
        "size": np.where(size > 0, size, np.nan),
        "aspect": aspect,
        "a": lab[:, 1],
        "b": lab[:, 2],
    }


def hue_difference(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """h2 - h1 in degrees, the short way round the circle (-180 to 180)."""
    return (np.asarray(h2) - np.asarray(h1) + 180) % 360 - 180
