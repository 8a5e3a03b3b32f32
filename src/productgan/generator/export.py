"""The export format: a folder of ``model.safetensors`` and ``config.json``.

The JSON holds everything needed to rebuild the network and to turn its output into images at the
dataset's native size, so generate, evaluate and serve never touch the training code or a pickle.
``write_export`` and ``read_export`` are the pair; ``Sampler.save_pretrained`` and
``Sampler.from_pretrained`` (``load_generator``) call them, and a run's generator/ is written by
the run layer (``run.export_final``, ``run.export_run``).

``write_export`` builds the folder in ``files.staging_dir`` and puts it in place as a whole
(``files.replace_dir``):

- model.safetensors: the generator's state dict, metadata ``{"format": "productgan-generator"}``.
- config.json: ``format`` (EXPORT_FORMAT), ``version`` (EXPORT_VERSION), ``model`` (every
  ``ModelConfig`` field), ``image_size``, ``channels``, ``num_classes``, ``pixel_range``, then
  the caller's ``info`` (for a run, ``run.export_info``: ``class_names``, the fit fields the
  dataset records (``native_size``, ``fit``, ``padded_size``, ``pad``, ``background``),
  ``dataset`` (its source), ``split_sizes`` (and ``unlabelled_images`` for a mixed-label train
  split), ``licence``, ``step``, ``images_seen``, ``ema``,
  ``seed``), and last ``weights_sha256``, the SHA-256 of model.safetensors.
- README.md: the model card (generator/card.py), when a ``readme`` is given.
- model.onnx: only on request, written beside the others later (generator/onnx.py).

``read_export`` finds the folder (``find_export``: a run folder, the export folder or its
model.safetensors), checks ``format``, then every field against ``_EXPORT_FIELDS`` and the
model's settings by the type of their defaults (``_config_problem``), so that a bad field is
named before anything is built; it then checks the weights against ``weights_sha256`` (an export
written before the field was recorded has none, and loads unchecked), builds the ``Generator``,
loads the weights strictly and refuses NaN or infinite ones, which would give blank images.
``write_export`` refuses those too.
How an image is named from an export (seed, index, class, temperature): generator/latents.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from productgan.config import ModelConfig, from_dict, to_dict
from productgan.errors import ProductganError, first_line
from productgan.files import file_sha256, replace_dir, save_tensors, staging_dir
from productgan.models import Generator

EXPORT_FORMAT = "productgan-generator"
EXPORT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
README_FILE = "README.md"  # the model card (generator/card.py)
ONNX_FILE = "model.onnx"  # written on request (generator/onnx.py)
DIRECTIONS_FILE = "directions.json"  # written by `productgan directions` (generator/directions.py)
# The sub-folder of a run folder that holds its export: the run layer names it (run.GENERATOR_DIR)
# from here, so that loading from a run folder needs no run code.
EXPORT_FOLDER = "generator"


def pixel_range(model: ModelConfig) -> list[float]:
    """The value range of the generator's output, which real images are scaled to in training."""
    return [-1.0, 1.0] if model.g_output == "tanh" else [0.0, 1.0]


def write_export(
    generator: Generator,
    out_dir: str | os.PathLike,
    info: dict[str, Any],
    readme: Callable[[dict[str, Any]], str] | None = None,
) -> Path:
    """Write ``generator`` and its description to ``out_dir`` (replaced atomically as a whole).

    ``info`` carries the dataset facts the sampler needs: class_names, native_size, fit and pad
    (see the packed dataset's meta), plus provenance (step, images_seen, ema, dataset).
    ``readme``, given the export's config.json as a dict, returns the model card, which goes
    into the same folder swap as README.md.
    """
    out_dir = Path(out_dir)
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    bad = _non_finite(state)
    if bad:
        raise ProductganError(
            f"The generator's weights hold NaN or infinite values (in {bad}), which give blank images, so they are "
            f"not exported to {out_dir}; export an earlier checkpoint, or train again with a lower learning rate."
        )
    config = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model": to_dict(generator.config),
        "image_size": generator.image_size,
        "channels": generator.channels,
        "num_classes": generator.num_classes,
        "pixel_range": pixel_range(generator.config),
        **info,
    }
    tmp = staging_dir(out_dir)
    try:
        save_tensors(state, tmp / WEIGHTS_FILE, metadata={"format": EXPORT_FORMAT})
        config["weights_sha256"] = file_sha256(tmp / WEIGHTS_FILE)  # last: no info given can replace it
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if readme is not None:
            (tmp / README_FILE).write_text(readme(config), encoding="utf-8")
        _keep_directions(out_dir, tmp, config["weights_sha256"])
        return replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _keep_directions(old: Path, new: Path, weights_sha256: str) -> None:
    """Carry the directions measured on these same weights (generator/directions.py) into the new
    export; directions of other weights are left behind with the old folder."""
    try:
        text = (old / DIRECTIONS_FILE).read_text()
        recorded = json.loads(text).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return
    if recorded == weights_sha256:
        (new / DIRECTIONS_FILE).write_text(text)


def _non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor of ``state`` holding NaN or an infinity, or None."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def build_generator(description: dict[str, Any]) -> Generator:
    """An untrained generator of the architecture ``description`` names: an export's config.json,
    or the same fields taken from a checkpoint (model settings, image_size, channels, num_classes)."""
    model = from_dict(ModelConfig, description["model"])
    return Generator(model, description["image_size"], description["channels"], description.get("num_classes", 0))


