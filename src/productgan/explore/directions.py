"""Measure a generator's directions (``productgan directions RUN``): sliders named for what a product
photo shows, the generator's own main directions, and the colour model colourways steer with.

1. Draw ``samples`` latent vectors (every class in turn), make their images and read each
   product's attributes from its pixels (data/product.py): no labels needed.
2. Fit each attribute as a linear function of z by ridge regression, within each class (a trouser
   is taller than a bag whatever z says). The colour model is that fit for L*, a*, b* with one
   offset per class. ``lightness`` is the L* direction, ``size`` and ``aspect`` theirs with the
   colour directions projected out (so that making a product larger does not also recolour it);
   ``hue`` turns and ``saturation`` scales the predicted a*, b* (generator/directions.py).
3. The generator's own main directions, found with no labels at all: a DCGAN's first layer is one
   matrix W (nz x features), and the directions z moves its output most along are the top
   eigenvectors of W W^T (closed-form factorisation, Shen and Zhou 2021).
4. Measure every direction where it counts, on images: at -2, -1, +1, +2 units from ``probe``
   of the vectors, the median change of each attribute, whether its own attribute moves the same
   way at every step, and (with an evaluator) the share of images still given their category.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from productgan.data.product import ATTRIBUTES, background_values, hue_difference, measure
from productgan.errors import UsageError
from productgan.generator.directions import ColourModel, Direction, Directions, orthonormal_rows
from productgan.generator.latents import balanced_labels, noise
from productgan.generator.sampler import Sampler

MAIN_DIRECTIONS = 8
AMOUNTS = (-2.0, -1.0, 1.0, 2.0)
HUE_DEGREES_PER_UNIT = 30.0  # a unit of hue turns the colour a twelfth of the way round
SATURATION_LOG2_PER_UNIT = 0.5  # a unit of saturation scales the chroma by sqrt(2)
RIDGE = 1.0  # the prior's own weight in the regression: z ~ N(0, I) makes 1 a natural scale
MIN_SAMPLES = 64

# A classifier of images, uint8 N x C x H x W -> the category index of each (the run's evaluator).
Classify = Callable[[np.ndarray], np.ndarray]


def fit_directions(
    sampler: Sampler,
    samples: int = 4000,
    probe: int = 200,
    seed: int = 0,
    classify: Classify | None = None,
    progress: bool = True,
) -> Directions:
    """Every direction of ``sampler``'s generator, measured on its own images (see the module)."""
    if samples < MIN_SAMPLES or probe < 8 or probe > samples:
        raise UsageError(
            f"Directions need at least {MIN_SAMPLES} samples and a probe of 8 to all of them, "
            f"not {samples} and {probe}."
        )
    nz, classes = sampler.generator.config.nz, sampler.generator.num_classes
    background = background_values(sampler.info, sampler.generator.channels)
    z = noise(samples, nz, (seed, 2))  # a stream of its own, apart from the images of any seed
    labels = balanced_labels(samples, classes) if classes else None
    coloured = sampler.generator.channels == 3
    bar = tqdm(total=1, desc="directions", unit="pass", disable=not progress, leave=False)
    images = _images(sampler, z, labels)
    values = measure(images, background)
    bar.update(1)
    found = np.isfinite(np.stack([values[name] for name in ("lightness", "size", "aspect")])).all(axis=0)
    if found.sum() < MIN_SAMPLES:
        raise UsageError(
            f"Only {int(found.sum())} of {samples} images show a product off the background recorded for this "
            f"generator ({background.round().astype(int).tolist()}), too few to measure directions on."
        )
    zs = z.double().numpy()[found]
    rows = np.zeros(int(found.sum()), dtype=int) if labels is None else labels.numpy()[found]
    fits = {name: _ridge(zs, values[name][found], rows) for name in ("lightness", "size", "aspect", "a", "b")}
    colour_names = ("lightness", "a", "b") if coloured else ("lightness",)
    matrix = np.stack([fits[name][0] for name in colour_names])
    offset = np.stack([fits[name][1] for name in colour_names], axis=1)
    named = {
        "lightness": _unit(
            _without(fits["lightness"][0], orthonormal_rows(np.stack([fits["size"][0], fits["aspect"][0]])))
        ),
        "size": _unit(_without(fits["size"][0], orthonormal_rows(np.vstack([matrix, fits["aspect"][0]])))),
        "aspect": _unit(_without(fits["aspect"][0], orthonormal_rows(np.vstack([matrix, fits["size"][0]])))),
    }
    # An attribute every image shares (no product smaller than its canvas, say) has no direction.
    constant = [name for name, vector in named.items() if not np.linalg.norm(vector) > 0]
    directions = [Direction(n, "shift", v, attribute=n) for n, v in named.items() if n not in constant]
    if coloured:
        directions.insert(1, Direction("hue", "turn", per_unit=HUE_DEGREES_PER_UNIT, attribute="hue"))
        directions.insert(
            2, Direction("saturation", "scale", per_unit=SATURATION_LOG2_PER_UNIT, attribute="saturation")
        )
    directions += [Direction(f"main{i + 1}", "shift", v) for i, v in enumerate(main_directions(sampler))]
    model = Directions(
        nz, sampler.info.get("weights_sha256"), {d.name: d for d in directions}, ColourModel(matrix, offset)
    )
    spread = {name: float(np.nanstd(values[name][found])) for name in ATTRIBUTES}
    # The probe: the first images that show a product, measured (and classified) once for every direction.
    rows = found.nonzero()[0][:probe]
    probe_z, probe_labels = z[rows], None if labels is None else labels[rows]
    base = {name: value[rows] for name, value in values.items()}
    base_class = None if classify is None else classify(images[rows])
    bar.total = 1 + len(directions) * len(AMOUNTS)
    bar.refresh()
    measured = [
        _measured(sampler, model, d, probe_z, probe_labels, base, base_class, background, spread, classify, bar)
        for d in directions
    ]
    bar.close()
    model.directions = {d.name: d for d in measured}
    model.measured = {
        "samples": int(samples),
        "with_a_product": int(found.sum()),
        "probe": int(probe),
        "seed": int(seed),
        "amounts": list(AMOUNTS),
        "attribute_spread": spread,
        "category_check": classify is not None,
        "without_direction": constant,
    }
    return model


