"""Colourways: the same product in other colours (``productgan colourways RUN --of 7:3:Sneaker
--colours navy,#c0392b,olive``).

The category stays (the class is not touched), and ``z`` moves in two stages:

1. **Reach the colour.** Each round makes the images, measures the main colour of each product
   from its pixels (data/product.py), and steps ``z`` by the least-norm change the colour model
   (generator/directions.py) gives for the colour still missing, with the ``size`` and ``aspect``
   directions projected out of the step; the round whose colour came closest (CIEDE2000) is kept.
2. **Keep the product.** ``REFINE_STEPS`` steps of Adam on ``z`` against two terms: the CIELAB
   distance of the product's colour (a soft version of the measured one) to the target, and how
   far the product's matte (each pixel's distance from the background over the main colour's) has
   moved from the source's. The matte is the product's shape whatever its colour: a pale product
   and a dark one of the same shape have the same matte. Without this stage the colour is reached
   more exactly (median CIEDE2000 0.8 against 2.1) but the product changes more (docs/explore.md).
   The refined vector is kept unless it misses the colour by more than ``FAR`` where the first
   stage did not.

A strip of twelve colours is ``ROUNDS`` small batches through the generator and ``REFINE_STEPS``
forward and backward passes. A grey-scale generator makes greys from black to white only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from productgan.data.colour import ciede2000, hex_code, lab_to_srgb, srgb_to_lab, srgb_to_lab_tensor
from productgan.data.product import MASK_THRESHOLD, background_values, main_colours
from productgan.errors import UsageError
from productgan.explore.names import Point, vector_name
from productgan.generator.directions import Directions, orthonormal_rows
from productgan.generator.sampler import Sampler

ROUNDS = 8
MAX_ROUNDS = 32
CLOSE_ENOUGH = 1.0  # CIEDE2000 below which a colour is as good as reached (just noticeable)
REFINE_STEPS = 40
REFINE_RATE = 0.03
SHAPE_WEIGHT = 300.0  # the matte's mean squared change against the colour's squared CIELAB distance / 100
FAR = 10.0  # CIEDE2000 past which a colour counts as missed
GREY_CHROMA = 4.0  # CIELAB chroma below which a colour counts as a grey


@dataclass(frozen=True)
class Colourway:
    """One colour of a strip: what was asked, the point that makes it, and how near it came."""

    colour: str  # #rrggbb asked for
    point: Point
    target: np.ndarray  # CIELAB asked for (L* alone for a grey generator)
    reached: np.ndarray  # CIELAB measured on the image made
    difference: float  # CIEDE2000 between the two (NaN when the image shows no product)

    def name(self, sampler: Sampler) -> str:
        """The image's name: its vector, with its class for a conditional generator."""
        label = None if self.point.label is None else sampler.class_names[int(self.point.label)]
        return vector_name(self.point.z, label)

    def describe(self) -> dict:
        return {
            "colour": self.colour,
            "reached": hex_code(lab_to_srgb(self.reached)) if np.isfinite(self.reached).all() else None,
            "ciede2000": None if not np.isfinite(self.difference) else round(float(self.difference), 2),
        }


def targets(sampler: Sampler, colours: list[tuple[int, int, int]]) -> np.ndarray:
    """CIELAB targets of ``colours`` for this generator (L* alone when it makes grey images, where a
    colour with a hue is refused in one sentence)."""
    lab = srgb_to_lab(np.asarray(colours, dtype=np.float64))
    if sampler.generator.channels == 3:
        return lab
    coloured = [hex_code(c) for c, x in zip(colours, lab) if np.hypot(x[1], x[2]) > GREY_CHROMA]
    if coloured:
        raise UsageError(
            f"This generator makes grey images, so it can make greys from black to white but not "
            f"{', '.join(coloured)}; ask for greys (black, grey, #404040, white)."
        )
    return lab[:, :1]


def full_lab(goal: np.ndarray) -> np.ndarray:
    """Targets as ``targets`` gives them (N x 3, or N x 1 for grey) -> CIELAB N x 3 (a grey has a* = b* = 0)."""
    return goal if goal.shape[-1] == 3 else np.concatenate([goal, np.zeros(goal.shape[:-1] + (2,))], axis=-1)


