"""Find, read and check the Fashion-MNIST idx files.

Fashion-MNIST ships as four idx files (a tiny big-endian array format from the MNIST days),
usually gzipped. Everything here reads them with numpy alone and turns any damage into a
``ProductganError`` that names the file, because a half-downloaded archive is the commonest
way for this dataset to go wrong.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from productgan.errors import ProductganError

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

NATIVE_SIZE = (28, 28)

# Module-level so tests (and unusual installs) can point the search elsewhere.
ENV_VAR = "PRODUCTGAN_DATA"
SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
USER_CACHE_FOLDER = "~/.cache/productgan/fashion-mnist"

PROJECT_URL = "https://github.com/zalandoresearch/fashion-mnist"
RAW_FILES_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# idx magic: two zero bytes, a type code (0x08 = unsigned byte), then the number of dimensions.
IDX_MAGIC_LABELS = 0x00000801
IDX_MAGIC_IMAGES = 0x00000803
_GZIP_SIGNATURE = b"\x1f\x8b"


@dataclass
class FashionMNIST:
    """The four Fashion-MNIST arrays as read from disk, plus the folder they came from."""

    train_images: np.ndarray  # uint8 (N_train, 28, 28)
    train_labels: np.ndarray  # int64 (N_train,)
    test_images: np.ndarray  # uint8 (N_test, 28, 28)
    test_labels: np.ndarray  # int64 (N_test,)
    folder: Path


def search_folders(folder: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for the idx files, in order of preference."""
    candidates: list[Path] = []
    if folder is not None:
        candidates.append(Path(folder).expanduser())
    env_folder = os.environ.get(ENV_VAR)
    if env_folder:
        candidates.append(Path(env_folder).expanduser())
    candidates.append(Path(SYSTEM_FOLDER))
    # Expanded per call, not at import, so a changed HOME is honoured.
    candidates.append(Path(USER_CACHE_FOLDER).expanduser())

    unique: list[Path] = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def idx_file(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists (gzip preferred), else None."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder: str | os.PathLike) -> list[str]:
    """Names of the four idx files that ``folder`` lacks (empty when it holds them all)."""
    folder = Path(folder)
    return [name for name in FILES.values() if idx_file(folder, name) is None]


def _how_to_get_it(into: str) -> str:
    return (
        f"install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or download "
        f"the four files from {PROJECT_URL} (raw files at {RAW_FILES_URL}) into {into}, "
        f"or point --data or {ENV_VAR} at the folder that holds them"
    )


def find_fashion_mnist(folder: str | os.PathLike | None = None) -> Path:
    """The first folder that holds all four idx files.

    An explicit ``folder`` is the user's choice, so it must hold the files: falling back to
    another copy would silently train on data the user did not point at.
    """
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ProductganError(f"The Fashion-MNIST folder {folder} does not exist; {_how_to_get_it(str(folder))}.")
        missing = missing_files(folder)
        if missing:
            raise ProductganError(
                f"The folder {folder} lacks the Fashion-MNIST file(s) "
                f"{', '.join(missing)} (plain or .gz); {_how_to_get_it(str(folder))}."
            )
        return folder

    folders = search_folders()
    for candidate in folders:
        if candidate.is_dir() and not missing_files(candidate):
            return candidate
    raise ProductganError(
        f"Fashion-MNIST was not found in {', '.join(str(f) for f in folders)}; "
        f"{_how_to_get_it('one of those folders')}."
    )


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ProductganError(f"The idx file {path} does not exist; check the path.") from None
    except OSError as exc:
        raise ProductganError(
            f"Could not read {path} ({exc.strerror or exc}); check that it is a readable file."
        ) from None
    # Sniff the gzip signature rather than trust the suffix: files get renamed by hand.
    if data[:2] != _GZIP_SIGNATURE:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ProductganError(
            f"The gzip file {path} is corrupt or truncated ({exc}); delete it and download it "
            f"again from {RAW_FILES_URL}."
        ) from None


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read one uint8 idx file (gzipped or plain) into a writable numpy array.

    ``ndim`` (1 for labels, 3 for images) makes a swapped or foreign file fail here with its
    name rather than later with a confusing shape error.
    """
    path = Path(path)
    data = _read_bytes(path)
    redownload = f"delete it and download it again from {RAW_FILES_URL}"

    if len(data) < 4:
        raise ProductganError(f"{path} is too short to be an idx file ({len(data)} bytes); {redownload}.")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IDX_MAGIC_LABELS, IDX_MAGIC_IMAGES):
        raise ProductganError(
            f"{path} is not a uint8 idx file (magic number 0x{magic:08x}, expected "
            f"0x{IDX_MAGIC_IMAGES:08x} for images or 0x{IDX_MAGIC_LABELS:08x} for labels); "
            f"{redownload}."
        )
    file_ndim = data[3]
    if ndim is not None and file_ndim != ndim:
        kind = "images" if ndim == 3 else "labels" if ndim == 1 else f"a {ndim}-D array"
        raise ProductganError(
            f"{path} holds a {file_ndim}-D idx array but {kind} were expected; check that the "
            f"file names are not swapped, or {redownload}."
        )

    header_size = 4 + 4 * file_ndim
    if len(data) < header_size:
        raise ProductganError(f"{path} ends inside its idx header ({len(data)} bytes); {redownload}.")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=file_ndim, offset=4))
    expected = math.prod(dims)
    payload = len(data) - header_size
    if payload != expected:
        problem = "truncated" if payload < expected else "longer than its header says"
        raise ProductganError(
            f"{path} is {problem}: its header promises shape {dims} ({expected} bytes) but "
            f"{payload} bytes follow; {redownload}."
        )
    # np.frombuffer over bytes is read-only; a copy keeps the caller free to modify it.
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path):
    if images.shape[1:] != NATIVE_SIZE:
        raise ProductganError(
            f"{images_path} holds {images.shape[1]}x{images.shape[2]} images but Fashion-MNIST "
            f"images are 28x28; point --data at the real Fashion-MNIST files."
        )
    if len(images) != len(labels):
        raise ProductganError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; the two files come from different downloads, so download both again "
            f"from {RAW_FILES_URL}."
        )
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ProductganError(
            f"{labels_path} holds label {int(labels.max())} but Fashion-MNIST labels run from 0 "
            f"to {len(FASHION_MNIST_CLASSES) - 1}; download the file again from {RAW_FILES_URL}."
        )


def load_fashion_mnist(folder: str | os.PathLike | None = None) -> FashionMNIST:
    """Find the idx files (see :func:`find_fashion_mnist`), read them and check they agree."""
    found = find_fashion_mnist(folder)
    paths = {key: idx_file(found, name) for key, name in FILES.items()}
    arrays = {key: read_idx(path, ndim=3 if key.endswith("images") else 1) for key, path in paths.items()}
    for part in ("train", "test"):
        _check_pair(
            arrays[f"{part}_images"],
            arrays[f"{part}_labels"],
            paths[f"{part}_images"],
            paths[f"{part}_labels"],
        )
    return FashionMNIST(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        folder=found,
    )
