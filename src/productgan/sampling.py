"""The generator pipeline: export, load, and sample images from a trained generator.

An export is a folder with ``model.safetensors`` and ``config.json``; the JSON holds everything
needed to rebuild the network and to turn its output into images at the dataset's native size,
so generate, evaluate and serve never touch the training code or a pickle.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from productgan.config import ModelConfig, from_dict, to_dict
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import replace_dir, save_tensors, staging_dir
from productgan.machine import check_memory
from productgan.models import Generator
from productgan.pixels import to_native, to_uint8

EXPORT_FORMAT = "productgan-generator"
EXPORT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
README_FILE = "README.md"  # the model card (productgan.model_card)
ONNX_FILE = "model.onnx"  # written on request by productgan.export_onnx


# Images a weight-averaged generator's BatchNorm statistics are measured on (``measure_statistics``),
# and in batches of how many.
STATISTICS_IMAGES, STATISTICS_BATCH = 2048, 256


@torch.no_grad()
def measure_statistics(generator: Generator, seed: int) -> Generator:
    """``generator`` with BatchNorm statistics of its own ("standing statistics", as in BigGAN):
    measured over STATISTICS_IMAGES of its samples in batches of STATISTICS_BATCH, balanced over
    the classes, noise from ``seed``. A weight average's statistics are copies of the live
    generator's, which fit the live weights rather than the averaged ones; measured ones scored
    higher recall and lower FID on every run tried (docs/training.md). The measurement runs on a
    contiguous copy, so a channels-last model in training and one rebuilt from its
    checkpoint get the same statistics; they are written into ``generator``'s own buffers, in
    place, as a captured CUDA graph needs."""
    work = copy.deepcopy(generator).to(memory_format=torch.contiguous_format).train()
    norms = nn.modules.batchnorm._BatchNorm
    pairs = [(a, b) for a, b in zip(generator.modules(), work.modules()) if isinstance(a, norms)]
    if not pairs:
        return generator
    device = next(work.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    for _, norm in pairs:
        norm.reset_running_stats()
        norm.momentum = None  # a plain mean over the batches
    classes = generator.num_classes
    for start in range(0, STATISTICS_IMAGES, STATISTICS_BATCH):
        z = torch.randn(STATISTICS_BATCH, generator.config.nz, device=device, generator=rng)
        work(z, balanced_labels(STATISTICS_BATCH, classes, start).to(device) if classes else None)
    for norm, measured in pairs:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            getattr(norm, name).copy_(getattr(measured, name))
    return generator


def pixel_range(model: ModelConfig) -> list[float]:
    """The value range of the generator's output, which real images are scaled to in training."""
    return [-1.0, 1.0] if model.g_output == "tanh" else [0.0, 1.0]


