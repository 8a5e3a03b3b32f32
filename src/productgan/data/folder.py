"""Pack a folder of product photos: decode every file once, fit it to a square, split the set.

``prepare_folder(src, out, size=64)`` walks ``src`` recursively, following links to folders
(each folder once, loops skipped). A first-level sub-folder is a class (``labels=False`` puts
everything in one); its name is made valid UTF-8. Only regular files of at most
``MAX_FILE_BYTES`` are read, as stat tells before the first byte. Each is read, hashed (exact
duplicates are dropped), decoded with Pillow (its decompression-bomb guard kept), turned upright by its EXIF
orientation, converted to RGB or grey with transparency composited on the background colour,
padded (or centre-cropped) to a square and resized with Lanczos. A file that fails any step is
skipped and listed in ``dataset.json`` with the reason, and so is a folder that cannot be listed;
nothing one file or folder does stops the run.

Images are streamed into ``images.npy`` inside a hidden staging folder, so memory stays bounded
whatever the folder's size, and the folder is renamed into place only when complete.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import stat
import struct
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from productgan.config import check_image_size
from productgan.data.packed import (
    FORMAT,
    FORMAT_VERSION,
    IMAGES_FILE,
    INFO_FILE,
    LABELS_FILE,
    SPLIT_FILE,
    SPLITS,
    _json_default,
    check_output_folder,
)
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import replace_dir, staging_dir

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent ends
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}
UNLABELLED_CLASS = "all"
_HEADER_BYTES = 128  # a fixed .npy header, rewritten in place with the final image count
_LISTED_DUPLICATES = 1000  # duplicates named in dataset.json (all are counted)
MAX_FILE_BYTES = 64 * 2**20  # per file: far above any product photo; a larger file is skipped unread
MAX_WORKERS = 8  # decoding processes
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "folder"),
)


def parse_background(text: str) -> tuple[int, int, int]:
    """'white', 'black', 'grey', '#RRGGBB' or 'R,G,B' -> an RGB tuple."""
    value = str(text).strip().lower()
    if value in BACKGROUNDS:
        return BACKGROUNDS[value]
    try:
        if value.startswith("#") and len(value) == 7:
            rgb = tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(part) for part in value.split(","))
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    except ValueError:
        pass
    raise UsageError(f"--background {text!r} is not a colour; use white, black, grey, #RRGGBB or R,G,B (0-255).")


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


# --- one file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    size: int
    channels: int
    fit: str
    background: tuple[int, int, int]
    max_file_bytes: int = MAX_FILE_BYTES  # a larger file is skipped unread


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey modes -> 8-bit 'L' (Pillow's own conversion clips instead of scaling)."""
    array = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or array.max(initial=0) > 255:
        array = array / 257.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def _flatten(image: Image.Image, options: Options) -> Image.Image:
    """Any Pillow mode -> RGB or L, transparent pixels composited on the background."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, options.background + (255,))
        image = Image.alpha_composite(canvas, rgba).convert("RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return image.convert("L") if options.channels == 1 else image


def _fit(image: Image.Image, options: Options) -> Image.Image:
    width, height = image.size
    if options.fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif width != height:
        side = max(width, height)
        fill = options.background if image.mode == "RGB" else int(round(np.mean(options.background)))
        canvas = Image.new(image.mode, (side, side), fill)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    # reducing_gap: a fast box reduction down to 3x the target first, then Lanczos.
    return image.resize((options.size, options.size), Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_image(data: bytes, options: Options) -> np.ndarray:
    """Encoded image bytes -> uint8 C x S x S; raises ValueError with the reason it cannot."""
    if not data:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format == "JPEG":
                # Let the JPEG decoder skip detail the target size does not need (much faster).
                image.draft("RGB" if options.channels == 3 else "L", (options.size * 2, options.size * 2))
            image.load()
            image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise ValueError(f"too large (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels; Pillow's decompression-bomb guard)")
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read")
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise ValueError(f"damaged or truncated ({str(error).strip() or type(error).__name__})")
    try:
        fitted = _fit(_flatten(image, options), options)
    except (OSError, ValueError) as error:
        raise ValueError(f"unsupported image ({image.mode} mode: {error})")
    array = np.asarray(fitted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f}".removesuffix(".0")


def file_problem(status: os.stat_result, max_bytes: int) -> str | None:
    """Why a file with this stat is not read: it is no regular file (a named pipe would block the
    read for ever, /dev/zero never ends), or it is over ``max_bytes``; None when it may be read."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for is_kind, name in _SPECIAL_FILES if is_kind(status.st_mode)), "special file")
        return f"not a regular file ({kind})"
    if status.st_size > max_bytes:
        return f"too big ({_mib(status.st_size)} MiB; files over {_mib(max_bytes)} MiB are skipped unread)"
    return None


