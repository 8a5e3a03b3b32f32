"""Turn a source into a packed dataset: fit images to the training size and split them once."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image

from productgan.config import check_image_size, check_seed
from productgan.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FILES,
    NATIVE_SIZE,
    load_fashion_mnist,
    missing_files,
)
from productgan.data.folder import prepare_folder
from productgan.data.listing import check_listable, looks_like_image_folder
from productgan.data.packed import (
    IMAGES_FILE,
    INFO_FILE,
    SPLITS,
    PackedDataset,
    check_output_folder,
    is_packed_dataset,
)
from productgan.errors import ProductganError, UsageError

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_LICENCE = "MIT"  # Zalando Research's licence of the images and labels
DEFAULT_IMAGE_SIZE = 32
DEFAULT_VAL_SIZE = 5000
DEFAULT_SPLIT_SEED = 0

# Fashion-MNIST is 28x28; 2 px of its black background on each side makes the 32x32 that the
# DCGAN's stride-2 stack (4 -> 8 -> 16 -> 32) needs, without rescaling a single pixel.
_FMNIST_PADDED = 32
_FMNIST_PAD = (_FMNIST_PADDED - NATIVE_SIZE[0]) // 2
_FMNIST_BACKGROUND = 0


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> np.ndarray:
    """A bool mask choosing exactly ``val_size`` items, spread over classes in proportion.

    Each class gets the floor of its proportional share; the items left over go to the classes
    with the largest remainders (ties to the lower label), so the total is exact and the result
    depends on nothing but ``labels``, ``val_size`` and ``seed``.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
        raise UsageError(f"The validation size must be a whole number, not {val_size!r}.")
    if val_size < 0:
        raise UsageError(f"The validation size must be 0 or more, not {val_size}.")
    if val_size >= total:
        raise UsageError(
            f"The validation size {val_size} must be smaller than the {total} training "
            f"images; pass a smaller --val-size."
        )
    mask = np.zeros(total, dtype=bool)
    if val_size == 0:
        return mask

    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * val_size / total
    quota = np.floor(shares).astype(np.int64)
    leftover = val_size - int(quota.sum())
    # Stable sort on the negated remainder keeps ties in label order.
    by_remainder = np.argsort(-(shares - quota), kind="stable")
    quota[by_remainder[:leftover]] += 1

    rng = np.random.default_rng(seed)
    for label, take in zip(classes, quota):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, size=int(take), replace=False)] = True
    return mask


def fit_fashion_mnist(images_28: np.ndarray, image_size: int) -> tuple[np.ndarray, dict]:
    """Pad 28x28 images to 32x32 with their black background, then upscale if asked.

    Returns uint8 ``N x 1 x S x S`` and the fit record that lets samplers undo it: the pad is
    given at native scale as (top, bottom, left, right).
    """
    image_size = check_image_size(image_size)
    images_28 = np.asarray(images_28)
    if images_28.dtype != np.uint8 or images_28.ndim != 3 or images_28.shape[1:] != NATIVE_SIZE:
        raise ProductganError(
            f"Fashion-MNIST images must be uint8 N x 28 x 28, not {images_28.dtype} "
            f"{images_28.shape}; point --data at the real Fashion-MNIST files."
        )
    count = len(images_28)
    pad = _FMNIST_PAD
    padded = np.full((count, 1, _FMNIST_PADDED, _FMNIST_PADDED), _FMNIST_BACKGROUND, np.uint8)
    padded[:, 0, pad : pad + NATIVE_SIZE[0], pad : pad + NATIVE_SIZE[1]] = images_28

    fit_meta = {
        "fit": "pad",
        "native_size": list(NATIVE_SIZE),
        "padded_size": [_FMNIST_PADDED, _FMNIST_PADDED],
        "pad": [pad, pad, pad, pad],
        "background": _FMNIST_BACKGROUND,
        "resize_filter": None,
    }
    if image_size == _FMNIST_PADDED:
        return padded, fit_meta

    # One Pillow call per image: tiling them into one big picture would let Lanczos blend
    # neighbours. A 2-D uint8 array becomes mode "L", whose output is clipped to 0..255, so
    # overshoot at sharp edges cannot wrap around.
    fitted = np.empty((count, 1, image_size, image_size), np.uint8)
    for index in range(count):
        small = Image.fromarray(padded[index, 0])
        fitted[index, 0] = np.asarray(small.resize((image_size, image_size), Image.Resampling.LANCZOS))
    fit_meta["resize_filter"] = "lanczos"
    return fitted, fit_meta