def export_generator(
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
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    tmp = staging_dir(out_dir)
    try:
        save_tensors(state, tmp / WEIGHTS_FILE, metadata={"format": EXPORT_FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if readme is not None:
            (tmp / README_FILE).write_text(readme(config), encoding="utf-8")
        return replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    candidates = [path / "generator", path] if path.is_dir() else [path.parent]
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
            return folder
    raise ProductganError(
        f"{path} holds no exported generator ({WEIGHTS_FILE} + {CONFIG_FILE}); pass a run directory "
        f"whose training has finished, or run `productgan export RUN_DIR` first."
    )


def load_generator(source: str | os.PathLike, device: str | torch.device = "cpu", temperature: float = 1.0) -> Sampler:
    """Rebuild an exported generator (no training code, no pickle) and wrap it in a Sampler."""
    device = resolve_device(device)
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
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ProductganError(
            f"The weights in {folder / WEIGHTS_FILE} do not match the architecture in {CONFIG_FILE} "
            f"({first_line(error, skip_headers=True)}); export the generator again from its run."
        )
    generator.eval().requires_grad_(False)
    return Sampler(generator.to(device), config, temperature)


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


def resolve_device(name: str | torch.device, flag: str = "--device") -> torch.device:
    """The device ``name`` means ("auto": a CUDA GPU when one is visible), or a UsageError when
    it is no device name or asks for a GPU this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"{flag} {name!r} is not a device; use cpu, cuda, cuda:N or auto.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {name} was asked for but no CUDA GPU is visible; use {flag} cpu.")
    return device


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


@dataclass
class Sampler:
    """Turns seeds into images: ``sampler(n=16, seed=7) -> uint8 N x C x H x W``.

    ``temperature`` scales the latent vectors (their standard deviation): 1 is what the
    generator was trained on; below 1 gives more typical images, above 1 more varied ones, at
    some cost in realism (README, "Temperature").
    """

    generator: Generator
    info: dict[str, Any]
    temperature: float = 1.0

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names") or [])

    @property
    def native_size(self) -> list[int]:
        return list(self.info.get("native_size") or [self.generator.image_size] * 2)

    @property
    def conditional(self) -> bool:
        return self.generator.num_classes > 0

    def class_index(self, label: int | str) -> int:
        """A class given by index or by name (case does not matter) -> its index."""
        names = self.class_names
        if not self.conditional:
            raise UsageError(
                "This generator is not class-conditional, so it cannot generate by category; "
                "train one with --model.conditional true."
            )
        text = str(label).strip()
        # A name wins over an index: retail category names are often numbers themselves.
        matches = [i for i, name in enumerate(names) if name.casefold() == text.casefold()]
        if matches:
            return matches[0]
        if re.fullmatch(r"-?[0-9]{1,9}", text):  # ASCII digits only: '²' or '¹⁰' are no index
            index = int(text)
            if not 0 <= index < self.generator.num_classes:
                raise UsageError(
                    f"Class index {index} is out of range; this generator has classes 0 to "
                    f"{self.generator.num_classes - 1} ({', '.join(names)})."
                )
            return index
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UsageError(f"Unknown class {shown!r}; this generator knows: {', '.join(names)}.")

    def labels(self, n: int, label: int | str | None = None) -> torch.Tensor | None:
        """The class of each of n images: all ``label``, or every class in turn (``label`` None
        or empty); None when the generator is unconditional."""
        label = chosen_label(label)
        if label is not None:
            return torch.full((n,), self.class_index(label), dtype=torch.long)
        return balanced_labels(n, self.generator.num_classes) if self.conditional else None

    def grid_columns(self, n: int, label: int | str | None = None) -> int | None:
        """Images per grid row: one column per class when every class is made in turn, else square."""
        classes = self.generator.num_classes
        return classes if self.conditional and chosen_label(label) is None and n > classes else None

    def latents(self, n: int, seed: int, temperature: float | None = None) -> torch.Tensor:
        """The n latent vectors of ``seed`` at ``temperature`` (the sampler's own when None)."""
        scale = self.temperature if temperature is None else check_temperature(temperature)
        if seed < 0:
            raise UsageError(f"The seed must be 0 or more, not {seed}.")
        z = noise(n, self.generator.config.nz, seed)
        return z if scale == 1.0 else z.mul_(scale)

    @torch.no_grad()
    def __call__(
        self,
        n: int,
        seed: int = 0,
        size: str = "native",
        batch_size: int = 256,
        label: int | str | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """n images for ``seed``; a conditional generator makes class ``label``, or every
        class in turn (image i is of class i mod the number of classes)."""
        if n < 1:
            raise ProductganError(f"the number of images must be at least 1, not {n}.")
        self.check_memory(n, size)
        labels = self.labels(n, label)
        return self.from_noise(self.latents(n, seed, temperature), size, batch_size, labels)

    def check_memory(self, n: int, size: str = "native") -> None:
        """One sentence, before any image is made, when ``n`` images at ``size`` (and the copy
        each output format makes of them) cannot fit in the memory that is free."""
        height, width = self.native_size if size == "native" else (self.generator.image_size,) * 2
        needed = 2 * n * self.generator.channels * height * width
        check_memory(needed, f"{n:,} images of {width}x{height}", "ask for fewer images at a time")

    @torch.no_grad()
    def from_noise(
        self, z: torch.Tensor, size: str = "native", batch_size: int = 256, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images for given latent vectors (N x nz) and, for a conditional generator, class
        labels (N; every class in turn when not given): uint8 N x C x H x W."""
        if size not in ("native", "training"):
            raise ProductganError(f"size must be 'native' or 'training', not {size!r}.")
        n = len(z)
        if self.conditional and labels is None:
            labels = balanced_labels(n, self.generator.num_classes)
        chunks = []
        for start in range(0, n, batch_size):
            batch_labels = None if labels is None else labels[start : start + batch_size].to(self.device)
            images = self.generator(z[start : start + batch_size].to(self.device), batch_labels).float()
            if size == "native":
                images = to_native(images, self.info)
            chunks.append(to_uint8(images, self.info["pixel_range"]).cpu())
        return torch.cat(chunks)
