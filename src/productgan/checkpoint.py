"""Training checkpoints: tensors and plain values only, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from productgan.errors import ProductganError, first_line
from productgan.files import write_atomic, write_error

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash mid-write never
    damages the previous checkpoint."""

    def write(tmp: Path) -> None:
        try:
            torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
        except RuntimeError as error:  # torch's writer reports a short write (a full disk) as "unexpected pos"
            raise write_error(error, path, tmp) from None

    return write_atomic(path, write)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ProductganError(f"There is no checkpoint at {path}; check the run directory.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ProductganError(
            f"The checkpoint {path} cannot be read ({first_line(error)}); it may be damaged or not a productgan "
            "checkpoint."
        )
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ProductganError(f"{path} is not a productgan checkpoint of version {CHECKPOINT_VERSION}.")
    return state
