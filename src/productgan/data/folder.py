"""Pack a folder of product photos into a packed dataset: list it, decode every file once in
worker processes, drop exact duplicates, stream the images to disk, split them by class.

``prepare_folder(src, out, size=64)`` lists ``src`` (``productgan.data.listing``), reads and fits
each candidate (``productgan.data.photos``), hashes its bytes (a file identical to one met before
is dropped) and streams the images into ``images.npy`` inside a hidden staging folder, so memory
stays bounded whatever the folder's size; the folder is renamed into place only when complete. A
file that fails any step is skipped and listed in ``dataset.json`` with the reason; nothing one
file or folder does stops the run.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from productgan.data.listing import IMAGE_SUFFIXES, Listing, list_photos
from productgan.data.packed import (
    FORMAT,
    FORMAT_VERSION,
    IMAGES_FILE,
    INFO_FILE,
    LABELS_FILE,
    SPLIT_FILE,
    SPLITS,
    UNLABELLED,
    _json_default,
    check_output_folder,
)
from productgan.data.photos import Options, check_options, decode_file
from productgan.errors import ProductganError, UsageError
from productgan.files import replace_dir, staging_dir

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent ends
_HEADER_BYTES = 128  # a fixed .npy header, rewritten in place with the final image count
_LISTED_DUPLICATES = 1000  # duplicates named in dataset.json (all are counted)
MAX_WORKERS = 8  # decoding processes
MAX_LICENCE_CHARS = 200  # --licence: one line of a model card


# --- settings --------------------------------------------------------------------------------


def parse_split(text: str | tuple | list) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> fractions of train, val and test that sum to 1 (train above 0)."""
    try:
        parts = [float(p) for p in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6 or parts[0] <= 0:
        raise UsageError(
            f"--split {text!r} must be three fractions train,val,test that sum to 1 with train "
            f"above 0, for example 0.8,0.1,0.1."
        )
    return parts[0], parts[1], parts[2]


def check_licence(licence: str | None) -> str | None:
    """The licence text to record (trimmed), None when none is given, or a UsageError for text
    that cannot be one line of a model card."""
    if licence is None:
        return None
    text = str(licence).strip()
    if not text or "\n" in text or "\r" in text or len(text) > MAX_LICENCE_CHARS:
        raise UsageError(
            f"--licence must be one line of 1 to {MAX_LICENCE_CHARS} characters naming the images' licence "
            f"(such as 'CC BY 4.0' or 'proprietary, ACME Ltd'), not {text[:40]!r}."
        )
    return text


# --- decoding --------------------------------------------------------------------------------


def _decoding_workers(requested: int | None) -> int:
    """Decoding processes: ``requested`` (None: one per CPU), capped at the CPUs this process may
    run on and at MAX_WORKERS, as more only compete for the same cores; fewer than 1 is refused."""
    if requested is not None and (
        isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or requested < 1
    ):
        raise UsageError(
            f"--workers must be 1 or more, not {requested!r}; give the number of decoding processes, "
            f"or leave it out for one per CPU."
        )
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return min(int(requested or cpus), cpus, MAX_WORKERS)


def end_with_parent(parent: int, start_method: str = "fork") -> None:
    """Worker start-up: on Linux, ask to be killed when the process that started it ends, even
    by SIGKILL (which gives the pool no chance to stop its workers). With the "forkserver" start
    method that is the fork server, which itself ends with the main process."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if start_method != "forkserver" and os.getppid() != parent:  # gone before the request took hold
        os._exit(1)


def _results(
    tasks: list[tuple[str, Options]], workers: int
) -> Iterator[tuple[str | None, np.ndarray | None, str | None]]:
    if workers <= 1 or len(tasks) < 64:
        yield from map(decode_file, tasks)
        return
    context = multiprocessing.get_context()
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=end_with_parent,
        initargs=(os.getpid(), context.get_start_method()),
    ) as pool:
        # Windows of tasks keep the finished-but-unwritten images few.
        window = 256 * workers
        for start in range(0, len(tasks), window):
            yield from pool.map(decode_file, tasks[start : start + window], chunksize=16)


def _decoded(
    candidates: list[tuple[str, str, str]], options: Options, workers: int, progress: bool
) -> Iterator[tuple[str, str, str | None, np.ndarray | None, str | None]]:
    """Every candidate (path, shown path, class) decoded, in candidate order, as (shown path, class,
    sha256, image, reason it was skipped); one of image and reason is None. A progress bar counts them."""
    tasks = [(path, options) for path, _, _ in candidates]
    with tqdm(total=len(tasks), unit="img", desc="prepare", disable=not progress, dynamic_ncols=True) as bar:
        for (_, shown, label), (digest, image, reason) in zip(candidates, _results(tasks, workers)):
            bar.update(1)
            yield shown, label, digest, image, reason


# --- de-duplication --------------------------------------------------------------------------


@dataclass
class _Dropped:
    """What decoding and de-duplication left out, for dataset.json."""

    skipped: list[dict]  # {"file", "reason"}, in the order met
    duplicates: list[dict] = field(default_factory=list)  # {"file", "duplicate_of"}, the first _LISTED_DUPLICATES
    duplicates_dropped: int = 0  # all of them

    def duplicate(self, rel: str, original: str) -> None:
        if len(self.duplicates) < _LISTED_DUPLICATES:
            self.duplicates.append({"file": rel, "duplicate_of": original})
        self.duplicates_dropped += 1


def _unique(
    decoded: Iterator[tuple[str, str, str | None, np.ndarray | None, str | None]], dropped: _Dropped
) -> Iterator[tuple[str, np.ndarray]]:
    """(class, image) of each decoded file whose bytes were not met before, in order. A file that
    failed goes to ``dropped.skipped`` with its reason; a file with the same sha256 as an earlier
    one is an exact duplicate, counted in ``dropped`` and left out: the first one met is kept."""
    first_with: dict[str, str] = {}  # sha256 -> the file kept
    for rel, label, digest, image, reason in decoded:
        if reason is not None:
            dropped.skipped.append({"file": rel, "reason": reason})
        elif digest in first_with:
            dropped.duplicate(rel, first_with[digest])
        else:
            first_with[digest] = rel
            yield label, image


# --- writing ---------------------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A uint8 .npy (version 1.0) header of exactly _HEADER_BYTES bytes, so it can be rewritten."""
    described = {"descr": "|u1", "fortran_order": False, "shape": tuple(int(d) for d in shape)}
    prefix = b"\x93NUMPY\x01\x00"
    length = _HEADER_BYTES - len(prefix) - 2
    body = repr(described).encode("latin1").ljust(length - 1) + b"\n"
    return prefix + struct.pack("<H", length) + body


def _write_images(path: Path, images: Iterator[tuple[str, np.ndarray]], most: int, options: Options) -> list[str]:
    """Stream ``images`` (at most ``most``) into a uint8 N x C x S x S .npy file at ``path`` as they
    come, so memory holds one image at a time; returns the class of each image written. The header
    first states ``most`` images and is rewritten with the true count at the end."""
    image_shape = (options.channels, options.size, options.size)
    written: list[str] = []
    with open(path, "wb") as f:
        f.write(_npy_header((most, *image_shape)))
        for label, image in images:
            f.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
            written.append(label)
        f.seek(0)
        f.write(_npy_header((len(written), *image_shape)))
        f.truncate(_HEADER_BYTES + len(written) * int(np.prod(image_shape)))
    return written


# --- splitting -------------------------------------------------------------------------------


def split_by_class(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int, class_names: list[str]
) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) chosen per class in the given proportions, seeded."""
    split = np.zeros(len(labels), dtype=np.int8)
    rng = np.random.default_rng(seed)
    needed = 1 + sum(1 for f in fractions[1:] if f > 0)
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < needed:
            raise UsageError(
                f"Class {name!r} has {len(members)} usable image(s), too few for a train/val/test split of "
                f"{','.join(f'{f:g}' for f in fractions)} (it needs {needed}); add images to it, remove its "
                f"folder, or change --split."
            )
        members = rng.permutation(members)
        n_val = max(1, round(len(members) * fractions[1])) if fractions[1] > 0 else 0
        n_test = max(1, round(len(members) * fractions[2])) if fractions[2] > 0 else 0
        while n_val + n_test > len(members) - 1:  # train keeps at least one image of each class
            if n_val >= n_test and n_val > 1 or n_test <= 1:
                n_val -= 1
            else:
                n_test -= 1
        split[members[:n_val]] = SPLITS.index("val")
        split[members[n_val : n_val + n_test]] = SPLITS.index("test")
    return split


UNLABELLED_FOLDERS = ("unlabelled", "unlabeled")  # first-level folder names, compared without case


def _labels_record(labels: bool, unlabelled: int) -> str:
    if not labels:
        return "none (one class)"
    return "first-level sub-folder" + (", the unlabelled/ folder without one" if unlabelled else "")


def is_unlabelled_folder(name: str) -> bool:
    """True for the first-level folder whose images have no category (``unlabelled/``)."""
    return name.casefold() in UNLABELLED_FOLDERS


def _write_labels_and_split(
    staging: Path, kept_labels: list[str], fractions: tuple[float, float, float], seed: int
) -> tuple[list[str], np.ndarray, int]:
    """Write labels.npy (an index into the sorted class names; UNLABELLED for the images of the
    ``unlabelled/`` folder) and split.npy (the split code of each image: the categories split by
    class, every unlabelled image in train) into ``staging``; returns the class names, the split
    codes and the number of unlabelled images."""
    class_names = sorted({name for name in kept_labels if not is_unlabelled_folder(name)})
    if not class_names:
        raise UsageError(
            "Every image sits in the unlabelled folder, so there is no category to learn; add a "
            "sub-folder per category beside it, or pass --no-labels to pack them as one class."
        )
    index = {name: label for label, name in enumerate(class_names)}
    label_array = np.asarray([index.get(name, UNLABELLED) for name in kept_labels], dtype=np.int64)
    split_codes = split_by_class(label_array, fractions, seed, class_names)
    np.save(staging / LABELS_FILE, label_array)
    np.save(staging / SPLIT_FILE, split_codes)
    return class_names, split_codes, int((label_array == UNLABELLED).sum())


# --- the folder ------------------------------------------------------------------------------


def _new_staging(out: Path) -> Path:
    try:
        return staging_dir(out)  # creates the parent folder too
    except OSError as error:
        raise ProductganError(
            f"Could not create {out} ({error.strerror or error}); check the path and its permissions."
        )


def _check_candidates(src: Path, candidates: list, skipped: list[dict], labels: bool) -> None:
    """Refuse, in one sentence, a folder that holds nothing to pack."""
    if candidates:
        return
    outside = sum(1 for s in skipped if s["reason"].startswith("not inside a class folder"))
    if outside:
        raise UsageError(
            f"{src} holds {outside} file(s) but no class sub-folders; put each category's images in a "
            f"sub-folder named after it, or pass --no-labels to pack them as one class."
        )
    raise UsageError(
        f"{src} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        + ("; with class labels they must sit in one sub-folder per class" if labels else "")
        + "."
    )


def _dataset_info(
    src: Path,
    options: Options,
    labels: bool,
    fractions: tuple[float, float, float],
    seed: int,
    class_names: list[str],
    split_codes: np.ndarray,
    listing: Listing,
    dropped: _Dropped,
    licence: str | None = None,
    unlabelled: int = 0,
) -> dict:
    """The contents of dataset.json for a packed folder of photos: every name in it is valid UTF-8."""
    count, channels, size = len(split_codes), options.channels, options.size
    sizes = {name: int((split_codes == code).sum()) for code, name in enumerate(SPLITS)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_names": class_names,
        "shape": [count, channels, size, size],
        "split_sizes": sizes,
        "meta": {
            "source": "folder",
            "source_folder": str(src.resolve()),
            "channels": channels,
            "image_size": size,
            "native_size": [size, size],
            "fit": options.fit,
            "background": list(options.background),
            "resize_filter": "lanczos",
            "licence": licence,
            "labels": _labels_record(labels, unlabelled),
            "unlabelled_images": unlabelled,
            "split": {"method": "stratified by class", "fractions": list(fractions), "seed": int(seed), "sizes": sizes},
            "files_found": listing.files_found,
            "images": count,
            "duplicates_dropped": dropped.duplicates_dropped,
            "duplicates": dropped.duplicates,
            "empty_class_folders": [
                name for name in listing.class_folders if name not in class_names and not is_unlabelled_folder(name)
            ],
            "non_utf8_class_folders": listing.non_utf8_class_folders,
            "skipped": dropped.skipped,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }


def prepare_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 64,
    channels: int = 3,
    fit: str = "pad",
    background: str = "white",
    labels: bool = True,
    split: str | tuple = (0.8, 0.1, 0.1),
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    licence: str | None = None,
) -> Path:
    """Pack the images under ``src`` into a packed dataset at ``out``; returns ``out``.

    ``licence``: the images' licence as their owner states it, recorded in dataset.json's meta
    for the model cards of generators trained on them (None: not recorded).

    Every setting is checked before any file is read. The phases: list the tree (:func:`list_photos`),
    decode (:func:`_decoded`), drop exact duplicates (:func:`_unique`), stream the images to disk
    (:func:`_write_images`), split by class (:func:`_write_labels_and_split`), record (:func:`_dataset_info`).
    All of it is written into a hidden staging folder beside ``out`` that replaces ``out`` only when
    complete; any failure or interrupt removes the staging folder and leaves ``out`` as it was.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder of images.")
    options = check_options(size, channels, fit, background)
    licence = check_licence(licence)
    fractions = parse_split(split)
    out = check_output_folder(out, overwrite)
    workers = _decoding_workers(workers)

    listing = list_photos(src, labels, options.max_file_bytes)
    candidates = listing.candidates
    _check_candidates(src, candidates, listing.skipped, labels)
    staging = _new_staging(out)
    try:
        dropped = _Dropped(skipped=list(listing.skipped))
        decoded = _decoded(candidates, options, workers, progress)
        kept_labels = _write_images(staging / IMAGES_FILE, _unique(decoded, dropped), len(candidates), options)
        if not kept_labels:
            reasons = sorted({s["reason"] for s in dropped.skipped})
            raise UsageError(
                f"None of the {len(candidates)} image files under {src} could be used ({'; '.join(reasons[:3])})."
            )
        class_names, split_codes, unlabelled = _write_labels_and_split(staging, kept_labels, fractions, seed)
        info = _dataset_info(
            src, options, labels, fractions, seed, class_names, split_codes, listing, dropped, licence, unlabelled
        )
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2, default=_json_default) + "\n", encoding="utf-8")
        out = check_output_folder(out, overwrite)  # again: it may have appeared meanwhile
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
