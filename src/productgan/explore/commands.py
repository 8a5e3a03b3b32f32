"""The exploring commands: a walk between images, variants of one, a photo projected into the
generator, and the nearest training images of generated ones. Each writes its output whole or
not at all, and never replaces an earlier one without ``overwrite``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from productgan.errors import UsageError
from productgan.explore.latent import (
    ImageName,
    Point,
    encode_frames,
    enlarge,
    frame_format,
    point,
    render,
    save_latent,
    variants,
    walk_images,
)
from productgan.explore.neighbours import NeighbourIndex, Neighbours, neighbour_sheet
from productgan.explore.projection import (
    DEFAULT_RESTARTS,
    DEFAULT_STEPS,
    MAX_PHOTO_BYTES,
    Projection,
    fit_photo,
    project,
)
from productgan.files import refuse_to_replace, replace_dir, staging_dir, write_atomic, write_text_atomic
from productgan.generator.grid import make_grid, save_png
from productgan.generator.sampler import Sampler

PROJECTION_FILES = ("target.png", "reconstruction.png", "comparison.png", "latent.npy", "projection.json")


def write_walk(
    sampler: Sampler,
    refs: list[str],
    frames: int,
    out: str | os.PathLike,
    fps: float = 12.0,
    scale: int = 1,
    overwrite: bool = False,
) -> Path:
    """A walk through the images ``refs`` names, written as ``out``'s suffix says (gif, webp, png, npy)."""
    out = Path(out)
    fmt = frame_format(out)
    refuse_to_replace([out], overwrite)
    points = [point(sampler, ref) for ref in refs]
    data = encode_frames(walk_images(sampler, points, frames).numpy(), fmt, fps, scale)
    return write_atomic(out, lambda tmp: tmp.write_bytes(data))


def write_variants(
    sampler: Sampler,
    ref: str,
    n: int,
    spread: float,
    out: str | os.PathLike,
    seed: int = 0,
    label: str | None = None,
    save_latents: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """``n`` variants of one image as a PNG grid, a .npy array or a folder of PNGs; with
    ``save_latents`` their vectors too (N x nz float32), so any of them can be walked from."""
    out = Path(out)
    kind = out.suffix.lower() if out.suffix.lower() in (".png", ".npy") else "dir"
    refuse_to_replace([p for p in (out, save_latents) if p is not None], overwrite)
    base = point(sampler, ref)
    images, points = variants(sampler, base, n, spread, seed, label)
    images = images.numpy()
    if save_latents is not None:
        save_latent(save_latents, np.stack([p.z.numpy() for p in points]))
    if kind == ".npy":
        return write_atomic(out, lambda tmp: np.save(tmp, images))
    if kind == ".png":
        return save_png(make_grid(images), out)
    tmp = staging_dir(out)
    try:
        for index, image in enumerate(images):
            save_png(image, tmp / f"variant-{index:04d}.png")
        np.save(tmp / "latents.npy", np.stack([p.z.numpy() for p in points]))
        return replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe_fit(distance: float, typical: float) -> str:
    """A projection's feature distance in words, against the typical distance between a
    held-out real image and its nearest training image."""
    ratio = distance / typical if typical > 0 else float("inf")
    if ratio <= 0.75:
        return "close: nearer to the photo than most real look-alikes are"
    if ratio <= 1.25:
        return "good: about as near as a similar real product would be"
    if ratio <= 2.0:
        return "loose: the same kind of product, with details that differ"
    return "poor: this generator cannot make an image much like the photo"


def read_photo(path: str | os.PathLike) -> bytes:
    """A photo file's bytes, or one sentence on why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file; give the path of a product photo.")
    size = path.stat().st_size
    if size > MAX_PHOTO_BYTES:
        raise UsageError(f"{path} is {size / 2**20:.0f} MiB; at most {MAX_PHOTO_BYTES // 2**20} MiB is taken.")
    return path.read_bytes()


def projection_record(result: Projection, typical: float, latent_file: str = "latent.npy") -> dict[str, Any]:
    """What projection.json (and the API) says of a projection."""
    ref = latent_file if result.label is None else f"{latent_file}:{result.label}"
    return {
        "label": result.label,
        "feature_distance": round(result.feature_distance, 6),
        "pixel_distance": round(result.pixel_distance, 4),
        "typical_real_distance": round(typical, 6),
        "verdict": describe_fit(result.feature_distance, typical),
        "per_class_loss": result.per_class,
        "ref": ref,
    }


def write_projection(
    sampler: Sampler,
    index: NeighbourIndex,
    photo: bytes,
    out: str | os.PathLike,
    label: str | None = None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Project a photo and write its folder: the fitted photo, the reconstruction, both side by
    side (enlarged), the latent vector and projection.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --out takes a folder.")
    if out.is_dir() and any(out.iterdir()):
        refuse_to_replace([out], overwrite)
        others = sorted(p.name for p in out.iterdir() if p.name not in PROJECTION_FILES)
        if others:
            raise UsageError(f"{out} holds other files ({', '.join(others[:3])}); choose another --out.")
    fitted = fit_photo(photo, sampler.info, sampler.generator.image_size, sampler.generator.channels)
    result = project(sampler, fitted, index.net, label, steps, restarts, seed, progress=progress)
    record = projection_record(result, index.typical)
    tmp = staging_dir(out)
    try:
        save_png(result.target, tmp / "target.png")
        save_png(result.reconstruction, tmp / "reconstruction.png")
        pair = enlarge(np.stack([result.target, result.reconstruction]), max(1, 128 // result.target.shape[-1]))
        save_png(make_grid(pair, nrow=2, padding=4, fill=255), tmp / "comparison.png")
        np.save(tmp / "latent.npy", result.point.z.numpy())
        (tmp / "projection.json").write_text(json.dumps(record, indent=2) + "\n")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, record


def neighbours_of(
    sampler: Sampler, index: NeighbourIndex, refs: list[str], k: int = 3
) -> tuple[np.ndarray, Neighbours, list[Point]]:
    points = [point(sampler, ref) for ref in refs]
    images = render(sampler, points).numpy()
    return images, index.query(images, k), points


def write_neighbours(
    sampler: Sampler,
    index: NeighbourIndex,
    refs: list[str],
    out: str | os.PathLike,
    k: int = 3,
    overwrite: bool = False,
) -> tuple[Path, list[dict[str, Any]]]:
    """A side-by-side sheet (PNG) of each named image and its k nearest training images, and the
    records (name, neighbours, copy flag) that ``out`` with .json beside it holds."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the neighbours sheet is a .png file.")
    report = out.with_suffix(".json")
    refuse_to_replace([out, report], overwrite)
    images, found, _ = neighbours_of(sampler, index, refs, k)
    records = [{"name": str(ref), **record} for ref, record in zip(refs, found.records())]
    summary = {
        "copy_threshold": found.threshold,
        "thumbnail_threshold": found.pixel_threshold,
        "typical_real_distance": found.typical,
        "images": records,
    }
    save_png(neighbour_sheet(images, found, index), out)
    write_text_atomic(report, json.dumps(summary, indent=2) + "\n")
    return out, records


def image_refs(refs: list[str] | None, n: int | None, seed: int) -> list[str]:
    """The images a command is about: the names given, or the first n images of ``seed``."""
    if refs:
        return list(refs)
    count = 8 if n is None else n
    if not 1 <= count <= 1024:
        raise UsageError(f"--n must be between 1 and 1024, not {count}.")
    return [str(ImageName(seed, i)) for i in range(count)]
