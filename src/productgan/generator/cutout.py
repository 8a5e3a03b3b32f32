"""Images a catalogue can place: each generated image cropped to its product's box with a margin
(``crop="product"``), and written with an alpha channel that makes the data's background
transparent (``background="transparent"``).

The product is what is off the background colour ``prepare`` recorded (data/product.py's mask).
The matte is a soft ramp on each pixel's distance to that colour: transparent at or below
ALPHA_CLEAR, opaque at or above ALPHA_SOLID, linear between; where it is partial the colour is
un-blended from the background (``(pixel - background * (1 - alpha)) / alpha``), so an edge laid on
another colour keeps no fringe of the old one. Composited on the recorded background, a PNG gives
back the generated pixels (within a level of rounding).

Transparency is only honest on a plain background, which is measured, not assumed
(``background_share``): the share of the border pixels of UNIFORM_IMAGES of the generator's own
images (seed UNIFORM_SEED, temperature 1) within MASK_THRESHOLD of the recorded colour. Below
UNIFORM_BOUND it is refused, with the share in the sentence; so is either option when the export
records no background at all. Fashion-MNIST's training images give 0.887 and a generator trained
on them 0.883 (its trousers and shirts touch the border); uniform noise gives 0.097; photos of
another shape padded onto a background colour of their own give about half (the pad alone).

Typical use::

    cutout = plan_cutout(sampler, crop="product", background="transparent")
    pictures = cutout.pictures(sampler(n=16, seed=7).numpy())   # H x W x (C + 1) each, own sizes
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from productgan.data.product import (
    MASK_THRESHOLD,
    background_values,
    distance_to_background,
    product_box,
    product_mask,
)
from productgan.errors import UsageError
from productgan.generator.grid import make_grid
from productgan.generator.sampler import Sampler

CROPS = ("none", "product")
BACKGROUNDS = ("keep", "transparent")
# The margin around a product's box: this share of the box's longer side (at least one pixel) on
# every side, as far as the canvas goes; a crop never invents pixels the generator did not make.
CROP_MARGIN = 0.1
# The alpha ramp, in levels of the largest channel difference from the background: half the mask
# threshold is the noise of a generated background (transparent), twice it is surely the product
# (opaque); the mask threshold itself gets alpha 1/3.
ALPHA_CLEAR = MASK_THRESHOLD // 2
ALPHA_SOLID = 2 * MASK_THRESHOLD
# The plain-background measurement: a fixed batch of the generator's own images, their one-pixel
# border, and the share of it that must be background for transparency.
UNIFORM_IMAGES = 256
UNIFORM_SEED = 0
UNIFORM_BOUND = 0.75


def check_options(crop: str, background: str) -> None:
    """One sentence unless ``crop`` and ``background`` are values these options have."""
    if crop not in CROPS:
        raise UsageError(f"crop must be none or product, not {crop!r}.")
    if background not in BACKGROUNDS:
        raise UsageError(f"background must be keep or transparent, not {background!r}.")


def check_npy(crop: str) -> None:
    """An array holds images of one size: cropping to each product's box is refused for .npy."""
    if crop != "none":
        raise UsageError(
            "A .npy array holds images of one size and crop product gives each image its own, so write "
            "a folder of PNGs or a .png grid, or leave crop at none."
        )


def recorded_background(info: dict, channels: int) -> np.ndarray:
    """The background colour an export records, as ``channels`` values 0..255, or one sentence when
    it records none (``background_values`` would assume white, which may not be the data's) or
    none that is a pixel value."""
    recorded = info.get("background")
    try:
        raw = np.asarray(recorded, dtype=np.float64)  # a grey level or R, G, B
        values = background_values(info, channels)
    except (TypeError, ValueError):  # a name, a dict: nothing a pixel can be compared with
        raw = values = None
    usable = recorded is not None and values is not None and raw.ndim <= 1 and raw.size in (1, 3)
    if not (usable and values.shape == (channels,) and 0 <= raw.min() <= raw.max() <= 255):
        what = "none" if recorded is None else f"{str(recorded)[:40]!r}, which is no pixel value"
        raise UsageError(
            "Cropping to the product and a transparent background need the background colour the data was "
            f"prepared on, and this export records {what}; export the generator again from its run "
            "(productgan export RUN_DIR), or keep crop none and background keep."
        )
    return values


def border(height: int, width: int, ring: int = 1) -> np.ndarray:
    """bool H x W: the ``ring`` outermost pixels on every side."""
    mask = np.ones((height, width), dtype=bool)
    mask[ring : height - ring, ring : width - ring] = False
    return mask


def border_share(images: np.ndarray, background: np.ndarray) -> float:
    """The share of the border pixels of uint8 N x C x H x W ``images`` that are background
    (within MASK_THRESHOLD of ``background``, as the product mask draws the line)."""
    distance = distance_to_background(images, background)
    return float((distance[:, border(*distance.shape[1:])] <= MASK_THRESHOLD).mean())


def background_share(sampler: Sampler) -> float:
    """``border_share`` of UNIFORM_IMAGES of ``sampler``'s images (seed UNIFORM_SEED, temperature
    1, every class in turn): a property of the generator, whatever a request asks."""
    background = recorded_background(sampler.info, sampler.generator.channels)
    images = sampler(n=UNIFORM_IMAGES, seed=UNIFORM_SEED, temperature=1.0).numpy()
    return border_share(images, background)