def find_export(source: str | os.PathLike) -> Path:
    """A run directory, an export folder, or its model.safetensors -> the export folder."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ProductganError(f"{path} does not exist; pass a run directory or an exported generator folder.")
    candidates = [path / EXPORT_FOLDER, path] if path.is_dir() else [path.parent]
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
            return folder
    raise ProductganError(
        f"{path} holds no exported generator ({WEIGHTS_FILE} + {CONFIG_FILE}); pass a run directory "
        f"whose training has finished, or run `productgan export RUN_DIR` first."
    )


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def _int_list(value: Any, length: int, least: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(_is_int(v, least) for v in value)


# The fields of an export's config.json other than the model, each with a check and what it should hold.
_EXPORT_FIELDS: dict[str, tuple[bool, Any, str]] = {  # name: (required, check, what belongs)
    "model": (True, lambda v: isinstance(v, dict), "an object of the model's settings"),
    "image_size": (True, lambda v: _is_int(v, 1), "a whole number of pixels"),
    "channels": (True, lambda v: v in (1, 3) and not isinstance(v, bool), "1 or 3"),
    "num_classes": (False, lambda v: _is_int(v, 0), "a whole number of 0 or more"),
    "pixel_range": (
        True,
        lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)) and v[0] < v[1],
        "a list of two numbers, low then high",
    ),
    "class_names": (False, lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
    "native_size": (False, lambda v: _int_list(v, 2, 1), "a list of two sizes in pixels"),
    "padded_size": (False, lambda v: _int_list(v, 2, 1), "a list of two sizes in pixels"),
    "pad": (False, lambda v: _int_list(v, 4, 0), "a list of four margins in pixels"),
    "weights_sha256": (
        False,
        lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
        f"the SHA-256 of {WEIGHTS_FILE} as 64 hex digits",
    ),
}


def _shown(value: Any, limit: int = 40) -> str:
    """A value from a file as JSON, cut short enough to quote in a sentence."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with the fields of an export's description (a phrase naming the field), or
    None: checked before anything is built from it, so that a bad field is named, not met later."""
    for name, (required, check, belongs) in _EXPORT_FIELDS.items():
        if name not in config:
            if required:
                return f"lacks the field {name!r}"
        elif not check(config[name]):
            return f"holds {_shown(config[name])} in the field {name!r}, where {belongs} belongs"
    defaults = to_dict(ModelConfig())
    for name, value in config["model"].items():
        default = defaults.get(name)
        if isinstance(default, bool):
            good, belongs = isinstance(value, bool), "true or false"
        elif isinstance(default, int):  # every whole-number setting of the model counts something
            good, belongs = _is_int(value, 1), "a whole number of 1 or more"
        elif isinstance(default, float):
            good, belongs = _is_number(value), "a number"
        elif isinstance(default, str):
            good, belongs = isinstance(value, str), "a name"
        else:  # an unknown setting: from_dict names it
            continue
        if not good:
            return f"holds {_shown(value)} in the field {name!r} of 'model', where {belongs} belongs"
    return None


def read_export(source: str | os.PathLike) -> tuple[Generator, dict[str, Any]]:
    """The generator an export holds (on the CPU, in eval mode, without gradients) and its
    config.json, every field checked before anything is built from it. ``source``: a run
    directory, an export folder or its model.safetensors."""
    folder = find_export(source)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ProductganError(f"{folder / CONFIG_FILE} is not readable JSON ({error}); export the generator again.")
    found = config.get("format") if isinstance(config, dict) else type(config).__name__
    if found != EXPORT_FORMAT:
        raise ProductganError(
            f"{folder} is not a productgan generator export ({CONFIG_FILE} says {found!r}, "
            f"not {EXPORT_FORMAT!r}); export the generator again."
        )
    problem = _config_problem(config)
    if problem:
        raise ProductganError(f"{folder / CONFIG_FILE} {problem}; export the generator again from its run.")
    try:
        generator = build_generator(config)
    except (KeyError, TypeError, ValueError) as error:
        raise ProductganError(f"{folder / CONFIG_FILE} does not describe a generator this version can build ({error}).")
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except Exception as error:  # safetensors raises its own types for damaged files
        raise ProductganError(
            f"{folder / WEIGHTS_FILE} cannot be read ({first_line(error)}); it is damaged or "
            f"not a safetensors file: export the generator again from its run."
        )
    # After reading it, so that a file safetensors cannot read is named as such, not as a changed one.
    recorded = config.get("weights_sha256")
    if recorded is not None and file_sha256(folder / WEIGHTS_FILE) != recorded:
        raise ProductganError(
            f"{folder / WEIGHTS_FILE} is not the file that was exported (its SHA-256 differs from the one "
            f"{CONFIG_FILE} records), so it was changed or damaged since; export the generator again from its run."
        )
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ProductganError(
            f"The weights in {folder / WEIGHTS_FILE} do not match the architecture in {CONFIG_FILE} "
            f"({first_line(error, skip_headers=True)}); export the generator again from its run."
        )
    bad = _non_finite(state)
    if bad:
        raise ProductganError(
            f"{folder / WEIGHTS_FILE} holds NaN or infinite weights (in {bad}), which give blank images; export the "
            f"generator again from a checkpoint trained before they appeared."
        )
    return generator.eval().requires_grad_(False), config
