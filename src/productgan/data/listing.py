"""List a folder of product photos: which files to decode, and which are left out and why.

``list_photos(src, labels, max_file_bytes)`` walks ``src`` recursively, following links to
folders (each folder once, loops skipped). A first-level sub-folder is a class (``labels=False``
puts everything in one); its name is made valid UTF-8 (:func:`readable_name`). A file is a
candidate when its suffix names an image type and stat says it is a regular file of at most
``max_file_bytes``: nothing is read here. Anything else, and a folder that cannot be listed, is
recorded with the reason. ``looks_like_image_folder`` is the quick look that tells a folder of
photos from a dataset name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from productgan.data.photos import file_problem
from productgan.errors import ProductganError, UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
UNLABELLED_CLASS = "all"


def readable_name(name: str) -> str:
    """A name from the file system as valid UTF-8 text, bytes that are not UTF-8 written as \\xNN.

    Python hands such bytes over as lone surrogates, which JSON readers, web pages and terminals
    refuse. backslashreplace rather than replace: the bytes stay visible and distinct ('caf\\xe9'
    and 'caf\\xe8' stay two names), where U+FFFD would merge them and hide what they were.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass
class Listing:
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


def list_photos(src: Path, labels: bool, max_file_bytes: int) -> Listing:
    """List ``src`` depth first in name order, a folder's files before its sub-folders, sorting
    each file into a candidate or a skipped entry (:func:`_add_file`) and each sub-folder into one
    to walk or one skipped (:func:`_claim_folders`). Hidden folders are left out unrecorded. A folder
    that cannot be listed is skipped with the reason; when that folder is ``src`` itself, it is a
    ProductganError."""
    listing = Listing()
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


def _list_folder(folder: _Folder, listing: Listing) -> list[os.DirEntry] | None:
    """The entries of ``folder`` in name order; None, with the reason recorded, when it cannot be listed."""
    try:
        with os.scandir(folder.path) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        if not folder.shown:
            raise _unlistable(folder.path, error)
        listing.skip(folder.shown + "/", f"cannot list: {error.strerror or type(error).__name__}")
        return None


def check_listable(path: str | os.PathLike) -> None:
    """A ProductganError naming the folder ``path`` when it cannot be listed or its entries
    reached (no read or search permission), before anything looks for a file in it; a file
    inside would otherwise be named as the one that cannot be read."""
    try:
        with os.scandir(path) as entries:
            next(entries, None)
        os.stat(os.path.join(path, os.curdir))  # needs search (x) permission on the folder
    except OSError as error:
        raise _unlistable(str(path), error) from None


def _unlistable(path: str, error: OSError) -> ProductganError:
    reason = error.strerror or type(error).__name__
    return ProductganError(f"Cannot list {readable_name(path)} ({reason}); check its permissions.")


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links: a link to a folder is a folder
    except OSError:
        return False


def _shown(parent: _Folder, name: str) -> str:
    return f"{parent.shown}/{readable_name(name)}" if parent.shown else readable_name(name)


def _add_file(entry: os.DirEntry, folder: _Folder, labels: bool, max_file_bytes: int, listing: Listing) -> None:
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
    subfolders: list[os.DirEntry], parent: _Folder, visited: dict, labels: bool, listing: Listing
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


def _check_class_names(class_folders: list[_Folder], listing: Listing) -> None:
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