def check_plain(share: float, background: np.ndarray) -> None:
    """One sentence, with the measured share, when it is below UNIFORM_BOUND."""
    if share < UNIFORM_BOUND:
        shown = int(round(background[0])) if np.ptp(background) == 0 else [int(round(v)) for v in background]
        raise UsageError(
            f"A transparent background needs a plain one, and only {share:.1%} of the border pixels of this "
            f"generator's images are within {MASK_THRESHOLD} levels of the recorded background {shown} (at least "
            f"{UNIFORM_BOUND:.0%} must be), so keep the background, or crop to the product alone."
        )


def crop_box(image: np.ndarray, background: np.ndarray, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """The crop of one uint8 C x H x W image: its product's box (top, bottom, left, right; the
    last two exclusive) with ``margin`` of its longer side around it, within the canvas; the whole
    canvas when no pixel is the product's."""
    _, height, width = image.shape
    box = product_box(product_mask(image[None], background)[0])
    if box is None:
        return 0, height, 0, width
    top, bottom, left, right = box
    pad = max(1, math.ceil(margin * max(bottom - top, right - left)))
    return max(0, top - pad), min(height, bottom + pad), max(0, left - pad), min(width, right + pad)


def alpha_matte(images: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint8 N x C x H x W -> uint8 N x H x W: 0 on the background, 255 on the product, the ramp
    from ALPHA_CLEAR to ALPHA_SOLID between."""
    distance = distance_to_background(images, background)
    ramp = (distance - ALPHA_CLEAR) / (ALPHA_SOLID - ALPHA_CLEAR)
    return np.rint(np.clip(ramp, 0.0, 1.0) * 255).astype(np.uint8)


def with_alpha(images: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint8 N x C x H x W -> uint8 N x (C + 1) x H x W: the colour un-blended from the background
    where the alpha (the last channel) is partial, the background colour where it is 0."""
    images = np.asarray(images)
    alpha = alpha_matte(images, background)
    share = alpha[:, None].astype(np.float64) / 255  # the alpha written, so compositing gives the pixel back
    colour = np.asarray(background, dtype=np.float64)[None, :, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        unblended = (images - colour * (1 - share)) / share
    unblended = np.where(share > 0, unblended, colour)
    return np.concatenate([np.rint(np.clip(unblended, 0, 255)).astype(np.uint8), alpha[:, None]], axis=1)


@dataclass(frozen=True)
class Cutout:
    """What ``crop`` and ``background`` ask of a generator's images, checked (``plan_cutout``);
    ``colour``: the recorded background, None when neither option is on."""

    crop: str = "none"
    background: str = "keep"
    colour: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self.crop != "none" or self.background != "keep"

    def pictures(self, images: np.ndarray) -> list[np.ndarray]:
        """uint8 N x C x H x W -> one uint8 H x W x C' picture each (C' = C + 1 with an alpha
        channel), each cropped to its product when asked, so of its own size; the images as they are
        (C x H x W) when neither option is on."""
        images = np.asarray(images)
        if not self.active:
            return list(images)
        boxes = [crop_box(image, self.colour) if self.crop == "product" else None for image in images]
        if self.background == "transparent":
            images = with_alpha(images, self.colour)
        pictures = []
        for image, box in zip(images, boxes):
            if box is not None:
                top, bottom, left, right = box
                image = image[:, top:bottom, left:right]
            pictures.append(np.ascontiguousarray(image.transpose(1, 2, 0)))
        return pictures

    def array(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x C x H x W as a .npy holds it: with the alpha channel last when asked (N x
        (C + 1) x H x W), as they are otherwise; a crop, which gives images of different sizes, is
        refused before."""
        check_npy(self.crop)
        return with_alpha(images, self.colour) if self.background == "transparent" else np.asarray(images)

    def grid(self, images: np.ndarray, nrow: int | None = None) -> np.ndarray:
        """One H' x W' x C' grid picture, as ``make_grid`` lays it out: crops centred on a common
        cell (the largest crop's height and width) filled with the background, transparent when
        asked; the gaps between cells are 0 (black, or transparent). ``make_grid``'s own grid when
        neither option is on."""
        if not self.active:
            return make_grid(images, nrow)
        pictures = self.pictures(images)
        height = max(p.shape[0] for p in pictures)
        width = max(p.shape[1] for p in pictures)
        fill = self.colour if self.colour is not None else np.zeros(pictures[0].shape[2])
        if self.background == "transparent":
            fill = np.append(fill, 0)
        cells = np.empty((len(pictures), pictures[0].shape[2], height, width), dtype=np.uint8)
        cells[:] = np.rint(np.asarray(fill))[None, :, None, None].astype(np.uint8)
        for cell, picture in zip(cells, pictures):
            top, left = (height - picture.shape[0]) // 2, (width - picture.shape[1]) // 2
            cell[:, top : top + picture.shape[0], left : left + picture.shape[1]] = picture.transpose(2, 0, 1)
        return make_grid(cells, nrow)


# The images as they are: no crop, the background kept.
WHOLE = Cutout()


def plan_cutout(
    sampler: Sampler,
    crop: str = "none",
    background: str = "keep",
    share: Callable[[Sampler], float] = background_share,
) -> Cutout:
    """The Cutout ``crop`` and ``background`` ask of ``sampler``'s images, or one sentence: for
    either option when the export records no background; for ``transparent`` when ``share``
    (``background_share``, or a caller's cached copy of it) is below UNIFORM_BOUND. Cheap unless
    transparency is asked, and always before any image of the request is made."""
    check_options(crop, background)
    if crop == "none" and background == "keep":
        return WHOLE
    colour = recorded_background(sampler.info, sampler.generator.channels)
    if background == "transparent":
        check_plain(share(sampler), colour)
    return Cutout(crop, background, colour)