def _productgan_version() -> str | None:
    try:
        return version("productgan")
    except PackageNotFoundError:
        return None


def build_fashion_mnist(
    folder: str | os.PathLike | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    val_size: int = DEFAULT_VAL_SIZE,
    seed: int = DEFAULT_SPLIT_SEED,
) -> PackedDataset:
    """Fashion-MNIST as a packed dataset: official test set as "test", train split into train/val.

    Items keep the file order: the train file's images first, then the test file's.
    """
    image_size = check_image_size(image_size)
    source = load_fashion_mnist(folder)
    train_count = len(source.train_labels)
    val_mask = stratified_split(source.train_labels, val_size, seed)

    images, fit_meta = fit_fashion_mnist(np.concatenate([source.train_images, source.test_images]), image_size)
    labels = np.concatenate([source.train_labels, source.test_labels]).astype(np.int64)
    split = np.full(len(labels), SPLITS.index("test"), dtype=np.int8)
    split[:train_count] = np.where(val_mask, SPLITS.index("val"), SPLITS.index("train"))

    sizes = {
        "train": int(train_count - val_size),
        "val": int(val_size),
        "test": int(len(source.test_labels)),
    }
    meta = {
        "source": FASHION_MNIST,
        "licence": FASHION_MNIST_LICENCE,
        "source_folder": str(source.folder),
        "source_files": dict(FILES),
        "channels": 1,
        "image_size": image_size,
        **fit_meta,
        "split": {
            "method": "official test set; train stratified by class into train and val",
            "seed": int(seed),
            "val_size": int(val_size),
            "sizes": sizes,
        },
        "skipped": [],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "productgan_version": _productgan_version(),
    }
    return PackedDataset(
        images=images,
        labels=labels,
        class_names=list(FASHION_MNIST_CLASSES),
        split=split,
        meta=meta,
    )


def _check_packed_matches(
    dataset: PackedDataset,
    path: Path,
    image_size: int | None,
    val_size: int | None,
    seed: int | None,
) -> None:
    if image_size is not None and int(image_size) != dataset.image_size:
        raise UsageError(
            f"The packed dataset {path} holds {dataset.image_size}x{dataset.image_size} images "
            f"but image size {image_size} was asked for; prepare it again with --image-size "
            f"{image_size}, or drop the flag to use it as it is."
        )
    recorded_val = dataset.split_sizes()["val"]
    if val_size is not None and int(val_size) != recorded_val:
        raise UsageError(
            f"The packed dataset {path} has {recorded_val} validation images but --val-size "
            f"{val_size} was asked for; prepare it again with that size, or drop the flag."
        )
    recorded_seed = dataset.meta.get("split", {}).get("seed")
    if seed is not None and recorded_seed is not None and int(seed) != int(recorded_seed):
        raise UsageError(
            f"The packed dataset {path} was split with seed {recorded_seed} but seed {seed} was "
            f"asked for; prepare it again with that seed, or drop the flag."
        )


