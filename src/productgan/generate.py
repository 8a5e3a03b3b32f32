"""Write generated images to a file or folder: .npy array, .png grid, or one PNG per image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from productgan.errors import ProductganError, UsageError
from productgan.images import make_grid, save_png
from productgan.sampling import load_generator


def generate_to_path(source: str | os.PathLike, out: str | os.PathLike, n: int, seed: int = 0,
                     size: str = "native", device: str = "cpu", overwrite: bool = False) -> Path:
    out = Path(out)
    kind = "npy" if out.suffix.lower() == ".npy" else "png" if out.suffix.lower() == ".png" else "dir"
    if out.exists() and kind == "dir" and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder, a .png or a .npy path.")
    if out.exists() and not overwrite and (kind != "dir" or any(out.iterdir())):
        raise ProductganError(f"{out} already exists; choose another --out or pass --overwrite.")
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}.")
    sampler = load_generator(source, device=device)
    images = sampler(n=n, seed=seed, size=size).numpy()

    if kind == "npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.npy")
        np.save(tmp, images)
        os.replace(tmp, out)
    elif kind == "png":
        save_png(make_grid(images), out)
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        width = max(6, len(str(n - 1)))
        for index, image in enumerate(images):
            save_png(image, tmp / f"{seed}-{index:0{width}d}.png")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return out
