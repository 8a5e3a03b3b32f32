"""What every command module shares: the ``Command`` record each registers, the parser every
command starts from, option spelling (``normalise``), the parsed ``Options``, the one helper that
calls a library function with them (``call``), and help texts used by several commands."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from jsonargparse import ArgumentParser, Namespace

from productgan.config import AUGMENT_MODES, ConfigRefused, check_config_values, config_parser_mode
from productgan.errors import UsageError
from productgan.machine import busy_elsewhere, usable_cpus

Result = TypeVar("Result")

# Short spellings of the switches people reach for most.
ALIASES = {
    "--conditional": "--model.conditional=true",
    "--no_conditional": "--model.conditional=false",
    "--no_augment": "--train.augment=off",
    "--tensorboard": "--train.tensorboard=true",
}
# Short names of options that take a value: ``--init-from RUN`` is ``--train.init_from RUN``.
SHORT_NAMES = {"--init_from": "--train.init_from", "--freeze_d": "--train.freeze_d"}

SOURCE_HELP = "A run directory or an exported generator folder."
REF_HELP = (
    "An image: SEED:INDEX[:CLASS][@TEMPERATURE] (image INDEX of `generate --seed SEED`, e.g. 7:3 or "
    "7:3:Sneaker@0.8), a variant (7:3~0.5/0#2), an edited name (7:3^size=1) or a saved latent vector "
    "PATH.npy[:CLASS]."
)
DEVICE_HELP = "cpu, cuda or cuda:N."
CROP_HELP = (
    "'product': cut each image to its product's box (the pixels off the data's background) with a margin of a "
    "tenth of the box, so each PNG has its own size; 'none': the whole square."
)
BACKGROUND_HELP = (
    "'transparent': PNGs with an alpha channel, the data's background transparent (refused when this generator's "
    "backgrounds are not plain, measured on its own images); 'keep': opaque."
)
TEMPERATURE_HELP = (
    "Standard deviation of the latent vectors (1: as trained); above 1 gives more varied images, "
    "below 1 more typical ones."
)


@dataclass(frozen=True)
class Command:
    """One subcommand, as its module registers it in its ``COMMANDS``."""

    name: str  # productgan NAME
    help: str  # its line in `productgan --help`, and the description of `productgan NAME --help`
    handler: Callable[[list[str]], int]  # takes the normalised arguments after NAME, returns the exit code


def share_busy_cpus() -> int:
    """Run torch on one thread when other processes already keep the CPUs busy (measured now, as
    ``machine.busy_elsewhere``): its threads would wait for one another there, which cost
    training two thirds of its speed beside three busy neighbours on 2 cores. ``train`` decides by
    timing its own step instead (``train.calibration.choose_threads``). Returns the count used."""
    cpus = torch.get_num_threads()
    busy = busy_elsewhere(0.05) if cpus > 1 else None
    if busy is not None and busy >= usable_cpus() - 0.5:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def normalise(argv: list[str]) -> list[str]:
    """``--batch-size 8`` -> ``--batch_size 8``: dashes in option names become underscores; the
    ALIASES become what they stand for; ``--augment [auto|on|off]`` is ``--train.augment`` (on
    when no mode follows, as the switch it was before it took one)."""
    out = []
    tokens = iter(enumerate(argv))
    for i, token in tokens:
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token[2:].partition("=")
            token = "--" + name.replace("-", "_") + sep + value
            token = ALIASES.get(token, token)
            if token == "--augment":
                following = argv[i + 1] if i + 1 < len(argv) else ""
                token = f"--train.augment={following if following in AUGMENT_MODES else 'on'}"
                if following in AUGMENT_MODES:
                    next(tokens)
            elif token.startswith("--augment="):
                token = "--train.augment=" + value
            elif token.split("=", 1)[0] in SHORT_NAMES:
                token = SHORT_NAMES[token.split("=", 1)[0]] + token[len(token.split("=", 1)[0]) :]
        out.append(token)
    return out


def add_shared_options(
    parser: ArgumentParser, device: bool = True, overwrite: str | None = None, progress: str | None = None
) -> None:
    """The options many commands have: ``--device`` (when ``device``), ``--overwrite`` (when
    ``overwrite`` says what it replaces) and ``--no_progress`` (when ``progress`` says what goes)."""
    if device:
        parser.add_argument("--device", type=str, default="cpu", help=DEVICE_HELP)
    if overwrite:
        parser.add_argument("--overwrite", action="store_true", help=overwrite)
    if progress:
        parser.add_argument("--no_progress", action="store_true", help=progress)


def new_parser(name: str, help: str) -> ArgumentParser:
    """The parser of command ``name``, with the options every command has (``--debug``)."""
    parser = ArgumentParser(prog=f"productgan {name}", description=help, exit_on_error=False, default_env=False)
    config_parser_mode(parser)  # any YAML it reads (a dict value, a file) goes through the one checked reader
    parser.add_argument("--debug", action="store_true", help="Show tracebacks for errors.")
    return parser


# Parsed, but no command's to use: main reads --debug from the line, jsonargparse the --config files.
_NOT_FOR_COMMANDS = ("debug", "config", "__path__")


class Options:
    """A command's parsed options by name (``options.n``). Each remembers whether it was used,
    by ``call`` or read by the command; used as ``with options:``, leaving the block without
    an error checks that every option was, so an option that reaches no parameter (a flag whose
    name no longer matches the library's) fails loudly instead of doing nothing."""

    def __init__(self, namespace: Namespace) -> None:
        self._values = {k: v for k, v in namespace.as_dict().items() if k not in _NOT_FOR_COMMANDS}
        self._unused = set(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._values:
            raise AttributeError(f"no option {name!r}")
        self._unused.discard(name)
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def names(self) -> list[str]:
        return list(self._values)

    def for_parameter(self, name: str) -> tuple[bool, Any]:
        """(True, value) when an option gives parameter ``name``: the option ``name``, or a
        ``--no_NAME`` switch, which gives ``not no_NAME``; (False, None) when none does."""
        if name in self._values:
            return True, getattr(self, name)
        if f"no_{name}" in self._values:
            return True, not getattr(self, f"no_{name}")
        return False, None

    def __enter__(self) -> Options:
        return self

    def __exit__(self, error_type: type | None, *_: Any) -> None:
        if error_type is None and self._unused:
            raise TypeError(f"options that reached no parameter and were never read: {', '.join(sorted(self._unused))}")


def parse(parser: ArgumentParser, args: list[str]) -> Options:
    """``args`` read by ``parser``; a bad flag or value is an ArgumentError, which main reports. A
    value that is YAML the config reader refuses (anchors, aliases, deep nesting) is refused
    before jsonargparse reads it as YAML."""
    try:
        check_config_values(args)
    except ConfigRefused as error:
        raise UsageError(f"A value on the command line is refused: {error}.")
    return Options(parser.parse_args(args))


def call(function: Callable[..., Result], options: Options, /, **given: Any) -> Result:
    """``function`` called with the options named like its parameters: option ``x`` gives
    parameter ``x``, a ``--no_x`` switch gives ``x = not no_x``, and ``given`` holds values the
    command works out itself, which win over an option of the same name. A function that takes
    ``**kwargs`` also gets every option that none of its parameters names (as ``x`` for a
    ``--no_x`` switch). Nothing is dropped quietly: a value given for no parameter, or a
    required parameter with neither, is Python's TypeError, and ``with options:`` checks that
    every option was used."""
    parameters = inspect.signature(function).parameters
    arguments = {}
    takes_the_rest = False
    for name, parameter in parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            takes_the_rest = True
        elif parameter.kind is not parameter.VAR_POSITIONAL and name not in given:
            found, value = options.for_parameter(name)
            if found:
                arguments[name] = value
    if takes_the_rest:
        for option in options.names():
            name = option.removeprefix("no_")
            if name not in parameters and name not in given and name not in arguments:
                arguments[name] = options.for_parameter(name)[1]
    return function(**arguments, **given)
