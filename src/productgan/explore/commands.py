"""The exploring commands: a walk between images, variants of one, a photo projected into the
generator, and the nearest training images of generated ones. Each judges every input and
output first (``files.Outputs``: before the neighbour index, which takes a minute on real
data), writes its outputs whole or not at all, and never replaces an earlier one without
``overwrite``, nor a folder of files it did not write at all."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from productgan.errors import UsageError
from productgan.explore.latent import encode_frames, enlarge, frame_format, render, variants, walk_images
from productgan.explore.names import ImageName, point, variant_names
from productgan.explore.neighbours import NeighbourIndex, check_k, neighbour_sheet
from productgan.explore.photos import MAX_PHOTO_BYTES, fit_to_generator
from productgan.explore.projection import (
    DEFAULT_RESTARTS,
    DEFAULT_STEPS,
    check_effort,
    project_photo,
)
from productgan.files import FolderKind, Outputs, output_path
from productgan.generator.grid import make_grid, save_png, to_pil
from productgan.generator.sampler import Sampler

PROJECTION_FILES = ("target.png", "reconstruction.png", "comparison.png", "latent.npy", "projection.json")
PROJECTION = FolderKind("a projection", "|".join(name.replace(".", r"\.") for name in PROJECTION_FILES))
VARIANTS = FolderKind("variants", r"variant-\d{4,}\.png|latents\.npy|variants\.json")
# The index of a run's training images, or how to build it once every input has been checked.
IndexSource = NeighbourIndex | Callable[[], NeighbourIndex]


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
    out = output_path(out)
    fmt = frame_format(out)
    with Outputs("interpolate") as outputs:
        out = outputs.claim(out, overwrite)
        points = [point(sampler, ref) for ref in refs]
        data = encode_frames(walk_images(sampler, points, frames).numpy(), fmt, fps, scale)
        outputs.write({out: lambda tmp: tmp.write_bytes(data)})
    return out


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
    """``n`` variants of one image as a PNG grid, a .npy array or a folder of PNGs (with
    latents.npy, their vectors, and variants.json, their names: ``variant_names``); with
    ``save_latents`` their vectors too (N x nz float32), so any of them can be walked from."""
    out = output_path(out)
    kind = out.suffix.lower() if out.suffix.lower() in (".png", ".npy") else "dir"
    with Outputs("variants") as outputs:
        out = outputs.claim(out, overwrite, VARIANTS if kind == "dir" else None)
        if save_latents is not None:
            save_latents = outputs.claim(save_latents, overwrite, flag="--save-latents")
        base = point(sampler, ref)
        images, points = variants(sampler, base, n, spread, seed, label)
        images = images.numpy()
        latents = np.stack([p.z.numpy() for p in points]).astype(np.float32)
        names = variant_names(sampler, ref, n, spread, seed, label)
        manifest = {
            "of": str(ref),
            "spread": spread,
            "seed": seed,
            "variants": [
                {
                    "file": f"variant-{i:04d}.png",
                    "name": name,
                    "category": None if p.label is None else sampler.class_names[p.label],
                }
                for i, (name, p) in enumerate(zip(names, points))
            ],
        }

        def fill(tmp: Path) -> None:
            if kind == ".npy":
                np.save(tmp, images)
            elif kind == ".png":
                to_pil(make_grid(images)).save(tmp, format="PNG")
            else:
                for index, image in enumerate(images):
                    save_png(image, tmp / f"variant-{index:04d}.png")
                np.save(tmp / "latents.npy", latents)
                (tmp / "variants.json").write_text(json.dumps(manifest, indent=2) + "\n")

        fills = {out: fill}
        if save_latents is not None:
            fills[save_latents] = lambda tmp: np.save(tmp, latents)
        outputs.write(fills)
    return out


def read_photo(path: str | os.PathLike) -> bytes:
    """A photo file's bytes, or one sentence on why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file; give the path of a product photo.")
    size = path.stat().st_size
    if size > MAX_PHOTO_BYTES:
        raise UsageError(f"{path} is {size / 2**20:.0f} MiB; at most {MAX_PHOTO_BYTES // 2**20} MiB is taken.")
    return path.read_bytes()


def write_projection(
    sampler: Sampler,
    index: IndexSource,
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
    side (enlarged), the latent vector and projection.json. The photo, the settings and ``out``
    are judged before ``index`` (a function that builds it) is built."""
    check_effort(steps, restarts)
    if label is not None and str(label).strip():
        sampler.class_index(label)  # the sentence naming the classes, now rather than after the index
    out = output_path(out)
    fitted = fit_to_generator(photo, sampler)  # a photo that cannot be used is refused before the index
    with Outputs("project") as outputs:
        out = outputs.claim(out, overwrite, PROJECTION)
        index = index() if callable(index) else index
        projected = project_photo(sampler, index, fitted, label, steps, restarts, seed, progress=progress)
        result, record = projected.projection, projected.record()

        def fill(tmp: Path) -> None:
            save_png(result.target, tmp / "target.png")
            save_png(result.reconstruction, tmp / "reconstruction.png")
            pair = enlarge(np.stack([result.target, result.reconstruction]), max(1, 128 // result.target.shape[-1]))
            save_png(make_grid(pair, nrow=2, padding=4, fill=255), tmp / "comparison.png")
            np.save(tmp / "latent.npy", result.point.z.numpy())
            (tmp / "projection.json").write_text(json.dumps(record, indent=2) + "\n")

        outputs.write({out: fill})
    return out, record


def write_neighbours(
    sampler: Sampler,
    index: IndexSource,
    refs: list[str],
    out: str | os.PathLike,
    k: int = 3,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """A side-by-side sheet (PNG) of each named image and its k nearest training images, and the
    summary (thresholds; per image its name, neighbours and copy flag) that ``out`` with .json
    beside it holds. The names, ``k`` and both outputs are judged before ``index`` (a function
    that builds it) is built."""
    out = output_path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the neighbours sheet is a .png file.")
    check_k(k)
    points = [point(sampler, ref) for ref in refs]
    with Outputs("neighbours") as outputs:
        out = outputs.claim(out, overwrite)
        report = outputs.claim(out.with_suffix(".json"), overwrite)
        index = index() if callable(index) else index
        images = render(sampler, points).numpy()
        found = index.query(images, k)
        summary = {
            "copy_threshold": found.threshold,
            "thumbnail_threshold": found.pixel_threshold,
            "typical_real_distance": found.typical,
            "images": [{"name": str(ref), **record} for ref, record in zip(refs, found.records())],
        }
        sheet = neighbour_sheet(images, found, index)
        outputs.write(
            {
                out: lambda tmp: to_pil(sheet).save(tmp, format="PNG"),
                report: lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"),
            }
        )
    return out, summary


def image_refs(refs: list[str] | None, n: int | None, seed: int) -> list[str]:
    """The images a command is about: the names given, or the first n images of ``seed``."""
    if refs:
        return list(refs)
    count = 8 if n is None else n
    if not 1 <= count <= 1024:
        raise UsageError(f"--n must be between 1 and 1024, not {count}.")
    return [str(ImageName(seed, i)) for i in range(count)]
