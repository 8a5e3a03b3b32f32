"""The packed dataset: images decoded once, at training resolution, with labels and splits.

On disk it is a directory of plain ``.npy`` arrays and one ``dataset.json``::

    images.npy    uint8  N x C x H x W
    labels.npy    int64  N   (a class index; UNLABELLED, -1, for a training image without one)
    split.npy     int8   N   (0 train, 1 val, 2 test)
    dataset.json  class names, split sizes and everything ``prepare`` recorded (``meta``)
    soft_labels.npy  float32  N x classes, optional: a probability for each class (``synth``
                  writes its evaluator's for synthetic images, and one-hot rows for real ones)

``.npy`` keeps loading a memory map away and needs no pickle. ``dataset.json`` holds
``format`` (FORMAT), ``format_version``, ``class_names``, ``shape``, ``split_sizes`` and
``meta``: the source, the fitting (native size, fit, pad, background), the split's seed and
sizes, and what was skipped. Field by field: docs/prepare.md, "The packed dataset".

``PackedDataset.save`` builds the folder in ``files.staging_dir`` (dataset.json last, since
``is_packed_dataset`` keys on it) and puts it in place with ``files.replace_dir``, so a dataset
is whole or absent. ``PackedDataset.load`` checks every field it reads (``_INFO_FIELDS``,
``_META_FIELDS``) and the arrays' dtypes and shape, naming the first problem in one sentence.
``data.prepare.open_dataset`` memory-maps the images when they would take half the free memory
or more (``fits_in_memory``); training then gathers its batches through
``train.batches.MappedImages``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from productgan.errors import ProductganError, UsageError
from productgan.files import FolderKind, check_folder, replace_dir, staging_dir

SPLITS = ("train", "val", "test")
FORMAT = "productgan.packed-dataset"
FORMAT_VERSION = 1

IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
SPLIT_FILE = "split.npy"
INFO_FILE = "dataset.json"
SOFT_LABELS_FILE = "soft_labels.npy"
UNLABELLED = -1  # the label of a training image without a category (prepare's unlabelled/ folder)


def is_packed_dataset(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder that looks like a packed dataset."""
    path = Path(path)
    return (path / INFO_FILE).is_file() and (path / IMAGES_FILE).is_file()


# A packed dataset's own files, for the one rule of folder writers (files.check_folder).
PACKED_FOLDER = FolderKind("a packed dataset", r"(images|labels|split|soft_labels)\.npy|dataset\.json")


