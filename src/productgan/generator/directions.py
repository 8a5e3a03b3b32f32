"""Directions in a generator's latent space, and edits along them: the numbers every user of an
export shares (the library, ``generate --edit``, image names, the API, ONNX users with a plain file).

``productgan directions RUN`` measures them (explore/directions.py) and writes ``directions.json``
beside the export's weights. The file is plain JSON, so that code with no productgan (an ONNX
runtime in another language) can apply the same edits to its own ``z``:

- a **shift** (``lightness``, ``size``, ``aspect``, the generator's own ``main1``...): ``z + a * vector``;
- a **turn** (``hue``): the colour the linear colour model predicts, ``c = colour.matrix @ z +
  colour.offset[class]`` (CIELAB L*, a*, b*), is turned about the grey axis by ``a * per_unit``
  degrees, and ``z`` moves by the least-norm step that gives the turned colour:
  ``z + pinv(M) @ (R c_ab - c_ab)``, with M the a*, b* rows of the matrix;
- a **scale** (``saturation``): the same with ``c_ab`` scaled by ``2 ** (a * per_unit)``.

One unit of a shift moves ``z`` by one standard deviation of the prior it was drawn from; each
direction records what one unit measurably does (``effects``), whether its own attribute changes
monotonically over -2...+2 and the share of images whose category the evaluator still gives at
+-2. Edits are written ``name=amount`` and joined by commas (``size=+1,hue=-0.5``); applied in
the order written. The file names the SHA-256 of the weights it was measured on, and is refused
beside other weights.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from productgan.errors import ProductganError, UsageError
from productgan.files import write_text_atomic
from productgan.generator.export import DIRECTIONS_FILE

DIRECTIONS_FORMAT = "productgan-directions"
DIRECTIONS_VERSION = 1

KINDS = ("shift", "turn", "scale")

MAX_AMOUNT = 5.0  # five units: far past where any direction still gives a product
MAX_EDITS = 16
AMOUNT_DECIMALS = 6  # an amount is kept to this many decimals, so that every name reads back

_EDIT = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]{0,31})\s*=\s*([^,=]{1,32})\s*")
_ONE_EDIT = r"[A-Za-z][A-Za-z0-9_]{0,31}=[+-]?[0-9](?:\.[0-9]{1,6})?"
# Edits as the API's names carry them: at most MAX_EDITS, each amount within 5 to six decimals.
EDITS_PATTERN = f"{_ONE_EDIT}(?:,{_ONE_EDIT}){{0,{MAX_EDITS - 1}}}"
# The longest text EDITS_PATTERN admits, for the API's caps on a query's length.
LONGEST_EDITS = ",".join("e" * 31 + chr(ord("a") + i) + "=-4.999999" for i in range(MAX_EDITS))


def parse_edits(text: str | None) -> tuple[tuple[str, float], ...]:
    """``size=+1,hue=-0.5`` -> (("size", 1.0), ("hue", -0.5)); empty or None -> (). A UsageError
    names a malformed part, a repeated name, or an amount that is not finite or beyond MAX_AMOUNT."""
    if text is None or not str(text).strip():
        return ()
    parts = str(text).split(",")
    if len(parts) > MAX_EDITS:
        raise UsageError(f"{len(parts)} edits were given; at most {MAX_EDITS} apply to one image.")
    edits: list[tuple[str, float]] = []
    for part in parts:
        match = _EDIT.fullmatch(part)
        if not match:
            shown = part if len(part) <= 40 else part[:40] + "..."
            raise UsageError(
                f"{shown.strip()!r} is not an edit; write NAME=AMOUNT, comma-separated (size=+1,hue=-0.5)."
            )
        name = match[1].lower()
        amount = check_amount(match[2], name)
        if any(name == seen for seen, _ in edits):
            raise UsageError(f"The edit {name!r} is given twice; give each direction once.")
        edits.append((name, amount))
    return tuple(edits)


def check_amount(amount: str | float, name: str) -> float:
    """An edit's amount as a float, or a UsageError unless it is finite and within MAX_AMOUNT."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or abs(value) > MAX_AMOUNT:
        shown = str(amount).strip()[:32]
        raise UsageError(
            f"The edit {name}={shown} needs an amount between -{MAX_AMOUNT:g} and +{MAX_AMOUNT:g} "
            f"(a slider's units; -2 to +2 keeps a product)."
        )
    return round(value, AMOUNT_DECIMALS) + 0.0  # + 0.0: no -0


