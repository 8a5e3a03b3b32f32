"""A real product photo projected into the generator: the latent vector (and category) that
reproduces it best, and a verdict a user can trust.

The photo is first fitted as the generator expects it (``productgan.explore.photos``: the run's
own fitting, inverted onto the data's background where the photo's is the opposite). Then latent
vectors are optimised with Adam against two distances to the fitted photo: the pixels at the
training size and the features of productgan's own evaluator (a perceptual distance that needs
nothing downloaded). A conditional generator is tried in every category (or the one given), each
from several random starts, all in one batch; the best fit wins. ``deadline`` stops it early with
the best so far; ``cancelled`` stops it with ProjectionCancelled.

A projection always finds the nearest image the generator can make, so the verdict first asks
whether the photo looks like the training data at all (``NeighbourIndex.likeness``, calibrated on
held-out images) and says so when it does not, before any word on a match. How good a match is
reads off its feature distance next to ``typical``: the median distance between a held-out real
image and its nearest training image (``productgan.explore.neighbours``). A reconstruction about
that close is as near to the photo as a different real product of the same kind would be.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from productgan.data.pixels import to_native
from productgan.errors import UsageError
from productgan.evaluator import EvaluatorNet
from productgan.explore.likeness import Likeness
from productgan.explore.names import Point
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.photos import FittedPhoto, expected_photo, fit_to_generator
from productgan.generator.latents import noise
from productgan.generator.sampler import Sampler

DEFAULT_STEPS, DEFAULT_RESTARTS = 200, 2  # measured in docs/explore.md: more costs time, gains little
MAX_STEPS = 5000
MAX_RESTARTS = 16


class ProjectionCancelled(Exception):
    """``project``'s ``cancelled`` said stop: nothing is returned (a server's client went away)."""


@dataclass
class Projection:
    """The best fit: its point, the fitted photo and the reconstruction (uint8 native C x H x W),
    their distances (evaluator features; pixels as root mean square on 0..255), and the lowest
    loss reached in each category tried (name -> loss; conditional generators). ``steps_done``
    is how many optimisation steps ran; ``stopped_early`` is True when the deadline cut the
    optimisation short, so the fit is the best found in that time."""

    point: Point
    label: str | None
    target: np.ndarray
    reconstruction: np.ndarray
    feature_distance: float
    pixel_distance: float
    per_class: dict[str, float]
    steps_done: int = 0
    stopped_early: bool = False


def check_effort(steps: int, restarts: int) -> None:
    """One sentence when a projection's steps or starts per category are out of range: checked by
    ``project`` and, before any slow work, by the commands that call it."""
    if not 1 <= steps <= MAX_STEPS:
        raise UsageError(f"--steps must be between 1 and {MAX_STEPS}, not {steps}.")
    if not 1 <= restarts <= MAX_RESTARTS:
        raise UsageError(f"--restarts must be between 1 and {MAX_RESTARTS}, not {restarts}.")


def project(
    sampler: Sampler,
    photo: np.ndarray,
    net: EvaluatorNet,
    label: str | int | None = None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    feature_weight: float = 1.0,
    progress: bool = False,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Projection:
    """Fit a latent vector (and category) to ``photo``, a uint8 C x S x S image at the training
    size (``fit_photo``'s output).

    ``deadline`` is a ``time.monotonic()`` value: once passed, the optimisation stops and the best
    fit found so far is returned, marked ``stopped_early`` (at least one step always runs).
    ``cancelled`` is asked before every step; when it returns True, ProjectionCancelled is raised."""
    check_effort(steps, restarts)
    generator = sampler.generator
    size = generator.image_size
    if photo.shape != (generator.channels, size, size):
        raise UsageError(
            f"The photo must be fitted to {generator.channels} x {size} x {size} (fit_photo), not {tuple(photo.shape)}."
        )
    if label is not None and str(label).strip():
        classes = [sampler.class_index(label)]
    else:
        classes = list(range(generator.num_classes)) if sampler.conditional else [None]
    device = sampler.device
    low, high = sampler.info["pixel_range"]
    target = torch.tensor(photo).float().to(device)[None] * ((high - low) / 255.0) + low
    target_native = torch.tensor(photo).float()[None]
    target_native = to_native(target_native, sampler.info).to(device)
    net = net.to(device).eval()
    target_features = net.features(target_native).detach()
    feature_scale = target_features.pow(2).mean().clamp_min(1e-6)

    count = len(classes) * restarts
    z = noise(count, generator.config.nz, (seed, 2)).to(device).requires_grad_(True)
    labels = None if classes[0] is None else torch.tensor(classes, device=device).repeat_interleave(restarts)
    optimiser = torch.optim.Adam([z], lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    best_loss = torch.full((count,), float("inf"), device=device)
    best_z = z.detach().clone()

    def losses(latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = generator(latent, labels).float()
        pixel = (images - target).pow(2).mean(dim=(1, 2, 3))
        native = (to_native(images, sampler.info) - low) * (255.0 / (high - low))
        feature = (net.features(native) - target_features).pow(2).mean(dim=1) / feature_scale
        return pixel, feature

    was_grad = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    steps_done, stopped_early = 0, False
    try:
        for _ in tqdm(range(steps), desc="project", unit="step", disable=not progress, leave=False):
            if cancelled is not None and cancelled():
                raise ProjectionCancelled("The projection was cancelled.")
            if deadline is not None and steps_done and time.monotonic() >= deadline:
                stopped_early = True
                break
            pixel, feature = losses(z)
            prior = (z.pow(2).mean(dim=1) - 1.0).pow(2)  # stay where training vectors lie
            loss = pixel + feature_weight * feature
            with torch.no_grad():
                better = loss < best_loss
                best_loss = torch.where(better, loss, best_loss)
                best_z[better] = z.detach()[better]
            optimiser.zero_grad(set_to_none=True)
            (loss + 1e-3 * prior).sum().backward()
            optimiser.step()
            schedule.step()
            steps_done += 1
    finally:
        for parameter, flag in zip(net.parameters(), was_grad):
            parameter.requires_grad_(flag)

    with torch.no_grad():
        pixel, feature = losses(best_z)
        loss = pixel + feature_weight * feature
    winner = int(loss.argmin())
    chosen = classes[winner // restarts]
    point = Point(best_z[winner].detach().cpu(), chosen)
    reconstruction = sampler.from_noise(point.z[None], labels=None if chosen is None else torch.tensor([chosen]))[0]
    target_uint8 = target_native.round().clamp(0, 255).to(torch.uint8).cpu()
    with torch.no_grad():
        features = net.features(torch.stack([target_uint8[0], reconstruction]).to(device)).double()
    per_class = {}
    if chosen is not None:
        names = sampler.class_names
        for position, class_index in enumerate(classes):
            rows = loss[position * restarts : (position + 1) * restarts]
            per_class[names[class_index]] = round(float(rows.min()), 6)
    return Projection(
        point=point,
        label=None if chosen is None else sampler.class_names[chosen],
        target=target_uint8[0].numpy(),
        reconstruction=reconstruction.numpy(),
        feature_distance=float((features[0] - features[1]).norm()),
        pixel_distance=float((target_uint8[0].double() - reconstruction.double()).pow(2).mean().sqrt()),
        per_class=per_class,
        steps_done=steps_done,
        stopped_early=stopped_early,
    )


def describe_fit(distance: float, typical: float) -> str:
    """A projection's feature distance in words (``word: explanation``), against the typical
    distance between a held-out real image and its nearest training image."""
    ratio = distance / typical if typical > 0 else float("inf")
    if ratio <= 0.75:
        return "close: nearer to the photo than most real look-alikes are"
    if ratio <= 1.25:
        return "good: about as near as a similar real product would be"
    if ratio <= 2.0:
        return "loose: the same kind of product, with details that differ"
    return "poor: this generator cannot make an image much like the photo"


@dataclass
class PhotoProjection:
    """A photo projected and judged: how it was fitted, whether it looks like the training data
    at all (``Likeness``, asked before any word on the match), the projection, the typical
    held-out distance and what the generator expects (``expected_photo``'s text)."""

    fitted: FittedPhoto
    likeness: Likeness
    projection: Projection
    typical: float
    expected: str
    steps: int

    @property
    def match(self) -> str | None:
        """'close', 'good', 'loose' or 'poor'; None when the photo does not look like the data."""
        if not self.likeness.looks_like_data:
            return None
        return describe_fit(self.projection.feature_distance, self.typical).split(":")[0]

    def verdict(self) -> str:
        """The projection in one or a few sentences, as a user reads it: first whether the
        photo looks like the training data, then (only if it does) how well it was matched, and
        what the fitting did when the photo's background was the opposite of the data's."""
        result = self.projection
        if not self.likeness.looks_like_data:
            text = (
                f"Does not look like the training data: {'; '.join(self.likeness.reasons)}. This generator expects "
                f"{self.expected}; the nearest image it can make is shown, but it is no match."
            )
        else:
            word, explanation = describe_fit(result.feature_distance, self.typical).split(": ", 1)
            category = f" as {result.label}" if result.label else ""
            text = f"{word.capitalize()} match{category}: {explanation}."
        if self.fitted.opposite or self.fitted.inverted:
            text += " " + self.fitted.note
        if result.stopped_early:
            text += f" Stopped after {result.steps_done} of {self.steps} steps: the best fit found in the time."
        return text

    def record(self, latent_file: str = "latent.npy") -> dict[str, Any]:
        """What projection.json (and the API) says of it."""
        result = self.projection
        return {
            "label": result.label,
            "verdict": self.verdict(),
            "match": self.match,
            "feature_distance": round(result.feature_distance, 6),
            "pixel_distance": round(result.pixel_distance, 4),
            "typical_real_distance": round(self.typical, 6),
            "likeness": self.likeness.record(),
            "fit": self.fitted.record(),
            "expected": self.expected,
            "per_class_loss": result.per_class,
            "steps_done": result.steps_done,
            "stopped_early": result.stopped_early,
            "ref": latent_file if result.label is None else f"{latent_file}:{result.label}",
        }


def project_photo(
    sampler: Sampler,
    index: NeighbourIndex,
    photo: bytes | FittedPhoto,
    label: str | int | None = None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    progress: bool = False,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    invert: bool | None = None,
) -> PhotoProjection:
    """A photo (its encoded bytes, or ``fit_to_generator``'s answer) fitted as the generator
    expects (``invert`` None decides from its background), judged against the training data,
    then projected (``project``, with its ``deadline`` and ``cancelled``). What the CLI and the
    API answer."""
    fitted = photo if isinstance(photo, FittedPhoto) else fit_to_generator(photo, sampler, invert)
    native = to_native(torch.tensor(fitted.pixels)[None].float(), sampler.info)[0].round().to(torch.uint8).numpy()
    likeness = index.likeness(native, fitted.background)
    result = project(
        sampler,
        fitted.pixels,
        index.net,
        label,
        steps,
        restarts,
        seed,
        progress=progress,
        deadline=deadline,
        cancelled=cancelled,
    )
    return PhotoProjection(fitted, likeness, result, index.typical, expected_photo(sampler)["text"], steps)
