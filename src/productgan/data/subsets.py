"""Seeded subsets: which images of a set take part when only some of them are used."""

from __future__ import annotations

import numpy as np


def seeded_subset(total: int, count: int, seed: int) -> np.ndarray:
    """``min(count, total)`` distinct indices of ``range(total)``, ascending, fixed by ``seed``.

    Ascending, so a memory-mapped array is read front to back; the same arguments give the same
    indices on every machine (numpy's Generator is stable across platforms).
    """
    return np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