def check_output_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``out_dir`` as a Path if a packed dataset may be written there, else one sentence: the rule
    every folder writer keeps (``files.check_folder``). A missing or empty folder is free; a
    packed dataset is replaced only with ``overwrite``; a folder holding any other file never is,
    so a mistyped path never costs someone their files."""
    return check_folder(Path(out_dir).expanduser(), overwrite, PACKED_FOLDER, "prepare")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class PackedDataset:
    """Square uint8 images at training resolution with int64 labels and a train/val/test split."""

    images: np.ndarray  # uint8 (N, C, S, S)
    labels: np.ndarray  # int64 (N,), values in 0 .. len(class_names) - 1, or UNLABELLED in train
    class_names: list[str]
    split: np.ndarray  # int8 (N,), index into SPLITS
    meta: dict = field(default_factory=dict)  # how it was made: source, fit, split seed, ...
    soft_labels: np.ndarray | None = None  # float32 (N, classes), rows summing to 1; optional

    def __post_init__(self):
        self.class_names = [str(name) for name in self.class_names]
        self._check()

    def _check(self, where: str = "The packed dataset"):
        images, labels, split = self.images, self.labels, self.split
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ProductganError(
                f"{where} has images of dtype {images.dtype} and shape {images.shape}, but "
                f"uint8 N x C x H x W is needed; prepare it again with `productgan prepare`."
            )
        count, channels, height, width = images.shape
        if height != width:
            raise ProductganError(
                f"{where} has {height}x{width} images, but prepare fits every image to a "
                f"square; prepare it again with `productgan prepare`."
            )
        if channels not in (1, 3):
            raise ProductganError(
                f"{where} has {channels}-channel images, but only 1 (grey) or 3 (RGB) are "
                f"supported; prepare it again with `productgan prepare`."
            )
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,):
            raise ProductganError(
                f"{where} has labels of dtype {labels.dtype} and shape {labels.shape} for "
                f"{count} images, but integer labels, one per image, are needed; prepare it "
                f"again with `productgan prepare`."
            )
        if not np.issubdtype(split.dtype, np.integer) or split.shape != (count,):
            raise ProductganError(
                f"{where} has a split array of dtype {split.dtype} and shape {split.shape} for "
                f"{count} images, but one small integer per image is needed; prepare it again "
                f"with `productgan prepare`."
            )
        if not self.class_names:
            raise ProductganError(f"{where} has no class names; prepare it again with `productgan prepare`.")
        if count:
            if labels.min() < UNLABELLED or labels.max() >= len(self.class_names):
                raise ProductganError(
                    f"{where} has labels from {int(labels.min())} to {int(labels.max())} but "
                    f"only {len(self.class_names)} class names; prepare it again with "
                    f"`productgan prepare`."
                )
            if split.min() < 0 or split.max() >= len(SPLITS):
                raise ProductganError(
                    f"{where} has split codes outside 0 (train), 1 (val), 2 (test); prepare it "
                    f"again with `productgan prepare`."
                )
            if (labels[split != 0] == UNLABELLED).any():
                raise ProductganError(
                    f"{where} has unlabelled images in its validation or test split, where every "
                    f"image needs a category; prepare it again with `productgan prepare`."
                )
        soft = self.soft_labels
        if soft is not None:
            good = soft.dtype == np.float32 and soft.shape == (count, len(self.class_names))
            if (
                not good
                or not np.isfinite(soft).all()
                or (soft < 0).any()
                or not np.allclose(soft.sum(axis=1), 1, atol=1e-3)
            ):
                raise ProductganError(
                    f"{where} has soft labels that are not float32 probabilities, one row of "
                    f"{len(self.class_names)} summing to 1 per image; make them again."
                )
        # Casting is free when the dtype already matches, which is the case for saved data.
        self.labels = labels.astype(np.int64, copy=False)
        self.split = split.astype(np.int8, copy=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def unlabelled_count(self) -> int:
        """Training images without a category (0 unless prepared from a mixed-label folder)."""
        return int((self.labels == UNLABELLED).sum())

    def split_sizes(self) -> dict[str, int]:
        counts = np.bincount(self.split, minlength=len(SPLITS))
        return {name: int(counts[code]) for code, name in enumerate(SPLITS)}

    def indices(self, name: str) -> np.ndarray:
        """int64 indices of the items in split ``name`` ("train", "val" or "test"), ascending."""
        if name not in SPLITS:
            raise UsageError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        return np.flatnonzero(self.split == SPLITS.index(name)).astype(np.int64)

    def subset(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of split ``name``, copied into memory."""
        index = self.indices(name)
        return self.images[index], self.labels[index]

    def info(self) -> dict:
        """The contents of ``dataset.json``."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "shape": [int(d) for d in self.images.shape],
            "split_sizes": self.split_sizes(),
            "meta": self.meta,
        }

    def save(self, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the dataset to ``out_dir`` so that it appears whole or not at all.

        Everything goes to a hidden sibling directory first and is renamed into place at the
        end. With ``overwrite`` an old packed dataset is moved aside only once the new one is
        complete (see :func:`check_output_folder` for what may be replaced).
        """
        out = check_output_folder(out_dir, overwrite)
        text = json.dumps(self.info(), indent=2, default=_json_default) + "\n"

        try:
            staging = staging_dir(out)  # creates the parent folder too
        except OSError as exc:
            raise ProductganError(
                f"Could not create {out} ({exc.strerror or exc}); check the path and its permissions."
            ) from None

        try:
            np.save(staging / IMAGES_FILE, np.ascontiguousarray(self.images))
            np.save(staging / LABELS_FILE, self.labels)
            np.save(staging / SPLIT_FILE, self.split)
            if self.soft_labels is not None:
                np.save(staging / SOFT_LABELS_FILE, self.soft_labels)
            # dataset.json goes last: is_packed_dataset() keys on it.
            (staging / INFO_FILE).write_text(text, encoding="utf-8")
            replace_dir(staging, out)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ProductganError(
                    f"Could not write the packed dataset to {out} ({exc.strerror or exc}); check "
                    f"free disk space and permissions."
                ) from None
            raise
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> PackedDataset:
        """Open a packed dataset directory; ``mmap`` maps the images instead of reading them."""
        path = Path(path).expanduser()
        redo = "create it with `productgan prepare`"
        if not path.is_dir():
            raise ProductganError(f"{path} is not a packed dataset folder; {redo}.")
        info_path = path / INFO_FILE
        if not info_path.is_file():
            raise ProductganError(f"{path} has no {INFO_FILE}, so it is not a packed dataset; {redo}.")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ProductganError(f"{info_path} cannot be read as JSON ({exc}); {redo} again.") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise ProductganError(f"{info_path} does not describe a productgan packed dataset; {redo}.")
        if info.get("format_version") != FORMAT_VERSION:
            raise ProductganError(
                f"{path} uses packed format version {info.get('format_version')}, but this "
                f"productgan reads version {FORMAT_VERSION}; {redo} again."
            )

        problem = _info_problem(info)
        if problem:
            raise ProductganError(f"{info_path} {problem}; {redo} again.")

        arrays = {}
        for name in (IMAGES_FILE, LABELS_FILE, SPLIT_FILE):
            file = path / name
            if not file.is_file():
                raise ProductganError(f"{path} lacks {name}; {redo} again.")
            try:
                arrays[name] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ProductganError(f"{file} is damaged ({exc}); {redo} again.") from None

        expected = {IMAGES_FILE: np.uint8, LABELS_FILE: np.int64, SPLIT_FILE: np.int8}
        for name, dtype in expected.items():
            if arrays[name].dtype != dtype:
                raise ProductganError(
                    f"{path / name} has dtype {arrays[name].dtype} but {np.dtype(dtype)} is needed; {redo} again."
                )
        shape = list(arrays[IMAGES_FILE].shape)
        if info.get("shape") is not None and shape != list(info["shape"]):
            raise ProductganError(
                f"{path / IMAGES_FILE} has shape {tuple(shape)} but {INFO_FILE} records "
                f"{tuple(info['shape'])}; {redo} again."
            )
        # Built without __init__ so that a failed check names the folder, not "the dataset".
        dataset = cls.__new__(cls)
        dataset.images = arrays[IMAGES_FILE]
        dataset.labels = arrays[LABELS_FILE]
        dataset.split = arrays[SPLIT_FILE]
        dataset.class_names = list(info.get("class_names") or [])
        dataset.meta = info.get("meta") or {}
        dataset.soft_labels = None
        if (path / SOFT_LABELS_FILE).is_file():
            try:
                dataset.soft_labels = np.load(path / SOFT_LABELS_FILE, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ProductganError(f"{path / SOFT_LABELS_FILE} is damaged ({exc}); {redo} again.") from None
        dataset._check(where=str(path))
        return dataset


def _whole(value, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _whole_list(length: int, least: int):
    return lambda v: isinstance(v, list) and len(v) == length and all(_whole(x, least) for x in v)


# The fields of dataset.json (and of its meta) that loading and sampling read, each with a
# check and what it should hold; a field not given is left to its default.
_INFO_FIELDS = {
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
    "shape": (_whole_list(4, 0), "four sizes, N x C x H x W"),
    "meta": (lambda v: isinstance(v, dict), "an object of what prepare recorded"),
}
_META_FIELDS = {
    "source": (lambda v: isinstance(v, str), "a name"),
    "fit": (lambda v: isinstance(v, str), "a name"),
    "split": (lambda v: isinstance(v, dict), "an object (method, seed, sizes)"),
    "native_size": (_whole_list(2, 1), "two sizes in pixels"),
    "padded_size": (_whole_list(2, 1), "two sizes in pixels"),
    "pad": (_whole_list(4, 0), "four margins in pixels"),
    "background": (lambda v: _whole(v) or (isinstance(v, list) and all(_whole(x) for x in v)), "a pixel value"),
}


def _info_problem(info: dict) -> str | None:
    """What is wrong with a field of dataset.json (a phrase naming it), or None."""
    for fields, values, where in ((_INFO_FIELDS, info, ""), (_META_FIELDS, info.get("meta") or {}, " of 'meta'")):
        for name, (check, belongs) in fields.items():
            if name in values and not check(values[name]):
                shown = json.dumps(values[name], default=str)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                return f"holds {shown} in the field {name!r}{where}, where {belongs} belongs"
    return None
