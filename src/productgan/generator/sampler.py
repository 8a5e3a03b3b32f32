"""The Sampler: a trained generator as a pipeline, ``sampler(n=16, seed=7, label="Sneaker")``.

``Sampler.from_pretrained`` loads an export (``load_generator`` is the same call) and
``save_pretrained`` writes one; the format itself is generator/export.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from productgan.data.pixels import to_native, to_uint8
from productgan.errors import ProductganError, UsageError
from productgan.generator.directions import Directions, parse_edits, read_directions
from productgan.generator.export import find_export, read_export, write_export
from productgan.generator.latents import balanced_labels, check_temperature, chosen_label, noise
from productgan.machine import check_memory
from productgan.models import Generator

# The fields of an export's config.json that write_export derives from the generator itself.
DERIVED_FIELDS = (
    "format",
    "version",
    "model",
    "image_size",
    "channels",
    "num_classes",
    "pixel_range",
    "weights_sha256",
)


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
    directions: Directions | None = None  # measured by `productgan directions RUN` (generator/directions.py)

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, device: str | torch.device = "cpu", temperature: float = 1.0
    ) -> Sampler:
        """The generator exported at ``source`` (a run directory, an export folder or its
        model.safetensors) on ``device``, checked field by field before it is built."""
        device = resolve_device(device)
        generator, config = read_export(source)
        return cls(generator.to(device), config, temperature, read_directions(find_export(source), config))

    def save_pretrained(
        self, out_dir: str | os.PathLike, readme: Callable[[dict[str, Any]], str] | None = None
    ) -> Path:
        """Write this generator as an export to ``out_dir`` (replaced as a whole); ``from_pretrained``
        of the result gives the same images."""
        info = {key: value for key, value in self.info.items() if key not in DERIVED_FIELDS}
        folder = write_export(self.generator, out_dir, info, readme)
        if self.directions is not None:  # measured on these same weights, so still theirs
            self.directions.save(folder)
        return folder

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
        edit: str | None = None,
    ) -> torch.Tensor:
        """n images for ``seed``; a conditional generator makes class ``label``, or every
        class in turn (image i is of class i mod the number of classes); ``edit`` moves each
        along the generator's directions (``size=+1,hue=-0.5``)."""
        if n < 1:
            raise ProductganError(f"the number of images must be at least 1, not {n}.")
        edits = parse_edits(edit)
        if edits:
            self.require_directions().check(edits)
        self.check_memory(n, size)
        labels = self.labels(n, label)
        z = self.edit(self.latents(n, seed, temperature), edits, labels)
        return self.from_noise(z, size, batch_size, labels)

    def require_directions(self) -> Directions:
        """The generator's measured directions, or one sentence saying how to measure them."""
        if self.directions is None:
            raise UsageError(
                "This generator has no measured directions yet; run `productgan directions RUN` once (about a "
                "minute on a CPU), then edit, steer and make colourways."
            )
        return self.directions

    def edit(self, z: torch.Tensor, edit: str | tuple | None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` moved by the edits ``edit`` names (``size=+1,hue=-0.5``; generator/directions.py),
        each row alone, so an image is edited the same in any batch."""
        edits = edit if isinstance(edit, tuple) else parse_edits(edit)
        if not edits:
            return z
        return self.require_directions().edit(z, edits, labels)

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


def load_generator(source: str | os.PathLike, device: str | torch.device = "cpu", temperature: float = 1.0) -> Sampler:
    """Rebuild an exported generator (no training code, no pickle) and wrap it in a Sampler:
    ``Sampler.from_pretrained``."""
    return Sampler.from_pretrained(source, device, temperature)
