"""The name of an image: latent vectors from a seed, class labels, the temperature.

An image is named by (seed, index, class, temperature): ``noise`` draws with numpy in row order,
so row i of a seed is the same in any count and on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from productgan.errors import UsageError


def noise(n: int, nz: int, seed: int | tuple[int, ...]) -> torch.Tensor:
    """Seeded latent vectors, the same on any device (``seed``: an int, or a tuple of ints for a
    stream of its own).

    Drawn with numpy's generator, which fills rows in order, so the first k vectors of
    ``noise(n, ...)`` are ``noise(k, ...)``: image i of a seed does not depend on how many are asked for.
    """
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, nz), dtype=np.float32))


NOISE_CHUNK = 4096  # rows drawn at a time by noise_row


def noise_row(index: int, nz: int, seed: int | tuple[int, ...]) -> torch.Tensor:
    """Row ``index`` of ``noise(index + 1, nz, seed)`` (nz), drawn a chunk of rows at a time so
    that a far index needs little memory: numpy fills rows in order, so the draws chunk by chunk
    are the draws at once."""
    rng = np.random.default_rng(seed)
    remaining = index + 1
    while remaining > 0:
        rows = rng.standard_normal((min(NOISE_CHUNK, remaining), nz), dtype=np.float32)
        remaining -= len(rows)
    return torch.from_numpy(rows[-1].copy())


def balanced_labels(n: int, num_classes: int, start: int = 0) -> torch.Tensor:
    """Class labels cycling through every class: image i gets class (start + i) mod num_classes."""
    return (torch.arange(start, start + n) % num_classes).long()


def chosen_label(label: int | str | None) -> int | str | None:
    """``label`` as asked for, or None (every class in turn) when it is missing or empty: the
    library, the CLI and the API read an empty category the same way."""
    return None if label is None or not str(label).strip() else label


# Latent vectors this many times as spread as in training are far outside what the generator
# learned, and its images saturate; the useful range is near 1 (docs/training.md, Temperature).
MAX_TEMPERATURE = 4.0


def check_temperature(temperature: float) -> float:
    """The latent temperature as a float, or a UsageError for one that is not above 0 and at most
    MAX_TEMPERATURE."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= MAX_TEMPERATURE:
        raise UsageError(
            f"The temperature must be above 0 and at most {MAX_TEMPERATURE:g} (1: as trained), not {temperature!r}."
        )
    return value
