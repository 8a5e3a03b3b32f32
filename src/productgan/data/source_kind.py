"""What a data source holds, as far as choosing a training recipe goes, and the preset that
choice gives: the facts are read here, the rule is ``config.measured_preset``."""

from __future__ import annotations

import json
from pathlib import Path

from productgan.config import DataKind, measured_preset
from productgan.data.fashion_mnist import FILES, missing_files
from productgan.data.listing import looks_like_image_folder
from productgan.data.packed import INFO_FILE, is_packed_dataset
from productgan.data.prepare import DEFAULT_IMAGE_SIZE, FASHION_MNIST

PHOTO_IMAGE_SIZE = 64  # prepare packs a folder of photos at 64x64 unless told otherwise


def source_kind(data: str, image_size: str | int | None = None) -> tuple[DataKind, int] | None:
    """The kind of images ``data`` holds and the size a run would train them at (``image_size``
    when it is a number, else the data's own): Fashion-MNIST for the built-in source, its idx
    files or a packed copy of them; photos for a packed photo dataset or a folder of photos.
    None for anything else, and for a packed dataset that cannot be read (opening it for
    training names what is wrong with it)."""
    size = int(image_size) if str(image_size or "").isdigit() else None
    path = Path(data).expanduser()
    packed = is_packed_dataset(path) and path.is_dir()
    try:
        info = json.loads((path / INFO_FILE).read_text()) if packed else {}
        packed_size = int(info["shape"][2]) if packed else 0
        source = info.get("meta", {}).get("source")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    fashion = (
        data == FASHION_MNIST
        or (path.is_dir() and not packed and len(missing_files(path)) < len(FILES))
        or source == FASHION_MNIST
    )
    if fashion:
        return "fashion-mnist", size or packed_size or DEFAULT_IMAGE_SIZE
    if packed:
        return "photos", size or packed_size
    if path.is_dir() and looks_like_image_folder(path):
        return "photos", size or PHOTO_IMAGE_SIZE
    return None


def preset_for(data: str, image_size: str | int | None = None) -> str | None:
    """The preset measured best for ``data`` at ``image_size`` (None: the data's own size), or
    None where none was measured: fmnist-32 for Fashion-MNIST at 32x32, products-64 /
    products-128 for packed photo datasets and folders of photos of that size."""
    facts = source_kind(data, image_size)
    return measured_preset(*facts) if facts else None