def _read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, or a ValueError with the reason it is not read.

    The tree may change after it was listed, so the checks of :func:`file_problem` are made again
    on the open file. It is opened non-blocking: opening a named pipe would otherwise wait for a
    writer for ever. At most ``max_bytes + 1`` bytes are read, so a file that grows cannot eat memory.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        problem = file_problem(os.fstat(fd), max_bytes)
        if problem is not None:
            raise ValueError(problem)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"too big (grew past {_mib(max_bytes)} MiB after it was listed; larger files are skipped)")
    return data


def _process(task: tuple[str, Options]) -> tuple[str | None, np.ndarray | None, str | None]:
    """(path, options) -> (sha256, image, reason it was skipped); runs in a worker process. It
    raises for no file: whatever goes wrong with one becomes the reason that file is skipped."""
    path, options = task
    try:
        data = _read_regular_file(path, options.max_file_bytes)
    except OSError as error:
        return None, None, f"unreadable ({error.strerror or type(error).__name__})"
    except ValueError as error:
        return None, None, str(error)
    except MemoryError:
        return None, None, "out of memory while reading"
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, load_image(data, options), None
    except ValueError as error:
        return digest, None, str(error)
    except MemoryError:
        return digest, None, "out of memory while decoding"
    except Exception as error:  # a decoder's bug on one odd file must not end the run
        return digest, None, f"could not be decoded ({type(error).__name__}: {first_line(error)})"


# --- listing the tree -------------------------------------------------------------------------


