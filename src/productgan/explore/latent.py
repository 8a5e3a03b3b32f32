"""Latent vectors at work: images rendered from points, walks between images, variants of one, and
the frames of a walk encoded as the CLI and the API write them. The names of points are
``explore/names.py``.

A point is a latent vector and what conditions it; ``explore/names.py`` reads every way one is
named (``point``) and lists a variant family's names (``variant_names``).

Typical use::

    sampler = load_generator("runs/00000-fashion-mnist-32")
    a, b = point(sampler, "7:3"), point(sampler, "7:5:Sandal")  # explore.names
    frames = walk_images(sampler, [a, b], frames=24)           # uint8 24 x C x H x W
    images, points = variants(sampler, a, n=16, spread=DEFAULT_SPREAD, seed=1)
    names = variant_names(sampler, "7:3", n=16, spread=DEFAULT_SPREAD, seed=1)  # "7:3~0.5/1#0", ...
    encode_frames(frames, "gif")                               # bytes, as the CLI and API write them
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from productgan.errors import UsageError
from productgan.explore.names import DEFAULT_SPREAD, Point, variant_points
from productgan.generator.grid import make_grid, to_pil
from productgan.generator.sampler import Sampler

MAX_FRAMES = 1000  # frames of one walk: more than a minute of animation at 12 per second

FRAME_FORMATS = ("gif", "webp", "png", "npy")

MIN_FPS, MAX_FPS = 0.1, 60.0  # ten seconds a frame at the slowest


def render(sampler: Sampler, points: list[Point], size: str = "native") -> torch.Tensor:
    """The images of ``points``: uint8 N x C x H x W."""
    if not points:
        raise UsageError("There are no points to make images of.")
    z = torch.stack([p.z for p in points])
    labels = None
    if sampler.conditional:
        classes = sampler.generator.num_classes
        if all(isinstance(p.label, int) for p in points):
            labels = torch.tensor([p.label for p in points], dtype=torch.long)
        else:
            labels = torch.stack([p.weights(classes) for p in points])
    sampler.check_memory(len(points), size)
    return sampler.from_noise(z, size, labels=labels)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t = 0, returned exactly) to ``b`` (t = 1, exactly).

    Latent vectors drawn from a Gaussian lie near a sphere; a straight line between two of them
    passes through its inside, where the generator saw few vectors, so walks follow the arc.
    """
    if t <= 0:
        return a.clone()
    if t >= 1:
        return b.clone()
    a64, b64 = a.double(), b.double()
    cosine = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    angle = torch.arccos(cosine.clamp(-1.0, 1.0))
    if angle < 1e-4:  # nearly parallel: the arc is a line
        out = (1 - t) * a64 + t * b64
    else:
        out = (torch.sin((1 - t) * angle) * a64 + torch.sin(t * angle) * b64) / torch.sin(angle)
    return out.float()


def walk(sampler: Sampler, points: list[Point], frames: int) -> list[Point]:
    """``frames`` points evenly spaced along the path through ``points`` (two or more), the first
    and last being the first and last point. z follows arcs (``slerp``); between two classes the
    conditioning blends from one to the other."""
    if len(points) < 2:
        raise UsageError("A walk needs at least two images: give --from and --to (and --via for more stops).")
    if not isinstance(frames, int) or isinstance(frames, bool) or not 2 <= frames <= MAX_FRAMES:
        raise UsageError(f"A walk has between 2 and {MAX_FRAMES} frames, not {frames!r}.")
    classes = sampler.generator.num_classes
    legs = len(points) - 1
    out = []
    for frame in range(frames):
        position = frame * legs / (frames - 1)
        leg = min(int(position), legs - 1)
        t = position - leg
        start, end = points[leg], points[leg + 1]
        z = slerp(start.z, end.z, t)
        if classes == 0:
            label = None
        elif t <= 0 or (t < 1 and _same_class(start, end)):
            label = start.label
        elif t >= 1:
            label = end.label
        else:
            label = (1 - t) * start.weights(classes) + t * end.weights(classes)
        out.append(Point(z, label))
    return out


def _same_class(a: Point, b: Point) -> bool:
    if isinstance(a.label, int) and isinstance(b.label, int):
        return a.label == b.label
    return False


def walk_images(sampler: Sampler, points: list[Point], frames: int, size: str = "native") -> torch.Tensor:
    """The frames of ``walk``: uint8 frames x C x H x W."""
    return render(sampler, walk(sampler, points, frames), size)


def variants(
    sampler: Sampler, base: Point, n: int, spread: float = DEFAULT_SPREAD, seed: int = 0, label: str | int | None = None
) -> tuple[torch.Tensor, list[Point]]:
    """``n`` images near ``base`` (optionally in class ``label`` instead of its own) and their points."""
    if label is not None and str(label).strip():
        base = Point(base.z, sampler.class_index(label))
    points = variant_points(sampler, base, n, spread, seed)
    return render(sampler, points), points


def enlarge(frames: np.ndarray, scale: int) -> np.ndarray:
    """uint8 N x C x H x W, each pixel repeated ``scale`` times each way (crisp, not blurred)."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=2).repeat(scale, axis=3)


def encode_frames(frames: np.ndarray | torch.Tensor, fmt: str, fps: float = 12.0, scale: int = 1) -> bytes:
    """A walk's frames (uint8 N x C x H x W) as the bytes of one file: an animated GIF or WebP
    (looping, ``fps`` frames per second), a PNG strip (the frames side by side), or a .npy array.
    The CLI and the API write exactly these bytes."""
    frames = np.asarray(frames)
    if fmt not in FRAME_FORMATS:
        raise UsageError(f"A walk is written as {', '.join(FRAME_FORMATS)}, not {fmt!r}.")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise UsageError(f"The frame rate must be between {MIN_FPS:g} and {MAX_FPS:g} frames per second, not {fps!r}.")
    if not isinstance(scale, int) or not 1 <= scale <= 16:
        raise UsageError(f"The scale must be a whole number from 1 to 16, not {scale!r}.")
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, frames)
        return buffer.getvalue()
    frames = enlarge(frames, scale)
    if fmt == "png":
        to_pil(make_grid(frames, nrow=len(frames))).save(buffer, format="PNG")
        return buffer.getvalue()
    pictures = [to_pil(frame) for frame in frames]
    duration = round(1000 / fps)
    if fmt == "gif":
        pictures = [p.convert("P", palette=Image.Palette.ADAPTIVE) if p.mode == "RGB" else p for p in pictures]
        pictures[0].save(
            buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0, optimize=False
        )
    else:
        pictures[0].save(
            buffer, format="WEBP", save_all=True, append_images=pictures[1:], duration=duration, loop=0, lossless=True
        )
    return buffer.getvalue()


def frame_format(path: str | os.PathLike) -> str:
    """The frame format a file name asks for (walk.gif -> 'gif'), or a UsageError."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FRAME_FORMATS:
        raise UsageError(f"--out {path}: a walk is written as .gif, .webp, .png (a strip) or .npy (the frames).")
    return suffix
