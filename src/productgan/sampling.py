"""Deprecated: the old import path of the Sampler and the export format, kept for one release.

Import from ``productgan`` (``load_generator``, ``Sampler``) or from ``productgan.generator``'s
modules instead; CHANGELOG.md lists where each name went.
"""

import warnings

from productgan.generator.export import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ONNX_FILE,
    README_FILE,
    WEIGHTS_FILE,
    build_generator,
    find_export,
    pixel_range,
)
from productgan.generator.export import write_export as export_generator
from productgan.generator.latents import (
    MAX_TEMPERATURE,
    balanced_labels,
    check_temperature,
    chosen_label,
    noise,
    noise_row,
)
from productgan.generator.sampler import Sampler, load_generator, resolve_device
from productgan.generator.statistics import measure_statistics

warnings.warn(
    "productgan.sampling is deprecated and goes in the next release: import load_generator and Sampler "
    "from productgan, the rest from productgan.generator.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "CONFIG_FILE",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MAX_TEMPERATURE",
    "ONNX_FILE",
    "README_FILE",
    "WEIGHTS_FILE",
    "Sampler",
    "balanced_labels",
    "build_generator",
    "check_temperature",
    "chosen_label",
    "export_generator",
    "find_export",
    "load_generator",
    "measure_statistics",
    "noise",
    "noise_row",
    "pixel_range",
    "resolve_device",
]