def readable_name(name: str) -> str:
    """A name from the file system as valid UTF-8 text, bytes that are not UTF-8 written as \\xNN.

    Python hands such bytes over as lone surrogates, which JSON readers, web pages and terminals
    refuse. backslashreplace rather than replace: the bytes stay visible and distinct ('caf\\xe9'
    and 'caf\\xe8' stay two names), where U+FFFD would merge them and hide what they were.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass
class _Listing:
    """What listing the tree found: the files to decode, and what was left out with the reason."""

    candidates: list[tuple[str, str, str]] = field(default_factory=list)  # (path, shown path, class), walk order
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}; a folder's shown path ends in "/"
    files_found: int = 0  # every file met, candidate or not
    class_folders: list[str] = field(default_factory=list)  # class names of the first-level folders listed
    non_utf8_class_folders: list[dict] = field(default_factory=list)  # {"class_name", "folder_name_hex"}

    def skip(self, shown: str, reason: str) -> None:
        self.skipped.append({"file": shown, "reason": reason})


class _Folder(NamedTuple):
    path: str  # as the file system names it
    shown: str  # relative to the source and valid UTF-8; "" for the source itself
    label: str  # the class of the images under it
    chain: tuple[tuple[int, int], ...]  # (st_dev, st_ino) of the folders from the source down to it


def _folder_key(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _walk(src: Path, labels: bool, max_file_bytes: int) -> _Listing:
    """List ``src`` depth first in name order, a folder's files before its sub-folders, sorting
    each file into a candidate or a skipped entry (:func:`_add_file`) and each sub-folder into one
    to walk or one skipped (:func:`_claim_folders`). Hidden folders are left out unrecorded. A folder
    that cannot be listed is skipped with the reason; when that folder is ``src`` itself, it is a
    ProductganError."""
    listing = _Listing()
    root_key = _folder_key(os.stat(src))
    visited = {root_key: ""}
    stack = [_Folder(str(src), "", UNLABELLED_CLASS, (root_key,))]
    while stack:
        folder = stack.pop()
        entries = _list_folder(folder, listing)
        if entries is None:
            continue
        if labels and len(folder.chain) == 2:
            listing.class_folders.append(folder.label)
        subfolders = []
        for entry in entries:
            if _is_folder(entry):
                if not entry.name.startswith("."):
                    subfolders.append(entry)
            else:
                _add_file(entry, folder, labels, max_file_bytes, listing)
        claimed = _claim_folders(subfolders, folder, visited, labels, listing)
        if labels and not folder.shown:
            _check_class_names(claimed, listing)
        stack.extend(reversed(claimed))
    return listing


def _list_folder(folder: _Folder, listing: _Listing) -> list[os.DirEntry] | None:
    """The entries of ``folder`` in name order; None, with the reason recorded, when it cannot be listed."""
    try:
        with os.scandir(folder.path) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if not folder.shown:
            raise ProductganError(f"Cannot list {readable_name(folder.path)} ({reason}); check its permissions.")
        listing.skip(folder.shown + "/", f"cannot list: {reason}")
        return None


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links: a link to a folder is a folder
    except OSError:
        return False


def _shown(parent: _Folder, name: str) -> str:
    return f"{parent.shown}/{readable_name(name)}" if parent.shown else readable_name(name)


def _add_file(entry: os.DirEntry, folder: _Folder, labels: bool, max_file_bytes: int, listing: _Listing) -> None:
    """Make ``entry`` a candidate, or skip it with the first reason that applies: hidden, not an
    image type, outside a class folder (with ``labels``), unreadable, not a regular file, or over
    ``max_file_bytes``. Links to files are followed. Type and size come from stat: nothing is read."""
    listing.files_found += 1
    shown, suffix = _shown(folder, entry.name), Path(entry.name).suffix
    if entry.name.startswith("."):
        reason = "hidden file"
    elif suffix.lower() not in IMAGE_SUFFIXES:
        reason = f"not an image file type ({readable_name(suffix) or 'no suffix'})"
    elif labels and not folder.shown:
        reason = "not inside a class folder (use --no-labels for one class)"
    else:
        try:
            reason = file_problem(entry.stat(), max_file_bytes)
        except OSError as error:
            reason = f"unreadable ({error.strerror or type(error).__name__})"
    if reason is None:
        listing.candidates.append((entry.path, shown, folder.label))
    else:
        listing.skip(shown, reason)


def _claim_folders(
    subfolders: list[os.DirEntry], parent: _Folder, visited: dict, labels: bool, listing: _Listing
) -> list[_Folder]:
    """The sub-folders of ``parent`` to walk, in name order. Links to folders are followed wherever
    they point, inside the tree or out of it, but each folder (known by st_dev and st_ino) is walked
    once: one that leads back to a folder above it (a loop) or that was met before by another path
    is skipped with the reason. Real folders are claimed before the links beside them, so a link to
    a class folder does not take that class's images. With ``labels`` a first-level folder is a
    class named after it (:func:`readable_name`); deeper ones inherit their parent's class."""
    claimed = {}
    for entry in sorted(subfolders, key=lambda entry: entry.is_symlink()):  # stable: name order within each
        shown = _shown(parent, entry.name)
        try:
            key = _folder_key(entry.stat())
        except OSError as error:
            listing.skip(shown + "/", f"cannot list: {error.strerror or type(error).__name__}")
            continue
        if key in parent.chain:
            above = f"{visited[key]}/" if visited[key] else "the source folder"
            listing.skip(shown + "/", f"link loop: leads back to {above}")
        elif key in visited:
            listing.skip(shown + "/", f"same folder as {visited[key]}/, already listed")
        else:
            visited[key] = shown
            label = readable_name(entry.name) if labels and not parent.shown else parent.label
            claimed[entry.name] = _Folder(entry.path, shown, label, parent.chain + (key,))
    return [claimed[name] for name in sorted(claimed)]


