"""Names of images: every way a point of the generator's input space is written, and read back.

An image of a generator is fixed by a point of its input space: a latent vector z and, for a
class-conditional generator, what conditions it (a class, or a blend of classes on a walk from one
category to another). Points come from

- a **name**, ``SEED:INDEX[:CLASS][@TEMPERATURE]``: image ``INDEX`` of ``productgan generate
  --seed SEED [--label CLASS] [--temperature T]``, pixel for pixel (``7:3``, ``7:3:Sneaker``,
  ``7:3:Sneaker@0.8``; without a class a conditional generator makes class INDEX mod the number
  of classes, as ``generate`` does when every class is made in turn);
- a **saved vector**, ``PATH.npy[:CLASS]``: a float32 vector of the generator's ``nz`` numbers,
  as ``save_latent``, ``productgan project`` and ``productgan variants --save-latents`` write;
- a **vector in the name itself**, ``z:BASE64[:CLASS]`` (``vector_name``): the nz float32 numbers,
  little-endian, in URL-safe base64, so that a web client can hand back a projected or varied
  vector without any file on the server;
- a **variant**, ``NAME~SPREAD/SEED#INDEX[:CLASS]`` (``VariantName``): variant INDEX of the image
  NAME names, as ``latent.variants(.., spread=SPREAD, seed=SEED)`` makes it (``7:3~0.5/0#2``,
  ``7:3:Bag@0.8~0.5/0#2``, and a variant of a variant, ``7:3~0.5/0#2~0.5/1#0``), made in CLASS
  when one follows;
- an **edit** of any of them, ``NAME^EDITS`` (``EditedName``): the point NAME names moved along the
  generator's measured directions, ``7:3:Sneaker^size=1,hue=-0.5`` (generator/directions.py; the
  edits apply in the order written, and an edited name can be varied and edited again).

``point(sampler, name)`` reads any of them; ``variant_names`` lists a variant family's names.
Rendering, walks and variants' images are ``explore/latent.py``.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from productgan.errors import UsageError
from productgan.files import write_atomic
from productgan.generator.directions import format_edits, parse_edits
from productgan.generator.latents import check_temperature, noise, noise_row
from productgan.generator.sampler import Sampler

MAX_VARIANTS = 1024

MAX_SEED = 2**63 - 1  # numpy's generators take any non-negative int; this bound keeps names parseable

MAX_INDEX = 1_000_000  # image INDEX of a seed needs INDEX + 1 vectors drawn first

# Variants half-way to another product of the category, in it 95% of the time (docs/explore.md).
DEFAULT_SPREAD = 0.5

_VARIANT = re.compile(
    r"(?P<base>.+)~(?P<spread>[0-9.eE+-]{1,32})/(?P<seed>[0-9]{1,19})#(?P<index>[0-9]{1,4})(?::(?P<label>[^~]*))?"
)

_NAME = re.compile(r"(?P<seed>[0-9]{1,19}):(?P<index>[0-9]{1,7})(?::(?P<label>.*?))?(?:@(?P<temperature>[^@:]*))?")


@dataclass(frozen=True)
class ImageName:
    """Image ``index`` of ``seed`` (of class ``label``, when given) at latent ``temperature``."""

    seed: int
    index: int
    label: str | None = None
    temperature: float = 1.0

    def __str__(self) -> str:
        text = f"{self.seed}:{self.index}"
        if self.label is not None:
            text += f":{self.label}"
        if self.temperature != 1.0:  # positional, never 1e-05: names are parsed by patterns too
            text += "@" + np.format_float_positional(self.temperature, trim="-")
        return text

    @classmethod
    def parse(cls, text: str) -> ImageName:
        """``SEED:INDEX[:CLASS][@TEMPERATURE]`` -> an ImageName, or a UsageError that says the form."""
        match = _NAME.fullmatch(str(text).strip())
        if not match:
            shown = text if len(str(text)) <= 40 else str(text)[:40] + "..."
            raise UsageError(
                f"{shown!r} names no image; write SEED:INDEX[:CLASS][@TEMPERATURE] (for example 7:3, "
                f"7:3:Sneaker or 7:3@0.8) or the path of a saved vector, PATH.npy[:CLASS]."
            )
        seed, index = int(match["seed"]), int(match["index"])
        if seed > MAX_SEED or index >= MAX_INDEX:
            raise UsageError(f"{text!r}: the seed must be below 2**63 and the index below {MAX_INDEX:,}.")
        temperature = 1.0
        if match["temperature"] is not None:
            if not match["temperature"].strip():
                raise UsageError(
                    f"{str(text).strip()!r} has no temperature after @; write one (7:3@0.8), or leave out the @ "
                    f"for the temperature trained with."
                )
            temperature = check_temperature(match["temperature"])  # its sentence quotes what was written
        label = match["label"] if match["label"] else None
        return cls(seed, index, label, temperature)


@dataclass(frozen=True)
class VariantName:
    """Variant ``index`` of the image ``base`` names, at ``spread`` with variation ``seed``
    (``variant_points``'s), in class ``label`` when given: ``BASE~SPREAD/SEED#INDEX[:CLASS]``."""

    base: str
    spread: float
    seed: int
    index: int
    label: str | None = None

    def __str__(self) -> str:
        spread = np.format_float_positional(self.spread, trim="-")  # the shortest text of the same float
        text = f"{self.base}~{spread}/{self.seed}#{self.index}"
        return text if self.label is None else f"{text}:{self.label}"

    @classmethod
    def parse(cls, text: str) -> VariantName | None:
        """The variant ``text`` names, or None when it is no variant name (a UsageError when it is
        one with a spread, seed or index out of bounds)."""
        match = _VARIANT.fullmatch(str(text).strip())
        if not match:
            return None
        seed, index = int(match["seed"]), int(match["index"])
        if seed > MAX_SEED or index >= MAX_VARIANTS:
            raise UsageError(f"{text!r}: the variation seed must be below 2**63 and the variant below {MAX_VARIANTS}.")
        return cls(match["base"], check_spread(match["spread"]), seed, index, match["label"] or None)


_EDITED = re.compile(r"(?P<base>.+)\^(?P<edits>[^~^]*)")


@dataclass(frozen=True)
class EditedName:
    """The image ``base`` names, moved by ``edits`` (``BASE^NAME=AMOUNT[,NAME=AMOUNT...]``)."""

    base: str
    edits: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return f"{self.base}^{format_edits(self.edits)}"

    @classmethod
    def parse(cls, text: str) -> EditedName | None:
        """The edited name ``text`` is, or None when it ends in no edits (a UsageError for bad edits)."""
        match = _EDITED.fullmatch(str(text).strip())
        if not match:
            return None
        return cls(match["base"], parse_edits(match["edits"]))


def edited_name(ref: str, edit: str | None) -> str:
    """``ref`` with the edits ``edit`` added (``7:3`` and ``size=1`` -> ``7:3^size=1``); ``ref`` itself
    when there are none."""
    edits = parse_edits(edit)
    return str(ref).strip() if not edits else str(EditedName(str(ref).strip(), edits))


@dataclass
class Point:
    """A point of the generator's input space: ``z`` (nz, float32) and its conditioning: a class
    index, class weights (a blend, summing to 1), or None for an unconditional generator."""

    z: torch.Tensor
    label: int | torch.Tensor | None = None

    def weights(self, num_classes: int) -> torch.Tensor | None:
        """The conditioning as class weights (one-hot for a single class)."""
        if num_classes == 0 or self.label is None:
            return None
        if isinstance(self.label, torch.Tensor):
            return self.label.float()
        return torch.nn.functional.one_hot(torch.tensor(self.label), num_classes).float()


def name_point(sampler: Sampler, name: ImageName) -> Point:
    """The point an ImageName stands for: row ``index`` of the seed's latent vectors, as generate draws them."""
    z = noise_row(name.index, sampler.generator.config.nz, name.seed)
    if name.temperature != 1.0:
        z = z * name.temperature
    if not sampler.conditional:
        if name.label is not None:
            sampler.class_index(name.label)  # the sentence that says this generator has no classes
        return Point(z)
    label = sampler.class_index(name.label) if name.label is not None else name.index % sampler.generator.num_classes
    return Point(z, label)


def save_latent(path: str | os.PathLike, z: torch.Tensor | np.ndarray) -> Path:
    """Write one latent vector (nz) or several (N x nz) as a float32 .npy file, atomically."""
    array = np.ascontiguousarray(np.asarray(z, dtype=np.float32))
    return write_atomic(Path(path), lambda tmp: np.save(tmp, array))


def load_latent(path: str | os.PathLike, nz: int) -> torch.Tensor:
    """A saved latent vector as a float32 tensor (nz), or one sentence on what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file; give a latent vector saved as .npy.")
    try:
        # The header first: the shape and dtype it claims are checked before any memory is taken
        # for them (a header may claim a terabyte in a file of a hundred bytes).
        shape, dtype = _npy_header(path)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"{path} is not a readable .npy array ({_reason(error, path)}).")
    _check_latent_shape(shape, dtype, nz, str(path))
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"{path} is not a readable .npy array ({_reason(error, path)}).")
    return check_latent(array, nz, str(path))


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype the header of the .npy file at ``path`` claims, nothing else read."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]}, where 1.0 or 2.0 is read")
    return shape, dtype


def _reason(error: BaseException, path: Path) -> str:
    """numpy's reason for refusing a .npy file, its first sentence cut short; it has none for an empty one."""
    reason = str(error).strip().split(". ")[0].rstrip(".")[:80]
    if not reason:
        reason = "the file is empty" if path.stat().st_size == 0 else "the file ends early"
    return reason


def _check_latent_shape(shape: tuple[int, ...], dtype: np.dtype, nz: int, what: str) -> None:
    """A UsageError unless ``shape`` and ``dtype`` are those of a latent vector: nz numbers (1 x nz too)."""
    vector = shape[1:] if len(shape) == 2 and shape[0] == 1 else shape
    if dtype.kind not in "fiu" or len(vector) != 1 or vector[0] != nz:
        raise UsageError(
            f"{what} holds a {dtype} array of shape {tuple(shape)}; this generator takes "
            f"{nz} numbers (float32, shape ({nz},))."
        )


def check_latent(array, nz: int, what: str = "the latent vector") -> torch.Tensor:
    """``array`` as a float32 tensor of nz finite numbers (a 1 x nz array is accepted too)."""
    array = np.asarray(array)
    _check_latent_shape(array.shape, array.dtype, nz, what)
    if array.ndim == 2:
        array = array[0]
    if not np.isfinite(array).all():
        raise UsageError(f"{what} holds NaN or infinite values; a latent vector must be finite numbers.")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def vector_name(z: torch.Tensor, label: str | None = None) -> str:
    """``z:BASE64[:CLASS]``: a latent vector written into a name (see the module's docstring)."""
    data = np.ascontiguousarray(np.asarray(z, dtype="<f4")).tobytes()
    text = "z:" + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    return text if label is None else f"{text}:{label}"


def _named_vector_point(sampler: Sampler, text: str) -> Point:
    _, _, rest = text.partition(":")
    encoded, _, label = rest.partition(":")
    nz = sampler.generator.config.nz
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        data = b"?"
    if len(data) != 4 * nz:
        raise UsageError(
            f"The vector in the name holds {len(data)} bytes, not the {4 * nz} of {nz} float32 numbers "
            f"(URL-safe base64, as vector_name writes it)."
        )
    z = check_latent(np.frombuffer(data, dtype="<f4").copy(), nz, "The vector in the name")
    return _with_label(sampler, z, label or None, "z:...")


def point(
    sampler: Sampler, ref: str | os.PathLike | ImageName, label: str | int | None = None, files: bool = True
) -> Point:
    """A point named by an image name, an ImageName, ``z:BASE64[:CLASS]`` or ``PATH.npy[:CLASS]``;
    ``label`` (when given) sets the class instead of the one the reference carries. With
    ``files=False`` (a server's requests) a reference is never read as the path of a file."""
    if isinstance(ref, ImageName):
        found = name_point(sampler, ref)
    else:
        text = str(ref).strip()
        path, sep, npy_label = text.rpartition(":")
        edited = EditedName.parse(text)
        variant = VariantName.parse(text) if edited is None else None
        if edited is not None:
            found = point(sampler, edited.base, files=files)
            labels = None if found.label is None else torch.as_tensor(found.label)[None]
            found = Point(sampler.edit(found.z[None], edited.edits, labels)[0], found.label)
        elif variant is not None:
            found = variant_point(sampler, variant, files)
        elif text.startswith("z:"):
            found = _named_vector_point(sampler, text)
        elif files and sep and path.lower().endswith(".npy"):
            found = _vector_point(sampler, path, npy_label or None)
        elif files and text.lower().endswith(".npy"):
            found = _vector_point(sampler, text, None)
        else:
            found = name_point(sampler, ImageName.parse(text))
    if label is not None and str(label).strip():
        found = Point(found.z, sampler.class_index(label))
    return found


def _vector_point(sampler: Sampler, path: str, label: str | None) -> Point:
    return _with_label(sampler, load_latent(path, sampler.generator.config.nz), label, path)


def _with_label(sampler: Sampler, z: torch.Tensor, label: str | None, path: str) -> Point:
    if not sampler.conditional:
        if label is not None:
            sampler.class_index(label)
        return Point(z)
    if label is None:
        raise UsageError(
            f"{path} is a latent vector without a class, and this generator needs one: write "
            f"{path}:CLASS (one of {', '.join(sampler.class_names)})."
        )
    return Point(z, sampler.class_index(label))


def check_spread(spread: float) -> float:
    try:
        value = float(spread)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1:
        raise UsageError(f"The spread must be above 0 and at most 1 (1: as far as a new random image), not {spread!r}.")
    return value


def variant_points(sampler: Sampler, base: Point, n: int, spread: float, seed: int = 0) -> list[Point]:
    """``n`` points near ``base``: z' = sqrt(1 - s^2) z + s e, with e drawn from ``seed`` at the
    base vector's own scale. s = ``spread``: near 0 almost the same image, 1 an unrelated one; the
    mix keeps z' as spread as the generator's training vectors when z is."""
    spread = check_spread(spread)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_VARIANTS:
        raise UsageError(f"The number of variants must be between 1 and {MAX_VARIANTS}, not {n!r}.")
    check_seed(seed)
    nz = sampler.generator.config.nz
    scale = float(base.z.norm()) / math.sqrt(nz)
    offsets = noise(n, nz, (seed, 1)) * scale  # a stream of its own, apart from the images of seed
    keep = math.sqrt(1.0 - spread * spread)
    return [Point(keep * base.z + spread * offset, base.label) for offset in offsets]


def variant_point(sampler: Sampler, name: VariantName, files: bool = True) -> Point:
    """The point a VariantName stands for: ``variant_points``'s point ``index``, drawn alone
    (numpy draws rows in order, so it is the same float32 vector)."""
    base = point(sampler, name.base, files=files)
    nz = sampler.generator.config.nz
    scale = float(base.z.norm()) / math.sqrt(nz)
    offset = noise_row(name.index, nz, (name.seed, 1)) * scale
    keep = math.sqrt(1.0 - name.spread * name.spread)
    label = base.label if name.label is None else sampler.class_index(name.label)
    return Point(keep * base.z + name.spread * offset, label)


def variant_names(
    sampler: Sampler,
    ref: str | os.PathLike,
    n: int,
    spread: float = DEFAULT_SPREAD,
    seed: int = 0,
    label: str | int | None = None,
) -> list[str]:
    """The names of ``variants``' images of the image ``ref`` names: short handles
    (``7:3~0.5/0#2``) when ``ref`` is a name, ``z:`` names when it is a vector (a saved file or a
    ``z:`` name, whose handle would be no shorter). Each gives the pixels of its variant."""
    base = point(sampler, ref)
    chosen = None
    if label is not None and str(label).strip():
        chosen = sampler.class_names[sampler.class_index(label)]
    text = str(ref).strip()
    if text.startswith("z:") or text.lower().endswith(".npy") or ".npy:" in text.lower():
        points = variant_points(sampler, base, n, spread, check_seed(seed))
        names = [None] * n if not sampler.conditional else [chosen or sampler.class_names[base.label]] * n
        return [vector_name(p.z, name) for p, name in zip(points, names)]
    variant_points(sampler, base, 1, spread, check_seed(seed))  # the same checks as variants' (n aside)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_VARIANTS:
        raise UsageError(f"The number of variants must be between 1 and {MAX_VARIANTS}, not {n!r}.")
    return [str(VariantName(text, check_spread(spread), seed, i, chosen)) for i in range(n)]


def check_seed(seed: int) -> int:
    if seed < 0 or seed > MAX_SEED:
        raise UsageError(f"The seed must be 0 or more (below 2**63), not {seed}.")
    return seed
