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
from productgan.config.records import (
    ConfigRefused,
    check_config_values,
    check_config_yaml,
    config_parser_mode,
    from_dict,
    load_config_yaml,
    parse_config,
    read_config_file,
    to_dict,
)
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
    AUGMENT_MODES,
    AUGMENT_POLICIES,
    AUGMENT_TARGET,
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
    "AUGMENT_MODES",
    "AUGMENT_TARGET",
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
    "ConfigRefused",
    "DataKind",
    "DatasetFacts",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_config_values",
    "check_config_yaml",
    "check_image_size",
    "check_pack",
    "check_seed",
    "config_parser_mode",
    "from_dict",
    "load_config_yaml",
    "measured_preset",
    "parse_config",
    "parse_policy",
    "preset_settings",
    "preset_values",
    "read_config_file",
    "resolve",
    "target_steps",
    "to_dict",
]
