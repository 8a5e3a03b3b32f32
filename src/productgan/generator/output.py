"""Write generated images to a file or folder: .npy array, .png grid, or one PNG per image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from productgan.errors import UsageError
from productgan.files import FolderKind, Outputs, output_path
from productgan.generator.cutout import check_npy, check_options, plan_cutout
from productgan.generator.grid import save_png, to_pil
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
# A folder of images from generate: image_file_name's names, nothing else.
GENERATED_IMAGES = FolderKind("images", r"-?\d+-\d{6,}(-[^/]+)?\.png")


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
    crop: str = "none",
    background: str = "keep",
    edit: str | None = None,
) -> Path:
    """Write n images for ``seed`` (of class ``label`` for a conditional generator; every
    class in turn when it is not given) at latent ``temperature``, moved by ``edit`` along the
    generator's directions when given (``size=+1,hue=-0.5``; generator/directions.py). ``source`` is a run or export
    folder, or a loaded Sampler (which brings its own device and temperature). ``crop="product"``
    cuts each image to its product's box, ``background="transparent"`` adds an alpha channel
    (generator/cutout.py); both are checked before anything is written or made."""
    out = output_path(out)
    check_options(crop, background)
    kind = "npy" if out.suffix.lower() == ".npy" else "png" if out.suffix.lower() == ".png" else "dir"
    if kind == "dir" and out.suffix.lower() in OTHER_FILE_TYPES and not out.is_dir():
        raise UsageError(
            f"--out {out}: generate writes NAME.npy, NAME.png or a folder of PNGs, not {out.suffix} files."
        )
    if out.exists() and kind == "dir" and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder, a .png or a .npy path.")
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}.")
    if kind == "npy":
        check_npy(crop)
    with Outputs("generate") as outputs:
        outputs.claim(out, overwrite, GENERATED_IMAGES if kind == "dir" else None)
        if not isinstance(source, Sampler):
            source = load_generator(source, device=device, temperature=temperature)
        sampler = source
        cutout = plan_cutout(sampler, crop, background)  # a refusal here leaves every output as it was
        images = sampler(n=n, seed=seed, size=size, label=label, edit=edit).numpy()  # checks the memory first
        labels = sampler.labels(n, label)
        names = sampler.class_names

        def fill(tmp: Path) -> None:
            columns = sampler.grid_columns(n, label)
            if kind == "npy":
                np.save(tmp, cutout.array(images))
            elif kind == "png":
                grid = cutout.grid(images, columns)
                to_pil(grid).save(tmp, format="PNG")
            else:
                pictures = cutout.pictures(images)  # H x W x C, or C x H x W
                for index, picture in enumerate(pictures):
                    category = None if labels is None else names[int(labels[index])]
                    save_png(picture, tmp / image_file_name(seed, index, n, category))

        outputs.write({out: fill})  # the old images or the new ones, never a mix
    return out


def file_safe(name: str) -> str:
    """A class name as a file-name part: letters, digits, dots and dashes kept, the rest '_'."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name) or "_"


def image_file_name(seed: int, index: int, count: int, category: str | None = None) -> str:
    """The file name of image ``index`` of ``count`` made from ``seed`` (of ``category``), as a
    folder of images from ``generate`` and the API's zips name it: ``7-000003-Sandal.png``."""
    width = max(6, len(str(count - 1)))
    return f"{seed}-{index:0{width}d}{'' if category is None else '-' + file_safe(category)}.png"
