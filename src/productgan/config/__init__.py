"""Typed configuration for a training run: the lowest tier, importing nothing of productgan but
its errors.

Plain dataclasses, no torch: the CLI builds them from defaults, a preset, a YAML file and flags
(in that order), and the resolved result is written as ``config.yaml`` into every run directory,
enough to rebuild the run. ``settings.py`` holds the sections and their constants,
``presets.py`` the named configurations and the one rule for using them, ``resolve.py`` the
checks and the defaults filled from them, ``records.py`` the config as plain values and back.
Everything public is importable from ``productgan.config``.
"""

from productgan.config.presets import (
    MEASURED_BEST,
    NO_PRESET,
    PRESETS,
    DataKind,
    measured_preset,
    preset_settings,
    preset_values,
)
from productgan.config.records import from_dict, parse_config, to_dict
from productgan.config.resolve import (
    DatasetFacts,
    check_image_size,
    check_pack,
    check_seed,
    parse_policy,
    resolve,
    target_steps,
)
from productgan.config.settings import (
    AUGMENT_BELOW,
    AUGMENT_POLICIES,
    DEFAULT_STEPS,
    IMAGE_SIZES,
    LOSS_OPTIM_DEFAULTS,
    MIN_GENERATED,
    MIN_REFERENCE,
    Activation,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)

__all__ = [
    "AUGMENT_BELOW",
    "AUGMENT_POLICIES",
    "DEFAULT_STEPS",
    "IMAGE_SIZES",
    "LOSS_OPTIM_DEFAULTS",
    "MEASURED_BEST",
    "MIN_GENERATED",
    "MIN_REFERENCE",
    "NO_PRESET",
    "PRESETS",
    "Activation",
    "DataKind",
    "DatasetFacts",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_image_size",
    "check_pack",
    "check_seed",
    "from_dict",
    "measured_preset",
    "parse_config",
    "parse_policy",
    "preset_settings",
    "preset_values",
    "resolve",
    "target_steps",
    "to_dict",
]