def open_dataset(
    data: str | os.PathLike,
    image_size: int | None = None,
    val_size: int | None = None,
    seed: int | None = None,
) -> PackedDataset:
    """The dataset named by ``data``: "fashion-mnist", a folder of idx files, or a packed folder.

    ``None`` means "the default" for a source that still has to be packed (32 px, 5000
    validation images, seed 0) and "as recorded" for a packed folder, whose size and split are
    fixed; an explicit value that disagrees with a packed folder is an error rather than a
    silent mismatch.
    """
    path = Path(data).expanduser()
    raw_options = {
        "image_size": DEFAULT_IMAGE_SIZE if image_size is None else image_size,
        "val_size": DEFAULT_VAL_SIZE if val_size is None else val_size,
        "seed": DEFAULT_SPLIT_SEED if seed is None else seed,
    }
    # A folder that exists wins over the name, so `--data fashion-mnist` finds a packed
    # dataset prepared into ./fashion-mnist.
    if path.is_dir():
        check_listable(path)
        if is_packed_dataset(path):
            dataset = PackedDataset.load(path, mmap=not fits_in_memory(path / IMAGES_FILE))
            _check_packed_matches(dataset, path, image_size, val_size, seed)
            return dataset
        # Some idx files but not all: building names the missing ones.
        if len(missing_files(path)) < len(FILES):
            return build_fashion_mnist(path, **raw_options)
    if str(data) == FASHION_MNIST:
        return build_fashion_mnist(None, **raw_options)

    if path.is_dir() and looks_like_image_folder(path):
        raise UsageError(
            f"{path} is a folder of images, not yet a packed dataset; pack it once with "
            f"`productgan prepare {path} --out DATASET_DIR --size 64`, then pass --data DATASET_DIR."
        )
    if not path.exists():
        problem = f"{str(data)!r} is neither the name {FASHION_MNIST!r} nor an existing folder"
    elif (path / INFO_FILE).is_file():  # is_packed_dataset wants both files
        raise ProductganError(
            f"The packed dataset {path} lacks {IMAGES_FILE} (its {INFO_FILE} is there); put the file back, or "
            f"prepare the dataset again with `productgan prepare`."
        )
    elif path.is_dir():
        problem = (
            f"The folder {path} holds neither a packed dataset (dataset.json) nor the four Fashion-MNIST idx files"
        )
    else:
        problem = f"{path} is a file, not a dataset folder"
    raise UsageError(
        f"{problem}; pass --data {FASHION_MNIST}, a folder with the Fashion-MNIST idx files, "
        f"or a packed dataset folder made by `productgan prepare`."
    )


def fits_in_memory(path: Path, share: float = 0.5) -> bool:
    """True when the file at ``path`` takes less than ``share`` of the memory now available."""
    try:
        size = path.stat().st_size
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return size < share * int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return True  # no way to tell: read it, as numpy would


def prepare(
    source: str | os.PathLike,
    out: str | os.PathLike,
    image_size: int | None = None,
    val_size: int | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    **folder_options,
) -> Path:
    """Save ``source`` as a packed dataset at ``out``.

    ``source`` is Fashion-MNIST (see :func:`open_dataset`) or a folder of images, which
    :func:`productgan.data.folder.prepare_folder` packs with ``folder_options`` (channels, fit,
    background, labels, split, workers, progress).
    """
    # Checked before the slow part so a forgotten --overwrite fails at once.
    check_output_folder(out, overwrite)
    if seed is not None:
        check_seed(seed)
    path = Path(source).expanduser()
    if str(source) != FASHION_MNIST and not path.is_dir():
        problem = "is a file" if path.exists() else "does not exist"
        raise UsageError(
            f"{path} {problem}; prepare takes a folder of product photos (one sub-folder per "
            f"category), a folder with the Fashion-MNIST idx files, or the name {FASHION_MNIST}."
        )
    if path.is_dir():
        check_listable(path)
    if path.is_dir() and not is_packed_dataset(path) and len(missing_files(path)) == len(FILES):
        if val_size is not None:
            raise UsageError(
                "--val-size is for Fashion-MNIST; a folder of images is split with --split train,val,test."
            )
        return prepare_folder(
            path,
            out,
            size=64 if image_size is None else image_size,
            seed=DEFAULT_SPLIT_SEED if seed is None else seed,
            overwrite=overwrite,
            **{k: v for k, v in folder_options.items() if v is not None},
        )
    given = sorted(k for k, v in folder_options.items() if v is not None and k != "progress")
    if given:
        raise UsageError(f"{', '.join('--' + k for k in given)} apply to folders of images, not to Fashion-MNIST.")
    dataset = open_dataset(source, image_size=image_size, val_size=val_size, seed=seed)
    return dataset.save(out, overwrite=overwrite)
