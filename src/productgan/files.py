"""Writing files so that a crash never leaves half of one: a temporary file beside the target,
then a rename over it (atomic on one file system)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it to ``path``; the folder is
    created when missing, and the temporary file never outlives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> Path:
    """Give ``path`` the permissions of any new file or folder here: some writers (safetensors,
    mkdtemp) make theirs private, which would keep a shared run or dataset from its other users."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())
    return path
