"""Write generated images to a file or folder: .npy array, .png grid, or one PNG per image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from productgan.errors import ProductganError, UsageError
from productgan.files import refuse_to_replace, replace_dir, staging_dir, write_atomic
from productgan.generator.grid import make_grid, save_png
from productgan.generator.sampler import Sampler, load_generator

# Extensions that name a file generate cannot write (it writes .npy, .png or a folder).
OTHER_FILE_TYPES = {
    ".jpg",
    ".jpeg",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".npz",
    ".pt",
    ".json",
    ".txt",
    ".csv",
    ".html",
    ".zip",
    ".tar",
    ".gz",
}


def generate_to_path(
    source: str | os.PathLike | Sampler,
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    size: str = "native",
    device: str = "cpu",
    overwrite: bool = False,
    label: int | str | None = None,
    temperature: float = 1.0,
) -> Path:
    """Write n images for ``seed`` (of class ``label`` for a conditional generator; every
    class in turn when it is not given) at latent ``temperature``. ``source`` is a run or export
    folder, or a loaded Sampler (which brings its own device and temperature)."""
    out = Path(out)
    kind = "npy" if out.suffix.lower() == ".npy" else "png" if out.suffix.lower() == ".png" else "dir"
    if kind == "dir" and out.suffix.lower() in OTHER_FILE_TYPES and not out.is_dir():
        raise UsageError(
            f"--out {out}: generate writes NAME.npy, NAME.png or a folder of PNGs, not {out.suffix} files."
        )
    if out.exists() and kind == "dir" and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder, a .png or a .npy path.")
    if kind != "dir" or (out.is_dir() and any(out.iterdir())):  # an empty folder is no output yet
        refuse_to_replace([out], overwrite)
    if out.is_dir() and overwrite:
        others = sorted(p.name for p in out.iterdir() if not (p.is_file() and p.suffix.lower() == ".png"))
        if others:
            raise ProductganError(
                f"{out} holds more than images ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); --overwrite replaces only a folder of "
                f"PNG images, so choose another --out."
            )
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}.")
    sampler = source if isinstance(source, Sampler) else load_generator(source, device=device, temperature=temperature)
    images = sampler(n=n, seed=seed, size=size, label=label).numpy()  # checks the memory first
    labels = sampler.labels(n, label)

    if kind == "npy":
        write_atomic(out, lambda tmp: np.save(tmp, images))
    elif kind == "png":
        save_png(make_grid(images, sampler.grid_columns(n, label)), out)
    else:
        tmp = staging_dir(out)
        try:
            names = sampler.class_names
            for index, image in enumerate(images):
                category = None if labels is None else names[int(labels[index])]
                save_png(image, tmp / image_file_name(seed, index, n, category))
            replace_dir(tmp, out)  # the old images or the new ones, never a mix
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def file_safe(name: str) -> str:
    """A class name as a file-name part: letters, digits, dots and dashes kept, the rest '_'."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name) or "_"


def image_file_name(seed: int, index: int, count: int, category: str | None = None) -> str:
    """The file name of image ``index`` of ``count`` made from ``seed`` (of ``category``), as a
    folder of images from ``generate`` and the API's zips name it: ``7-000003-Sandal.png``."""
    width = max(6, len(str(count - 1)))
    return f"{seed}-{index:0{width}d}{'' if category is None else '-' + file_safe(category)}.png"
