"""Presets: named configurations, each chosen by measurement (README, "Presets"), and the rule
that picks the one measured best for a kind of data.

The one rule for a preset, on the command line and in Python alike: a preset is the first layer
over the defaults, and everything given explicitly wins over it. ``preset_settings(name, given)``
is that rule, and both callers use it:

- ``productgan train --preset NAME`` puts ``preset_settings(NAME)`` first on the line as a
  ``--config`` (``productgan.cli.training``), so a ``--config`` file and every flag, written
  before or after ``--preset``, are laid over it by jsonargparse;
- Python builds a run's config as ``from_dict(RunConfig, preset_settings(NAME, given))``, with
  ``given`` the settings it sets itself (nested like ``RunConfig``).

Either way the run records the preset's name (``RunConfig.preset``); ``none`` is no preset.

Which preset fits which data is decided here as a pure function of plain facts
(``measured_preset(kind, image_size)``); what a data source holds is read in the data tier
(``productgan.data.source_kind``), which this tier may not import.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from productgan.errors import UsageError

# A preset sets only what it names.
PRESETS: dict[str, dict[str, Any]] = {
    "fmnist-32": {
        "data": "fashion-mnist",
        "batch_size": 128,
        "model": {"conditional": True, "ndf": 32},
        "optim": {"lr_g": 8e-4, "lr_d": 8e-4, "beta2": 0.99},
        # Measured without augmentation, as runs on 55,000 images were trained before adaptive
        # augmentation became the default; kept so until a measurement says otherwise.
        "train": {"augment": "off"},
    },
    "products-64": {
        "image_size": 64,
        "model": {"conditional": True},
        # Adaptive beat every-image augmentation at 50, 200 and 800 photos a category (docs/presets.md).
        "train": {"augment": "auto"},
    },
    "products-128": {
        "image_size": 128,
        "model": {"conditional": True},
        # Measured with every image augmented; adaptive augmentation is not yet measured at 128x128.
        "train": {"augment": "on"},
    },
}
NO_PRESET = "none"  # --preset none: the plain defaults

# What a data source holds, as far as choosing a recipe goes: Fashion-MNIST (the built-in source,
# its idx files or a packed copy), or product photos (a folder of them or a packed photo dataset).
DataKind = Literal["fashion-mnist", "photos"]

# The preset measured best per kind of data and training size; where none was measured, a run
# keeps the plain defaults.
MEASURED_BEST: dict[tuple[DataKind, int], str] = {
    ("fashion-mnist", 32): "fmnist-32",
    ("photos", 64): "products-64",
    ("photos", 128): "products-128",
}


def preset_values(name: str) -> dict[str, Any]:
    """The values preset ``name`` sets, or a UsageError naming the presets there are."""
    if name not in PRESETS:
        raise UsageError(f"Unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
    return PRESETS[name]


def preset_settings(name: str | None, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of a run started from preset ``name`` (None or 'none': no preset) with
    ``given`` laid over it, section by section: nested plain values for
    ``from_dict(RunConfig, ...)`` or a ``--config``, the preset's name recorded in ``preset``.
    An unknown name is a UsageError naming the presets there are."""
    base = {} if name in (None, NO_PRESET) else {**copy.deepcopy(preset_values(name)), "preset": name}
    return _laid_over(base, given or {})


def _laid_over(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with every value of ``top`` set, nested sections merged rather than replaced."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = _laid_over(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def measured_preset(kind: DataKind, image_size: int) -> str | None:
    """The preset measured best for data of ``kind`` trained at ``image_size``, or None where
    none was measured (the plain defaults)."""
    return MEASURED_BEST.get((kind, image_size))
