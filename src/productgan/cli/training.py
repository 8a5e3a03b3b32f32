"""The commands that make a dataset and train on it: ``prepare``, and ``train`` (with ``--resume``).

Every field of the run configuration is a ``train`` flag (``--model.ngf 32``); ``--config
run.yaml`` and ``--print_config`` come from jsonargparse, and ``--preset NAME`` is laid under all
of them (``expand_preset``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal, Optional

import yaml
from jsonargparse import ArgumentParser

from productgan.cli.common import Command, Options, call, new_parser, parse
from productgan.config import (
    NO_PRESET,
    ConfigRefused,
    RunConfig,
    config_parser_mode,
    from_dict,
    preset_settings,
    read_config_file,
)
from productgan.data import prepare
from productgan.data.packed import INFO_FILE
from productgan.data.prepare import FASHION_MNIST
from productgan.data.source_kind import preset_for
from productgan.errors import UsageError
from productgan.train import resume, train

PREPARE = "pack a dataset once: decode, fit to the training size, split train / val / test"
TRAIN = "train a DCGAN and write a run directory"


def _prepare_parser() -> ArgumentParser:
    parser = new_parser("prepare", PREPARE)
    parser.add_argument(
        "source",
        type=str,
        help="A folder of product images (one sub-folder per class), 'fashion-mnist', or a folder "
        "holding the Fashion-MNIST idx files.",
    )
    parser.add_argument("--out", type=str, required=True, help="Folder to write the packed dataset to.")
    parser.add_argument(
        "--size",
        "--image_size",
        dest="image_size",
        type=int,
        default=None,
        help="Training resolution: 32, 64, 128 or 256 (default 64 for image folders, 32 for Fashion-MNIST).",
    )
    parser.add_argument(
        "--split_seed",
        "--seed",
        dest="seed",
        metavar="SPLIT_SEED",
        type=int,
        default=None,
        help="Seed of the stratified split (default 0).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing packed dataset at --out.")
    parser.add_argument(
        "--val_size",
        type=int,
        default=None,
        help="Fashion-MNIST: validation images taken from its train set (default 5000).",
    )
    parser.add_argument(
        "--split",
        type=str,
        default=None,
        help="Image folders: train,val,test fractions, stratified by class (default 0.8,0.1,0.1).",
    )
    parser.add_argument(
        "--channels", type=Optional[Literal[1, 3]], default=None, help="Image folders: 3 for RGB (default), 1 for grey."
    )
    parser.add_argument(
        "--fit",
        type=Optional[Literal["pad", "crop"]],
        default=None,
        help="Image folders: pad to a square with the background (default; keeps the whole product) or centre crop.",
    )
    parser.add_argument(
        "--background",
        type=str,
        default=None,
        help="Image folders: colour for padding and transparent pixels: white (default), black, "
        "grey, #RRGGBB or R,G,B.",
    )
    # labels=None, not True, when the switch is absent: prepare refuses folder options given for
    # Fashion-MNIST, and only the switch counts as given.
    parser.add_argument(
        "--no_labels",
        dest="labels",
        action="store_const",
        const=False,
        default=None,
        help="Image folders: ignore sub-folders and put every image in one class.",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Image folders: decoding processes (default: the CPUs, at most 8)."
    )
    parser.add_argument(
        "--licence",
        "--license",
        dest="licence",
        type=Optional[str],
        default=None,
        help="Image folders: the images' licence (such as 'CC BY 4.0'), recorded for the model cards of "
        "generators trained on them (default: not recorded; Fashion-MNIST records its own, MIT).",
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    return parser


def run_prepare(args: list[str]) -> int:
    with parse(_prepare_parser(), args) as options:
        out = call(prepare, options)
    _print_dataset_summary(out)
    return 0


def _print_dataset_summary(out: Path) -> None:
    info = json.loads((Path(out) / INFO_FILE).read_text())
    meta, sizes = info["meta"], info["split_sizes"]
    shape = info["shape"]
    print(
        f"Packed dataset written to {out}: {shape[0]:,} images of {shape[3]}x{shape[2]}x{shape[1]}, "
        f"{len(info['class_names'])} class(es); train {sizes['train']:,} / val {sizes['val']:,} / "
        f"test {sizes['test']:,}."
    )
    skipped, dropped = meta.get("skipped") or [], meta.get("duplicates_dropped", 0)
    if skipped or dropped:
        print(
            f"Skipped {len(skipped)} file(s) or folder(s) and {dropped} exact duplicate(s); the reasons are listed in "
            f"{Path(out) / INFO_FILE}."
        )
    if meta.get("empty_class_folders"):
        print(f"Class folders with no usable image (left out): {', '.join(meta['empty_class_folders'])}.")


def _train_parser() -> ArgumentParser:
    # Every YAML it loads (--config, --model FILE, dict values) is checked before it is parsed.
    parser = config_parser_mode(new_parser("train", TRAIN))
    parser.add_argument("--config", action="config", help="A YAML file of options (flags given after it win).")
    # Here for --help only: a line with --resume and without --help is read by _resume_parser.
    parser.add_argument(
        "--resume",
        type=str,
        default=argparse.SUPPRESS,
        help="Continue the run in this directory; --steps/--images/--minutes give the new total.",
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    parser.add_class_arguments(RunConfig, nested_key=None)
    return parser


def _resume_parser() -> ArgumentParser:
    parser = new_parser("train", TRAIN)
    parser.add_argument("--resume", dest="run_dir", type=str, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def _options(args: list[str], name: str) -> list[str]:
    """Every value given to ``--name`` in ``args``, in order."""
    values = []
    for i, token in enumerate(args):
        if token == f"--{name}" and i + 1 < len(args):
            values.append(args[i + 1])
        elif token.startswith(f"--{name}="):
            values.append(token.partition("=")[2])
    return values


def _option(args: list[str], name: str) -> str | None:
    """The value given to ``--name`` in ``args`` (the last one wins), or None."""
    values = _options(args, name)
    return values[-1] if values else None


# The options of train that take a YAML file (or YAML text) for jsonargparse to load.
_FILE_OPTIONS = ("config", "model", "loss", "optim", "train")


def check_yaml_given(args: list[str]) -> None:
    """Refuse a file given to --config (or to --model, --loss, --optim, --train) whose YAML
    ``productgan.config.load_config_yaml`` refuses (anchors, aliases, deep nesting), naming the
    file, before jsonargparse reads any of it; the parser's own loader (``config_parser_mode``)
    refuses the same without naming it, and ``common.parse`` checks the values on the line."""
    for name in _FILE_OPTIONS:
        for value in _options(args, name):
            try:
                if Path(value).expanduser().is_file():
                    read_config_file(Path(value).expanduser())
            except ConfigRefused as error:
                raise UsageError(f"The file {value} given to --{name} is refused: {error}.")
            except (OSError, ValueError, yaml.YAMLError):
                pass  # not a file (inline YAML, a name too long for one) or unreadable: jsonargparse says which


def expand_preset(args: list[str]) -> tuple[list[str], str | None]:
    """``--preset NAME`` -> ``--config=<preset_settings(NAME) as JSON>`` at the front of the line:
    the preset rule (``productgan.config.presets``), with jsonargparse laying every later
    --config file and flag over it, wherever they are written (``--data shop --preset
    products-64`` trains on shop).

    Without --preset or --config, the recipe measured best for the data goes first
    (``preset_for``); ``--preset none`` keeps the plain defaults. Returns the arguments and the
    name of a preset chosen by the data, if any."""
    chosen = None
    if _option(args, "preset") is None and _option(args, "config") is None and "--print_config" not in args:
        chosen = preset_for(_option(args, "data") or FASHION_MNIST, _option(args, "image_size"))
        args = ["--preset", chosen, *args] if chosen else args
    presets, rest, tokens = [], [], iter(args)
    for token in tokens:
        if token == "--preset" or token.startswith("--preset="):
            name = token.partition("=")[2] if "=" in token else next(tokens, "")
            if name != NO_PRESET:
                presets.append("--config=" + json.dumps(preset_settings(name)))
        else:
            rest.append(token)
    return [*presets, *rest], chosen


def read_train_options(args: list[str]) -> tuple[Options, str | None]:
    """The options of ``productgan train ARGS`` (not resuming), and the preset the data chose."""
    check_yaml_given(args)
    expanded, chosen = expand_preset(args)
    return parse(_train_parser(), expanded), chosen


def run_config(options: Options) -> RunConfig:
    """The run configuration in the options of ``train``: one option per field."""
    return from_dict(RunConfig, {field.name: getattr(options, field.name) for field in dataclasses.fields(RunConfig)})


def run_train(args: list[str]) -> int:
    if any(a == "--resume" or a.startswith("--resume=") for a in args) and not any(a in ("-h", "--help") for a in args):
        check_yaml_given(args)  # jsonargparse reads a value given for a number as YAML
        try:
            options = parse(_resume_parser(), args)
        except argparse.ArgumentError as error:
            raise UsageError(
                f"{error}; with --resume only --steps, --images and --minutes may be given, since the rest "
                f"comes from the run's config.yaml."
            )
        with options:
            summary = call(resume, options)
    else:
        options, chosen = read_train_options(args)
        if options.out is not None and not options.out.strip():
            raise UsageError(
                f"--out {options.out!r} names no folder; give the run directory to write, or leave --out out for "
                f"a new numbered run under runs/."
            )
        with options:
            if chosen:
                print(
                    f"Recipe: preset {chosen}, the measured best for this data (docs/presets.md); flags given "
                    f"override it, and --preset none trains the plain defaults.",
                    file=sys.stderr,
                )
            summary = call(train, options, config=run_config(options))
    # Stopped by a signal: saved and resumable, but unfinished, so a shell's `train && evaluate`
    # must not go on (under torchrun every rank says so, whichever got the signal).
    code = 128 + (summary.get("signal") or 2) if summary["stopped_by"] == "signal" else 0
    if not summary["is_main"]:
        return code  # under torchrun, rank 0 reports for all
    how = {
        "budget": "finished",
        "signal": "stopped by a signal",
        "early stop": "stopped early (validation no longer improving)",
    }[summary["stopped_by"]]
    print(
        f"Training {how} at step {summary['step']} ({summary['images_seen']:,} images, "
        f"{summary['elapsed_s'] / 60:.1f} min)."
    )
    print(f"Run directory:   {summary['run_dir']}")
    print(f"Sample grid:     {summary['samples']}")
    print(f"Generator:       {summary['export']}")
    if summary["stopped_by"] == "signal":
        print(f"Continue with:   productgan train --resume {summary['run_dir']} [--steps N]")
    return code


COMMANDS = [Command("prepare", PREPARE, run_prepare), Command("train", TRAIN, run_train)]
