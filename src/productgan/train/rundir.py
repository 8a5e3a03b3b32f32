"""Numbered run directories: runs/00003-fashion-mnist-32/."""

from __future__ import annotations

import re
from pathlib import Path

_NUMBERED = re.compile(r"^(\d{5})-")


def dataset_slug(data: str) -> str:
    name = Path(data.rstrip("/\\")).name or "data"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return slug or "data"


def new_run_dir(runs_root: str | Path, data: str, image_size: int) -> Path:
    """Create and return the next numbered run directory under ``runs_root``."""
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _NUMBERED.match(p.name))]
    number = max(taken, default=-1) + 1
    while True:
        path = root / f"{number:05d}-{dataset_slug(data)}-{image_size}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another run took the number first
            number += 1