def steer_colours(
    sampler: Sampler,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    goal: np.ndarray,
    rounds: int = ROUNDS,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Vectors near ``z`` (N x nz) whose products have the CIELAB colours ``goal`` (N x k, k = 3, or 1
    for grey): (vectors, measured colours N x 3, CIEDE2000 N)."""
    directions = sampler.require_directions()
    matrix = directions.colour.matrix
    if goal.shape[1] != matrix.shape[0]:
        raise UsageError(
            "The colour model of these directions does not match this generator; run `productgan directions RUN` again."
        )
    inverse = np.linalg.pinv(matrix)  # nz x k
    keep = _silhouette_basis(directions)
    background = background_values(sampler.info, sampler.generator.channels)
    current = z.detach().cpu().double().numpy().copy()
    best, best_lab = current.copy(), np.full((len(z), 3), np.nan)
    best_difference = np.full(len(z), np.inf)
    full_goal = full_lab(goal)
    for _ in range(rounds):
        images = sampler.from_noise(torch.from_numpy(current.astype(np.float32)), "native", labels=labels).numpy()
        lab = main_colours(images, background)
        difference = ciede2000(lab, full_goal)
        better = np.isfinite(difference) & (difference < best_difference)
        best[better], best_lab[better], best_difference[better] = current[better], lab[better], difference[better]
        active = np.isfinite(difference) & (best_difference > CLOSE_ENOUGH)
        if not active.any():
            break
        missing = goal - lab[:, : goal.shape[1]]
        step = (missing[:, None, :] * inverse[None]).sum(-1)
        if keep is not None:
            step = step - (step @ keep.T) @ keep
        current[active] = current[active] + step[active]
    best_difference[~np.isfinite(best_difference)] = np.nan
    return torch.from_numpy(best.astype(np.float32)), best_lab, best_difference


def keep_product(
    sampler: Sampler, z: torch.Tensor, labels: torch.Tensor | None, goal: np.ndarray, source: torch.Tensor
) -> torch.Tensor:
    """``z`` (N x nz) moved by REFINE_STEPS steps of Adam towards the colours ``goal`` while keeping
    the matte of the products of ``source`` (N x nz): the second stage of the module's docstring."""
    generator, device = sampler.generator, sampler.device
    low, high = sampler.info["pixel_range"]
    values = background_values(sampler.info, generator.channels)
    background = torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    target = torch.tensor(goal, dtype=torch.float32, device=device)
    labels = None if labels is None else labels.to(device)

    def images(v: torch.Tensor) -> torch.Tensor:
        return (generator(v, labels).float() - low) * (255.0 / (high - low))

    with torch.enable_grad():
        with torch.no_grad():
            _, reference = _colour_and_matte(images(source.to(device)), background)
        v = z.detach().clone().to(device).requires_grad_(True)
        optimiser = torch.optim.Adam([v], lr=REFINE_RATE)
        for _ in range(REFINE_STEPS):
            colour, matte = _colour_and_matte(images(v), background)
            grey = colour.shape[1] == 1
            lab = srgb_to_lab_tensor(colour.repeat(1, 3) if grey else colour)[:, : target.shape[1]]
            loss = ((lab - target) ** 2).sum(1).mean() / 100 + SHAPE_WEIGHT * ((matte - reference) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return v.detach().cpu()


def _colour_and_matte(images: torch.Tensor, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images 0..255 (N x C x H x W) -> (their products' soft main colour N x C, their mattes N x H x W):
    the colour weighs each product pixel by the square of its distance past the mask's threshold,
    and the matte is each pixel's distance from the background over the main colour's, 0 to 1."""
    distance = (images - background).abs().amax(1)
    weight = torch.relu(distance - MASK_THRESHOLD) ** 2
    weight = weight / weight.sum((1, 2), keepdim=True).clamp_min(1e-6)
    colour = (images * weight[:, None]).sum((2, 3))
    contrast = (colour - background.flatten(1)).abs().amax(1).clamp_min(MASK_THRESHOLD)
    return colour, (distance / contrast.view(-1, 1, 1)).clamp(0, 1)


def recolour(
    sampler: Sampler, z: torch.Tensor, labels: torch.Tensor | None, goal: np.ndarray, rounds: int = ROUNDS
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Both stages for the vectors ``z`` (N x nz) and their CIELAB targets ``goal`` (N x k):
    (vectors, measured colours N x 3, CIEDE2000 N)."""
    reached, reached_lab, reached_difference = steer_colours(sampler, z, labels, goal, rounds)
    refined = keep_product(sampler, reached, labels, goal, z)
    background = background_values(sampler.info, sampler.generator.channels)
    lab = main_colours(sampler.from_noise(refined, "native", labels=labels).numpy(), background)
    difference = ciede2000(lab, full_lab(goal))
    missed = ~(difference <= FAR) & (reached_difference <= FAR)  # NaN (no product) counts as missed
    refined[missed], lab[missed], difference[missed] = reached[missed], reached_lab[missed], reached_difference[missed]
    return refined, lab, difference


def colourways(
    sampler: Sampler, base: Point, colours: list[tuple[int, int, int]], rounds: int = ROUNDS
) -> list[Colourway]:
    """The product ``base`` names in each of ``colours`` (sRGB 0..255), in order."""
    if isinstance(base.label, torch.Tensor):
        raise UsageError("A colourway is made of one product of one category, not of a blend of categories.")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ROUNDS:
        raise UsageError(f"--rounds must be a whole number from 1 to {MAX_ROUNDS}, not {rounds!r}.")
    goal = targets(sampler, colours)
    n = len(colours)
    z = base.z.detach().cpu().float()[None].repeat(n, 1)
    labels = None if base.label is None else torch.full((n,), int(base.label), dtype=torch.long)
    moved, reached, difference = recolour(sampler, z, labels, goal, rounds)
    return [
        Colourway(hex_code(colour), Point(moved[i], base.label), goal[i], reached[i], float(difference[i]))
        for i, colour in enumerate(colours)
    ]


def _silhouette_basis(directions: Directions) -> np.ndarray | None:
    """An orthonormal basis (rows) of the size and aspect directions, which a colour step leaves out."""
    vectors = [directions.directions[n].vector for n in ("size", "aspect") if n in directions.directions]
    basis = orthonormal_rows(np.stack(vectors)) if vectors else np.zeros((0, 0))
    return basis if len(basis) else None