def main_directions(sampler: Sampler, count: int = MAIN_DIRECTIONS) -> list[np.ndarray]:
    """The top ``count`` eigenvectors of W W^T for the generator's first layer W (nz x features),
    unit length, each signed so that its largest component is positive."""
    weight = sampler.generator.main[0].weight.detach().double().cpu()
    gram = (weight.reshape(weight.shape[0], -1) @ weight.reshape(weight.shape[0], -1).T).numpy()
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:count]
    out = []
    for i in order:
        vector = eigenvectors[:, i]
        out.append(vector * (1.0 if vector[np.argmax(np.abs(vector))] > 0 else -1.0))
    return out


def _images(sampler: Sampler, z: torch.Tensor, labels: torch.Tensor | None) -> np.ndarray:
    return sampler.from_noise(z.float(), "native", labels=labels).numpy()


def _ridge(z: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w, offsets): y ~ z @ w + offsets[class], w fitted on values centred within each class."""
    classes = int(rows.max()) + 1
    offsets = np.array([np.mean(y[rows == c]) if np.any(rows == c) else np.mean(y) for c in range(classes)])
    centred = y - offsets[rows]
    w = np.linalg.solve(z.T @ z + RIDGE * np.eye(z.shape[1]), z.T @ centred)
    return w, offsets


def _without(vector: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return vector - basis.T @ (basis @ vector)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _measured(
    sampler: Sampler,
    model: Directions,
    direction: Direction,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    base: dict[str, np.ndarray],
    base_class: np.ndarray | None,
    background: np.ndarray,
    spread: dict[str, float],
    classify: Classify | None,
    bar: tqdm,
) -> Direction:
    """``direction`` with its measured effects (median change per unit of every attribute, from the
    probe's own attributes ``base``), its monotonicity on its own attribute, and the share of
    images keeping their category (``base_class``) at +-2."""
    changes, kept = {name: [] for name in ATTRIBUTES}, []
    for amount in AMOUNTS:
        moved = model.edit(z, ((direction.name, amount),), labels)
        images = _images(sampler, moved, labels)
        values = measure(images, background)
        for name in ATTRIBUTES:
            delta = hue_difference(base[name], values[name]) if name == "hue" else values[name] - base[name]
            changes[name].append(float(np.nanmedian(delta)) if np.isfinite(delta).any() else float("nan"))
        if base_class is not None and abs(amount) == 2:
            kept.append(float(np.mean(classify(images) == base_class)))
        bar.update(1)
    amounts = np.array([AMOUNTS[0], AMOUNTS[1], 0.0, AMOUNTS[2], AMOUNTS[3]])
    effects = {}
    for name in ATTRIBUTES:
        medians = np.array([*changes[name][:2], 0.0, *changes[name][2:]])
        effects[name] = float(np.polyfit(amounts, medians, 1)[0]) if np.isfinite(medians).all() else float("nan")
    monotone = None
    if direction.attribute is not None:
        own = np.array([*changes[direction.attribute][:2], 0.0, *changes[direction.attribute][2:]])
        steps = np.diff(own)
        monotone = bool(np.all(steps > 0) or np.all(steps < 0))
    effects = {k: (round(v, 5) if math.isfinite(v) else None) for k, v in effects.items()}
    return Direction(
        direction.name,
        direction.kind,
        direction.vector,
        direction.per_unit,
        direction.attribute,
        effects,
        monotone,
        None if not kept else round(min(kept), 4),
        describe(direction, effects, spread),
    )


def describe(direction: Direction, effects: dict[str, float | None], spread: dict[str, float]) -> str:
    """What a unit of ``direction`` measurably does, largest effects first (relative to each
    attribute's spread over the generator's images)."""
    shown = [
        n
        for n in ("lightness", "saturation", "hue", "size", "aspect")
        if effects.get(n) is not None and spread.get(n, 0.0) > 1e-6  # grey images have no hue to speak of
    ]
    shown.sort(key=lambda n: -abs(effects[n]) / max(spread.get(n, 1.0), 1e-9))
    units = {"lightness": " L*", "saturation": " C*", "hue": "°", "size": " of the canvas", "aspect": " log2 w/h"}
    parts = [f"{n} {effects[n]:+.3g}{units[n]}" for n in shown[:3]]
    kind = {"shift": "moves", "turn": "turns", "scale": "scales"}[direction.kind]
    head = f"{kind} {direction.attribute}" if direction.attribute else "the generator's own direction"
    return f"{head}; per unit: " + ", ".join(parts)
