"""A real product photo projected into the generator: the latent vector (and category) that
reproduces it best.

The photo first goes through the fitting ``prepare`` gave the run's data (colour mode,
background, pad or crop, size), so the generator is asked for the same kind of picture it
learned. Then latent vectors are optimised with Adam against two distances to the fitted photo:
the pixels at the training size and the features of productgan's own evaluator (a perceptual
distance that needs nothing downloaded). A conditional generator is tried in every category (or
the one given), each from several random starts, all in one batch; the best fit wins.

How good a projection is reads off its feature distance next to ``typical``: the median distance
between a held-out real image and its nearest training image (``productgan.explore.neighbours``). A
reconstruction about that close is as near to the photo as a different real product of the same
kind would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from productgan.data.photos import MAX_FILE_BYTES, Options, load_image
from productgan.data.pixels import to_native
from productgan.data.prepare import fit_fashion_mnist
from productgan.errors import UsageError
from productgan.evaluator import EvaluatorNet
from productgan.explore.latent import Point
from productgan.generator.latents import noise
from productgan.generator.sampler import Sampler

DEFAULT_STEPS, DEFAULT_RESTARTS = 200, 2  # measured in docs/explore.md: more costs time, gains little
MAX_STEPS = 5000
MAX_RESTARTS = 16
MAX_PHOTO_BYTES = 20 * 2**20  # an upload or a file larger than this is refused unread


def fit_photo(data: bytes, meta: dict, image_size: int, channels: int) -> np.ndarray:
    """Encoded image bytes -> uint8 C x S x S at the training size, fitted as ``prepare`` fitted
    the run's data (``meta`` is the packed dataset's, as recorded in the export). Raises a
    UsageError saying why a file cannot be used."""
    if len(data) > MAX_PHOTO_BYTES:
        raise UsageError(f"The photo is {len(data) / 2**20:.0f} MiB; at most {MAX_PHOTO_BYTES // 2**20} MiB is taken.")
    try:
        if meta.get("source") == "fashion-mnist" or meta.get("dataset") == "fashion-mnist":
            native = meta.get("native_size") or [28, 28]
            background = int(meta.get("background") or 0)
            options = Options(int(native[0]), 1, "pad", (background,) * 3, MAX_FILE_BYTES)
            return fit_fashion_mnist(load_image(data, options), image_size)[0][0]
        background = meta.get("background") or [255, 255, 255]
        if isinstance(background, int):
            background = [background] * 3
        options = Options(image_size, channels, meta.get("fit") or "pad", tuple(background), MAX_FILE_BYTES)
        return load_image(data, options)
    except ValueError as error:
        raise UsageError(f"The photo cannot be used: it is {error}.")


@dataclass
class Projection:
    """The best fit: its point, the fitted photo and the reconstruction (uint8 native C x H x W),
    their distances (evaluator features; pixels as root mean square on 0..255), and the lowest
    loss reached in each category tried (name -> loss; conditional generators)."""

    point: Point
    label: str | None
    target: np.ndarray
    reconstruction: np.ndarray
    feature_distance: float
    pixel_distance: float
    per_class: dict[str, float]


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
) -> Projection:
    """Fit a latent vector (and category) to ``photo``, a uint8 C x S x S image at the training
    size (``fit_photo``'s output)."""
    if not 1 <= steps <= MAX_STEPS:
        raise UsageError(f"The projection takes between 1 and {MAX_STEPS} steps, not {steps}.")
    if not 1 <= restarts <= MAX_RESTARTS:
        raise UsageError(f"The projection takes between 1 and {MAX_RESTARTS} restarts, not {restarts}.")
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
    try:
        for _ in tqdm(range(steps), desc="project", unit="step", disable=not progress, leave=False):
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
    )
