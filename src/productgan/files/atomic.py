"""Atomic writes of files and folders, and the temporaries a crash leaves (see the package's docstring)."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save_file

from productgan.errors import ProductganError, first_line


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it to ``path``; the folder is
    created when missing, and the temporary file never outlives a failure. The temporary file is
    created here, under a name no one can guess, with exclusive create and no link followed, so
    a link planted in a folder others may write to never redirects the write. A failure is an
    OSError naming ``path`` (ENOSPC when the disk is full, however the writer words it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise write_error(error, path, tmp) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def temporary_file(path: Path) -> Path:
    """A new, empty temporary file beside ``path`` (its folder exists), with the usual
    permissions: exclusive create under a name no one can guess, no link followed."""
    # The suffix is kept for writers that add a missing one (numpy's .npy).
    handle, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=path.suffix.lower(), dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp's file is private; the result should not be
    finally:
        os.close(handle)
    return Path(name)


FULL_DISK_WORDS = ("no space left", "os error 28", "errno 28", "disk quota exceeded", "os error 122")
# A failed write leaves its partial temporary file on the disk while the cause is looked for,
# so a write the disk could not hold finds (next to) nothing free.
NEARLY_FULL_BYTES = 64 << 20


def disk_full(folder: str | os.PathLike, error: BaseException | None = None) -> bool:
    """Whether a write in ``folder`` that raised ``error`` failed for want of space: the error
    says so, or the disk has next to no room left. Libraries word a short write their own way
    (torch: "unexpected pos", numpy: "N requested and M written"), so their words alone do not tell."""
    if isinstance(error, OSError) and error.errno not in (None, errno.EIO):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)  # the system's own reason
    if error is not None and any(words in str(error).lower() for words in FULL_DISK_WORDS):
        return True
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def write_error(error: BaseException, path: str | os.PathLike, tmp: str | os.PathLike | None = None) -> OSError:
    """``error``, raised while writing ``path`` (through its temporary file ``tmp``), as an OSError
    that names ``path``: ENOSPC when the disk is full (EDQUOT when the user's quota is), the error
    itself when it names another file (a folder that could not be made), else its words with its
    own error number or EIO."""
    path = Path(path)
    if disk_full(path.parent, error):
        number = errno.EDQUOT if getattr(error, "errno", None) == errno.EDQUOT else errno.ENOSPC
        return OSError(number, os.strerror(number), str(path))
    if isinstance(error, OSError):
        if error.filename and (tmp is None or str(error.filename) != str(tmp)):
            return error
        return OSError(error.errno or errno.EIO, error.strerror or first_line(error), str(path))
    return OSError(errno.EIO, first_line(error), str(path))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def current_umask() -> int:
    """This process's umask, read without changing it where the system tells it (Linux 4.7+):
    setting it to learn it would give a file another thread creates meanwhile no mask at all."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> Path:
    """Give ``path`` the permissions of any new file or folder here: some writers (safetensors,
    mkdtemp) make theirs private, which would keep a shared run or dataset from its other users."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())
    return path


RENAME_EXCHANGE = 2  # renameat2 flag: swap two paths in one step (Linux 3.15+)
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically; False where the system cannot (then nothing moved)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def replace_dir(staging: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Put the finished folder ``staging`` at ``out``. An existing ``out`` is swapped out in one
    atomic step where the system allows it (so a crash leaves the old folder or the new one, never
    neither), else moved aside first and put back if the final rename fails; then it is removed."""
    staging, out = Path(staging), Path(out)
    usual_permissions(staging)  # mkdtemp makes folders private
    if not (out.exists() or out.is_symlink()):
        os.replace(staging, out)
        return out
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old folder
        return out
    parked = Path(tempfile.mkdtemp(prefix=temp_prefix(out, "old"), dir=out.parent))
    parked.rmdir()
    os.replace(out, parked)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(parked, out)
        raise
    shutil.rmtree(parked, ignore_errors=True)
    return out


def temp_prefix(target: Path, kind: str = "tmp") -> str:
    """The hidden name prefix of this process's temporaries for ``target``:
    ``.NAME.tmp-HOST-PID-``. Host and process id let a later run tell a dead process's leftovers
    from those of one still running (on this machine or, on a shared disk, another)."""
    return f".{target.name}.{kind}-{_HOST}-{os.getpid()}-"


def staging_dir(target: str | os.PathLike) -> Path:
    """A new hidden folder beside ``target`` to build it in (after clearing dead runs' leftovers)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))


def _host_id() -> str:
    """This machine's name plus, on Linux, its process-id namespace: containers that share a
    host name (host networking) number their processes apart, so a pid alone would mislead."""
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
    try:
        return f"{host}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return host


_HOST = _host_id()
# .NAME.tmp-HOST-PID-REST: REST (mkdtemp's letters and digits, or a suffix) holds no "-DIGITS-".
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[^-]*$")


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files and folders (``.NAME.tmp-HOST-PID-...``) that processes which
    no longer run left in ``folder``: a crash mid-write leaves them, nothing else does. A parked
    old folder (``.NAME.old-...``) whose NAME is missing is put back instead: a crash between
    the two renames of a folder swap left it there."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    entries = folder.rglob(".*") if recursive else folder.glob(".*")
    for path in list(entries):
        match = _STALE.match(path.name)
        if not match or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        original = path.with_name(match["name"])
        if match["kind"] == "old" and not (original.exists() or original.is_symlink()):
            os.replace(path, original)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; no process id at all
        return True
    return True


def refuse_to_replace(paths: list[Path], overwrite: bool, where: Path | None = None) -> None:
    """One sentence (a ProductganError) when any of ``paths`` exists and ``overwrite`` was not
    given: outputs never replace what the user did not ask to replace. ``where`` names the folder
    that holds several of them."""
    taken = [Path(p) for p in paths if Path(p).exists()]
    if not taken or overwrite:
        return
    if where is None:
        raise ProductganError(f"{taken[0]} already exists; choose another --out or pass --overwrite.")
    raise ProductganError(
        f"{where} already holds {', '.join(p.name for p in taken)}, which this would replace; "
        f"choose another --out or pass --overwrite."
    )


def save_tensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file with the usual permissions (safetensors makes it 0600); a failed
    write (a full disk) is an OSError naming the file, like any other."""
    path = Path(path)
    try:
        save_file(tensors, str(path), metadata=metadata)
    except Exception as error:  # safetensors raises its own type for I/O failures
        raise write_error(error, path) from None
    return usual_permissions(path)


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` if a file can be written there, else the OSError writing it would end in, found
    before any slow work: its folder exists or can be made (nothing is made), and a file can be
    created in the nearest folder that exists (one is made and removed)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    folder = path.parent
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    try:
        handle, name = tempfile.mkstemp(prefix=temp_prefix(path), dir=folder)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(folder)) from None
    os.close(handle)
    os.unlink(name)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path`` as 64 hex digits, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
