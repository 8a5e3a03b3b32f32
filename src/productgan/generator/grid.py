"""Image grids and PNG output: the one place images are laid out and written."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from productgan.files import write_atomic


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, fill: int = 0) -> np.ndarray:
    """uint8 ``N x C x H x W`` -> one uint8 ``H' x W' x C`` picture, ``nrow`` images per row."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 N x C x H x W, got {images.dtype} {images.shape}")
    count, channels, height, width = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / nrow)
    grid = np.full(
        (rows * (height + padding) + padding, nrow * (width + padding) + padding, channels),
        fill,
        dtype=np.uint8,
    )
    for index in range(count):
        top = padding + (index // nrow) * (height + padding)
        left = padding + (index % nrow) * (width + padding)
        grid[top : top + height, left : left + width] = images[index].transpose(1, 2, 0)
    return grid


# A picture's mode by its channels: grey or colour, with an alpha channel last (generator/cutout.py).
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def to_pil(picture: np.ndarray) -> Image.Image:
    """``H x W x C`` (C = 1 to 4: grey, grey and alpha, RGB, RGBA) or ``C x H x W`` (C = 1 or 3)
    uint8 -> a Pillow image."""
    if picture.ndim == 3 and picture.shape[0] in (1, 3) and picture.shape[2] not in MODES:
        picture = picture.transpose(1, 2, 0)
    if picture.shape[-1] == 1:
        return Image.fromarray(picture[..., 0], mode="L")
    return Image.fromarray(picture, mode=MODES[picture.shape[-1]])


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (temporary file, then rename), so a crash never leaves half a file."""
    return write_atomic(path, lambda tmp: to_pil(picture).save(tmp, format="PNG"))


def enlarge(picture: np.ndarray, least: int, most_times: int = 8) -> np.ndarray:
    """``picture`` (H x W x C) with each pixel repeated the fewest whole times that make its
    longer side ``least`` pixels or more (at most ``most_times``): a grid of 28-pixel images
    becomes one a screen shows at a readable size, with no pixel blurred."""
    times = max(1, min(most_times, math.ceil(least / max(picture.shape[:2]))))
    return picture if times == 1 else picture.repeat(times, axis=0).repeat(times, axis=1)


def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int | None = None, least: int = 0) -> Path:
    """A grid of ``images`` as a PNG, enlarged to ``least`` pixels on its longer side when given."""
    grid = make_grid(images, nrow)
    return save_png(enlarge(grid, least) if least else grid, path)