def orthonormal_rows(vectors: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
    """An orthonormal basis (rows) of the span of ``vectors`` (rows); vectors that add nothing (zero,
    or in the span of the others) add no row."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    u, singular, _ = np.linalg.svd(vectors.T, full_matrices=False)
    if singular.size == 0 or singular[0] == 0:
        return np.zeros((0, vectors.shape[1]))
    return u[:, singular > tolerance * singular[0]].T


def format_edits(edits: tuple[tuple[str, float], ...]) -> str:
    """The shortest text ``parse_edits`` reads back to the same edits (``size=1,hue=-0.5``)."""
    return ",".join(f"{name}={np.format_float_positional(amount, trim='-')}" for name, amount in edits)


@dataclass(frozen=True)
class Direction:
    """One named direction: how it moves z (``kind``), and what it was measured to do."""

    name: str
    kind: str
    vector: np.ndarray | None = None  # nz, float64 (a shift)
    per_unit: float = 1.0  # degrees a unit (a turn), log2 of the factor a unit (a scale)
    attribute: str | None = None  # what it was fitted to (None: the generator's own direction)
    effects: dict[str, float] = field(default_factory=dict)  # measured change of each attribute per unit
    monotone: bool | None = None  # its attribute rises over -2...+2 at every step (named ones)
    category_kept: float | None = None  # share of images still of their category at +-2
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.vector is not None:
            out["vector"] = [float(v) for v in self.vector]
        out.update(
            per_unit=self.per_unit,
            attribute=self.attribute,
            effects=self.effects,
            monotone=self.monotone,
            category_kept=self.category_kept,
            description=self.description,
        )
        return out


@dataclass(frozen=True)
class ColourModel:
    """CIELAB of the product's main colour predicted from z: ``matrix @ z + offset[class]``; rows
    L* (and a*, b* for colour images)."""

    matrix: np.ndarray  # k x nz
    offset: np.ndarray  # classes (1 when unconditional) x k

    @property
    def coloured(self) -> bool:
        return self.matrix.shape[0] == 3

    def predict(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        rows = np.zeros(len(z), dtype=int) if labels is None else np.asarray(labels, dtype=int)
        return (z[:, None, :] * self.matrix[None]).sum(-1) + self.offset[rows]


@dataclass
class Directions:
    """Every direction of one generator, its colour model, and what they were measured on."""

    nz: int
    weights_sha256: str | None
    directions: dict[str, Direction]
    colour: ColourModel
    measured: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.directions)

    def check(self, edits: tuple[tuple[str, float], ...]) -> None:
        """A UsageError naming the first edit that is no direction of this generator."""
        for name, _ in edits:
            if name not in self.directions:
                raise UsageError(f"There is no direction {name!r}; this generator has: {', '.join(self.directions)}.")

    def edit(self, z: torch.Tensor, edits: tuple[tuple[str, float], ...], labels=None) -> torch.Tensor:
        """``z`` (N x nz) moved by ``edits`` in order; row by row in float64, so an image gets the same
        numbers alone and in a batch."""
        self.check(edits)
        if not edits:
            return z
        out = z.detach().cpu().double().numpy().copy()
        labels_np = None if labels is None else np.asarray(torch.as_tensor(labels).cpu())
        for name, amount in edits:
            out = self._move(self.directions[name], out, amount, labels_np)
        return torch.from_numpy(out.astype(np.float32)).to(z.device)

    def _move(self, direction: Direction, z: np.ndarray, amount: float, labels) -> np.ndarray:
        if direction.kind == "shift":
            return z + amount * direction.vector[None]
        if not self.colour.coloured:
            raise UsageError(f"The direction {direction.name!r} changes colour, and this generator makes grey images.")
        if labels is not None and labels.ndim > 1:  # a blend of classes: the offset of the heaviest
            labels = labels.argmax(-1)
        ab = self.colour.predict(z, labels)[:, 1:]
        if direction.kind == "turn":
            angle = math.radians(amount * direction.per_unit)
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            target = ab @ rotation.T
        else:
            target = ab * 2.0 ** (amount * direction.per_unit)
        inverse = np.linalg.pinv(self.colour.matrix[1:])  # nz x 2
        return z + ((target - ab)[:, None, :] * inverse[None]).sum(-1)

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": DIRECTIONS_FORMAT,
                    "version": DIRECTIONS_VERSION,
                    "nz": self.nz,
                    "weights_sha256": self.weights_sha256,
                    "colour": {
                        "rows": ["L", "a", "b"][: self.colour.matrix.shape[0]],
                        "matrix": self.colour.matrix.tolist(),
                        "offset": self.colour.offset.tolist(),
                    },
                    "directions": [d.to_dict() for d in self.directions.values()],
                    "measured": self.measured,
                },
                indent=1,
            )
            + "\n"
        )

    def save(self, folder: str | Path) -> Path:
        return write_text_atomic(Path(folder) / DIRECTIONS_FILE, self.to_json())


def read_directions(folder: str | Path, config: dict[str, Any]) -> Directions | None:
    """The directions stored beside an export (None when there are none), checked against the
    export's ``config`` (nz, weights) field by field."""
    path = Path(folder) / DIRECTIONS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ProductganError(f"{path} is not readable JSON ({error}); run `productgan directions RUN` again.")
    nz = config["model"].get("nz")
    try:
        return _from_dict(data, nz, config.get("weights_sha256"), config.get("num_classes", 0))
    except (KeyError, TypeError, ValueError) as error:
        raise ProductganError(f"{path} is damaged ({error}); run `productgan directions RUN` again.")


def _from_dict(data: dict[str, Any], nz: int, sha: str | None, num_classes: int) -> Directions:
    if data.get("format") != DIRECTIONS_FORMAT or data.get("version") != DIRECTIONS_VERSION:
        raise ValueError(f"it is not a {DIRECTIONS_FORMAT} file of version {DIRECTIONS_VERSION}")
    if data["nz"] != nz:
        raise ValueError(f"it holds directions of {data['nz']} numbers, and this generator takes {nz}")
    if sha is not None and data.get("weights_sha256") != sha:
        raise ValueError("it was measured on other weights than the export's (the run was exported again since)")
    matrix = _finite(data["colour"]["matrix"], "the colour matrix")
    offset = _finite(data["colour"]["offset"], "the colour offsets")
    if matrix.ndim != 2 or matrix.shape[0] not in (1, 3) or matrix.shape[1] != nz:
        raise ValueError(f"the colour matrix has shape {matrix.shape}, not 1 or 3 x {nz}")
    if offset.shape != (max(num_classes, 1), matrix.shape[0]):
        raise ValueError(f"the colour offsets have shape {offset.shape}, not {max(num_classes, 1)} x {matrix.shape[0]}")
    directions = {}
    for item in data["directions"]:
        name, kind = str(item["name"]), item["kind"]
        if kind not in KINDS or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            raise ValueError(f"the direction {name!r} of kind {kind!r} is not one this version applies")
        vector = None
        if kind == "shift":
            vector = _finite(item["vector"], f"the vector of {name!r}")
            if vector.shape != (nz,):
                raise ValueError(f"the vector of {name!r} holds {vector.size} numbers, not {nz}")
        elif matrix.shape[0] != 3:
            raise ValueError(f"the direction {name!r} changes colour, and the colour model is grey")
        per_unit = float(item.get("per_unit", 1.0))
        if not math.isfinite(per_unit):
            raise ValueError(f"the direction {name!r} has no finite size of a unit")
        directions[name] = Direction(
            name,
            kind,
            vector,
            per_unit,
            item.get("attribute"),
            {str(k): float(v) for k, v in (item.get("effects") or {}).items()},
            item.get("monotone"),
            item.get("category_kept"),
            str(item.get("description", "")),
        )
    return Directions(
        nz, data.get("weights_sha256"), directions, ColourModel(matrix, offset), data.get("measured") or {}
    )


def _finite(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array