def _check_class_names(class_folders: list[_Folder], listing: _Listing) -> None:
    """Refuse two class folders whose names read as one class once made valid UTF-8, and record
    the bytes of each name that had to change, so that nothing of it is lost."""
    folder_by_class: dict[str, bytes] = {}
    for folder in class_folders:
        raw = os.fsencode(os.path.basename(folder.path))
        if folder.label in folder_by_class:
            raise UsageError(
                f"The class folders {folder_by_class[folder.label]!r} and {raw!r} both read as class "
                f"'{folder.label}' (bytes that are not UTF-8 are written as \\xNN); rename one of them."
            )
        folder_by_class[folder.label] = raw
        if raw != folder.label.encode("utf-8"):
            listing.non_utf8_class_folders.append({"class_name": folder.label, "folder_name_hex": raw.hex()})


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
        yield from map(_process, tasks)
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
            yield from pool.map(_process, tasks[start : start + window], chunksize=16)


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


def _write_labels_and_split(
    staging: Path, kept_labels: list[str], fractions: tuple[float, float, float], seed: int
) -> tuple[list[str], np.ndarray]:
    """Write labels.npy (an index into the sorted class names) and split.npy (the split code of
    each image) into ``staging``; returns the class names and the split codes."""
    class_names = sorted(set(kept_labels))
    label_array = np.asarray([class_names.index(name) for name in kept_labels], dtype=np.int64)
    split_codes = split_by_class(label_array, fractions, seed, class_names)
    np.save(staging / LABELS_FILE, label_array)
    np.save(staging / SPLIT_FILE, split_codes)
    return class_names, split_codes


# --- the folder ------------------------------------------------------------------------------


def _checked_options(size: int, channels: int, fit: str, background: str) -> Options:
    size = check_image_size(size)
    if channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (grey) or 3 (RGB), not {channels}.")
    if fit not in ("pad", "crop"):
        raise UsageError(f"--fit must be 'pad' or 'crop', not {fit!r}.")
    return Options(size, channels, fit, parse_background(background), max_file_bytes=MAX_FILE_BYTES)


MAX_LICENCE_CHARS = 200


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
    listing: _Listing,
    dropped: _Dropped,
    licence: str | None = None,
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
            "labels": "first-level sub-folder" if labels else "none (one class)",
            "split": {"method": "stratified by class", "fractions": list(fractions), "seed": int(seed), "sizes": sizes},
            "files_found": listing.files_found,
            "images": count,
            "duplicates_dropped": dropped.duplicates_dropped,
            "duplicates": dropped.duplicates,
            "empty_class_folders": [name for name in listing.class_folders if name not in class_names],
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

    Every setting is checked before any file is read. The phases: list the tree (:func:`_walk`),
    decode (:func:`_decoded`), drop exact duplicates (:func:`_unique`), stream the images to disk
    (:func:`_write_images`), split by class (:func:`_write_labels_and_split`), record (:func:`_dataset_info`).
    All of it is written into a hidden staging folder beside ``out`` that replaces ``out`` only when
    complete; any failure or interrupt removes the staging folder and leaves ``out`` as it was.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder of images.")
    options = _checked_options(size, channels, fit, background)
    licence = check_licence(licence)
    fractions = parse_split(split)
    out = check_output_folder(out, overwrite)
    workers = _decoding_workers(workers)

    listing = _walk(src, labels, options.max_file_bytes)
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
        class_names, split_codes = _write_labels_and_split(staging, kept_labels, fractions, seed)
        info = _dataset_info(src, options, labels, fractions, seed, class_names, split_codes, listing, dropped, licence)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2, default=_json_default) + "\n", encoding="utf-8")
        out = check_output_folder(out, overwrite)  # again: it may have appeared meanwhile
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def looks_like_image_folder(path: Path) -> bool:
    """True when ``path`` holds image files at its top or one level down (a quick look, not a
    walk; a folder that cannot be listed counts as holding none, and prepare names it)."""

    def has_image(folder: Path) -> bool:
        try:
            return any(e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES for e in folder.iterdir())
        except OSError:
            return False

    if has_image(path):
        return True
    try:
        folders = [e for e in path.iterdir() if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return False
    return any(has_image(folder) for folder in folders)
