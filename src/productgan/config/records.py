"""A configuration as plain values and back: ``to_dict`` for YAML and JSON, ``from_dict`` to
rebuild the dataclasses, ``parse_config``, which reads a recorded config.yaml as strictly as
``--config`` on the command line, and ``load_config_yaml``, the one reader of a configuration's
YAML text.

``load_config_yaml`` looks at the text's tokens before anything is built from it, and refuses
anchors and aliases (a few hundred bytes of nested aliases expand without end), nesting deeper
than ``MAX_CONFIG_DEPTH`` (the parser recurses once a level) and more than ``MAX_CONFIG_CHARS``.
A run's config.yaml is read through it (``read_config_file``), and so is every file jsonargparse
loads for a parser in ``CONFIG_MODE`` (``--config``, ``--model FILE``): ``config_parser_mode`` puts
a parser in that mode. jsonargparse reads a string given for a number, a switch or a dict as YAML
again with a loader of its own, so ``check_config_values`` refuses such strings among the values
(``load_config_yaml`` and ``parse_config`` call it; cli/training.py on the command line's words).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import yaml
from jsonargparse import ArgumentError, ArgumentParser, get_loader, set_loader

from productgan.config.settings import RunConfig

# A config.yaml is a few kilobytes, three levels deep (four in train.precision_measured).
MAX_CONFIG_CHARS = 200_000
MAX_CONFIG_DEPTH = 20
CONFIG_MODE = "productgan-yaml"  # the jsonargparse parser mode whose loader is load_config_yaml

# PyYAML's own scanner, not libyaml's: the same answer with or without libyaml (which stops at
# 1000 levels with a message of its own), and a fifth of a second for the longest text allowed.
_SCANNER = yaml.SafeLoader
# A string inside the values is read again by jsonargparse's loader, libyaml's when there is one:
# scanned by the same, so that what it cannot scan is known not to expand.
_VALUE_SCANNER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class ConfigRefused(yaml.YAMLError):
    """A configuration's YAML refused before it is parsed; the message is a clause ('it uses ...')."""


def check_config_yaml(text: str, scanner: type = _SCANNER) -> None:
    """Raise ConfigRefused when ``text`` is longer than MAX_CONFIG_CHARS, uses an anchor or an
    alias, or nests deeper than MAX_CONFIG_DEPTH; read token by token, nothing is built."""
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigRefused(
            f"it holds {len(text):,} characters, more than the {MAX_CONFIG_CHARS:,} a configuration may"
        )
    depth = 0
    for token in yaml.scan(text, Loader=scanner):
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            kind, mark = ("anchor", "&") if isinstance(token, yaml.AnchorToken) else ("alias", "*")
            raise ConfigRefused(
                f"it uses the YAML {kind} {mark}{token.value[:20]}, and a configuration may hold no anchors or aliases"
            )
        if isinstance(token, _OPENS):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigRefused(
                    f"it nests values more than {MAX_CONFIG_DEPTH} levels deep, where a run's settings go 4"
                )
        elif isinstance(token, _CLOSES):
            depth -= 1


def check_config_values(values: Any) -> None:
    """Raise ConfigRefused when a string among ``values`` (nested lists and dicts, or the words of a
    command line) is YAML that ``check_config_yaml`` refuses: jsonargparse reads a string given
    for a number, a switch or a dict as YAML once more, with a loader of its own. A string that is
    not YAML at all cannot be expanded, so it is left to the type checks."""
    pending = [values]
    while pending:  # a stack, not recursion: values built in code may nest deeper than YAML may
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend([*value.keys(), *value.values()])
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                check_config_yaml(value, _VALUE_SCANNER)
            except ConfigRefused:
                raise
            except yaml.YAMLError:
                pass


def load_config_yaml(text: str, loader: Callable[[str], Any] = yaml.safe_load) -> Any:
    """The values of a configuration's YAML ``text``, checked by ``check_config_yaml`` before
    ``loader`` parses it; yaml.YAMLError (ConfigRefused for a refusal) when it cannot be read."""
    check_config_yaml(text)
    values = loader(text)
    check_config_values(values)
    return values


def read_config_file(path: str | os.PathLike) -> Any:
    """The values of the configuration YAML file at ``path`` (read no further than a
    configuration may be long); OSError, UnicodeDecodeError or yaml.YAMLError when it cannot be."""
    with open(path, encoding="utf-8") as file:
        return load_config_yaml(file.read(MAX_CONFIG_CHARS + 1))


# jsonargparse's own YAML loader, with its readings of numbers, behind the same check.
_jsonargparse_yaml = get_loader("yaml")
set_loader(CONFIG_MODE, lambda text: load_config_yaml(text, _jsonargparse_yaml), exceptions=(yaml.YAMLError,))


def config_parser_mode(parser: ArgumentParser) -> ArgumentParser:
    """``parser``, reading every YAML it loads (config files, dict values) with ``load_config_yaml``."""
    parser.parser_mode = CONFIG_MODE
    return parser


def parse_config(values: Any) -> RunConfig:
    """A recorded configuration (a config.yaml's contents) read as strictly as ``--config`` on
    the command line: every key known, every value of its field's type or one of its choices.
    Anything else is a ValueError that names the key."""
    if not isinstance(values, dict):
        raise ValueError(f"it holds {type(values).__name__}, not the run's settings")
    try:
        check_config_values(values)
    except ConfigRefused as error:
        raise ValueError(f"a value of it is refused: {error}")
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
    parser = config_parser_mode(ArgumentParser(exit_on_error=False, default_env=False))
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
