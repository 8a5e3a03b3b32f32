"""A configuration as plain values and back: ``to_dict`` for YAML and JSON, ``from_dict`` to
rebuild the dataclasses, and ``parse_config``, which reads a recorded config.yaml as strictly as
``--config`` on the command line."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser

from productgan.config.settings import RunConfig


def parse_config(values: Any) -> RunConfig:
    """A recorded configuration (a config.yaml's contents) read as strictly as ``--config`` on
    the command line: every key known, every value of its field's type or one of its choices.
    Anything else is a ValueError that names the key."""
    if not isinstance(values, dict):
        raise ValueError(f"it holds {type(values).__name__}, not the run's settings")
    for section in ("model", "loss", "optim", "train"):
        if section in values and not isinstance(values[section], dict):
            raise ValueError(f"{section}: must hold its settings, not {values[section]!r}")
    try:
        parsed = _config_parser().parse_object(values)
    except ArgumentError as error:
        raise ValueError(" ".join(str(error).split()).replace("Parser key ", ""))
    return from_dict(RunConfig, parsed.as_dict())


@functools.cache
def _config_parser() -> ArgumentParser:
    """The parser of RunConfig's fields (built once: it reads every field's type)."""
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(RunConfig, nested_key=None)
    return parser


def to_dict(config: Any) -> dict:
    """A dataclass as nested plain values, ready for YAML or JSON."""
    return dataclasses.asdict(config)


def from_dict(cls: type, values: dict) -> Any:
    """Rebuild a (nested) config dataclass from plain values; unknown keys are an error."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        sub = known[name].default_factory  # type: ignore[misc]
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            value = from_dict(sub, value)
        kwargs[name] = value
    return cls(**kwargs)
