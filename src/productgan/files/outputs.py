"""A command's outputs: claimed before its work, written all together at its end, and the one rule
for replacing a folder (see the package's docstring)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from productgan.errors import ProductganError, UsageError
from productgan.files.atomic import refuse_to_replace, replace_dir, staging_dir, temporary_file, write_error


def output_path(value: str | os.PathLike, flag: str = "--out") -> Path:
    """``value`` as a Path, or one sentence when it is empty (which would name the current folder)."""
    if not os.fspath(value).strip():
        raise UsageError(f"{flag} is empty; give the path of the file or folder to write.")
    return Path(value).expanduser()


@dataclass(frozen=True)
class FolderKind:
    """A folder that a command writes, as the one rule (``check_folder``) recognises it:
    ``what`` names its contents in a sentence ("images"); ``own`` tells its files from others:
    a regular expression their paths inside the folder (``a/b.png``) match in full, or a function
    of the folder that gives the paths its own record lists (a manifest)."""

    what: str
    own: str | Callable[[Path], Collection[str]]


def foreign_files(folder: Path, kind: FolderKind, most: int = 4) -> list[str]:
    """Up to ``most`` of the files in ``folder`` that ``kind`` does not own, as sorted paths
    inside it. An empty subfolder counts as a file (someone made it); links are not followed."""
    listed = None if isinstance(kind.own, str) else set(kind.own(folder))
    found = []
    for root, folders, names in os.walk(folder):
        here = Path(root).relative_to(folder)
        entries = [here / name for name in [*names, *(f for f in folders if os.path.islink(os.path.join(root, f)))]]
        if not (folders or names) and here.parts:
            entries = [here]
        for entry in entries:
            path = entry.as_posix()
            if not (re.fullmatch(kind.own, path) if listed is None else path in listed):
                found.append(path)
        if len(found) >= most:
            break
    return sorted(found)[:most]


def check_folder(out: Path, overwrite: bool, kind: FolderKind, command: str) -> Path:
    """The one rule of every command that writes a folder: ``out`` may be missing or empty; a
    folder holding only the files ``command`` writes there (``kind``) is replaced with
    ``overwrite``; a folder holding anything else never is, whatever the flags, and one sentence
    names a few of the files it would lose."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; {command} writes a folder there, so give a folder.")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    foreign = foreign_files(out, kind)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ProductganError(
            f"{out} already exists and holds more than {kind.what} ({shown}), files productgan {command} did "
            f"not write; it never replaces those, so move them elsewhere or choose another --out."
        )
    refuse_to_replace([out], overwrite)
    return out


class Outputs:
    """Everything one command writes, claimed before its work and put in place together at its
    end, used as ``with Outputs("variants") as outputs:``.

    ``claim(path, overwrite, kind)`` judges an output before any slow work: a file by
    ``refuse_to_replace``, a folder (``kind`` given) by ``check_folder``; it locks it
    (``.NAME.lock`` beside it, made and removed here) until the block ends, so a second process
    writing the same output is refused at once, and finds where no file can be written (the
    lock is the first). ``write({path: fill})`` calls ``fill`` on a temporary file (a staging
    folder for a folder) for every output, and only when all are whole puts them in place: a
    failure leaves every output as it was and is an OSError naming the one being written. A
    block that fails also removes the folders its claims made."""

    def __init__(self, command: str):
        self.command = command  # its name in sentences: "synth"
        self.claimed: dict[Path, tuple[FolderKind | None, bool]] = {}
        self._locks: list[tuple[Path, int]] = []
        self._made: list[Path] = []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, error_type: type | None, *_: object) -> None:
        for lock, handle in reversed(self._locks):
            lock.unlink(missing_ok=True)  # while still held: the next holder checks it locked this file
            os.close(handle)
        self._locks.clear()
        if error_type is not None:
            for folder in reversed(self._made):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only while empty

    def claim(
        self, path: str | os.PathLike, overwrite: bool = False, kind: FolderKind | None = None, flag: str = "--out"
    ) -> Path:
        """``path`` (given as ``flag``) as a Path this command may write, held until the block ends."""
        path = output_path(path, flag)
        for other in self.claimed:
            a, b = path.resolve(), other.resolve()
            if a == b or a in b.parents or b in a.parents:
                raise UsageError(
                    f"{flag} {path} is or holds {other}, which {self.command} also writes; give each its own place."
                )
        self._judge(path, kind, overwrite)
        self._lock(path)
        if kind is None and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        self.claimed[path] = (kind, overwrite)
        return path

    def _judge(self, path: Path, kind: FolderKind | None, overwrite: bool) -> None:
        if kind is None:
            refuse_to_replace([path], overwrite)
        else:
            check_folder(path, overwrite, kind, self.command)

    def _lock(self, path: Path) -> None:
        lock = path.parent / f".{path.name}.lock"
        try:
            self._make_folders(path.parent)
            while True:
                handle = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(handle, 200).decode(errors="replace").strip() or "another process"
                    os.close(handle)
                    raise ProductganError(
                        f"{path} is being written by {holder}; wait until it ends, or choose another --out."
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(lock, follow_symlinks=False).st_ino == os.fstat(handle).st_ino:
                        break
                os.close(handle)  # its last holder removed it as this process opened it: lock the new one
        except OSError as error:
            if error.filename is not None and str(error.filename) != str(lock):
                raise
            raise OSError(error.errno, error.strerror, str(path)) from None
        os.ftruncate(handle, 0)
        os.write(handle, f"process {os.getpid()} (productgan {self.command})".encode())
        self._locks.append((lock, handle))

    def _make_folders(self, folder: Path) -> None:
        missing = []
        while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            self._made.append(folder)

    def write(self, fills: dict[Path, Callable[[Path], object]]) -> None:
        """Fill every claimed output in ``fills`` (each ``fill`` writes one temporary file, or
        the files of one staging folder), then, all whole, put each in place."""
        ready: list[tuple[Path, Path]] = []
        try:
            for target, fill in fills.items():
                kind, _ = self.claimed[target]
                temporary = staging_dir(target) if kind else temporary_file(target)
                ready.append((target, temporary))
                try:
                    fill(temporary)
                except OSError as error:
                    raise _named(error, target, temporary) from None
            for target, _ in ready:  # something may have come meanwhile
                self._judge(target, *self.claimed[target])
            for target, temporary in ready:
                if self.claimed[target][0]:
                    replace_dir(temporary, target)
                else:
                    os.replace(temporary, target)
        finally:
            for _, temporary in ready:
                if temporary.is_dir() and not temporary.is_symlink():
                    shutil.rmtree(temporary, ignore_errors=True)
                else:
                    temporary.unlink(missing_ok=True)


def _named(error: OSError, target: Path, temporary: Path) -> OSError:
    """``error``, met while filling ``temporary`` for ``target``, as an OSError naming the file
    of ``target`` being written (the temporary's name would mean nothing to the user)."""
    written = Path(error.filename) if error.filename else temporary
    try:
        inside = written.relative_to(temporary)
    except ValueError:
        return write_error(error, written)  # another file than the output's
    return write_error(error, target / inside, tmp=error.filename)
