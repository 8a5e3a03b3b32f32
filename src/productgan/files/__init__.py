"""Writing files so that a crash never leaves half of one: a temporary file beside the target,
then a rename over it (atomic on one file system).

- A file: ``write_atomic(path, write)`` (``write_text_atomic`` for text) fills a temporary
  ``.NAME.tmp-HOST-PID-XXXX`` beside the target, then renames it over the target. Checkpoints,
  PNGs, config.yaml, evaluation reports, model cards and ``.npy`` outputs go through it; a
  failure is an OSError naming the target (``write_error``: ENOSPC for a full disk).
- A folder (a run's generator/, a packed dataset, a folder of generated images) is built in
  ``staging_dir(target)`` and put in place by ``replace_dir``, which swaps it in one step where
  the system can (``renameat2(RENAME_EXCHANGE)`` on Linux), else parks the old folder as
  ``.NAME.old-HOST-PID-XXXX`` first.
- ``remove_stale_temporaries`` deletes what a crash left, the temporaries of processes that no
  longer run (host and pid are in the name), and puts back a parked folder whose original is
  missing. ``staging_dir``, ``run.check_new_run_dir`` and the run lock (``run.locked``, which
  clears the whole run) call it.
- Not everything is atomic: metrics.jsonl is appended line by line, and a line cut short is
  dropped by its readers (run/folder.py); ``save_tensors`` writes in place, so it is called on a
  temporary file or inside a staging folder.
- ``refuse_to_replace`` and ``check_writable`` refuse before any slow work: an output the user
  did not ask to replace, a place where no file can be written.
- A command's outputs (``Outputs``) are claimed before its work and written together at its
  end: a file is refused as above; a folder by the one rule every folder writer keeps
  (``check_folder``): it is replaced only when every file in it is one the command writes
  (``FolderKind``), never when it holds anything else, whatever the flags. Each claimed output
  is locked (``.NAME.lock`` beside it) until the command ends, so a second process writing it
  is refused at once; the outputs are filled as temporaries and put in place only when all are
  whole, so a command that fails leaves none of them (nor the folders it made for them).
"""

from productgan.files.atomic import (
    AT_FDCWD,
    FULL_DISK_WORDS,
    NEARLY_FULL_BYTES,
    RENAME_EXCHANGE,
    check_writable,
    current_umask,
    disk_full,
    file_sha256,
    refuse_to_replace,
    remove_stale_temporaries,
    replace_dir,
    save_tensors,
    staging_dir,
    temp_prefix,
    temporary_file,
    usual_permissions,
    write_atomic,
    write_error,
    write_text_atomic,
)
from productgan.files.outputs import (
    FolderKind,
    Outputs,
    check_folder,
    foreign_files,
    output_path,
)

__all__ = [
    "AT_FDCWD",
    "FULL_DISK_WORDS",
    "FolderKind",
    "NEARLY_FULL_BYTES",
    "Outputs",
    "RENAME_EXCHANGE",
    "check_folder",
    "check_writable",
    "current_umask",
    "disk_full",
    "file_sha256",
    "foreign_files",
    "output_path",
    "refuse_to_replace",
    "remove_stale_temporaries",
    "replace_dir",
    "save_tensors",
    "staging_dir",
    "temp_prefix",
    "temporary_file",
    "usual_permissions",
    "write_atomic",
    "write_error",
    "write_text_atomic",
]
