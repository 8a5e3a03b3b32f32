"""Does a photo look like the training data at all? ``Likeness``: four tests, each calibrated on
the held-out real images of a run's ``NeighbourIndex`` (explore/neighbours.py) so that it calls at
most UNLIKE_QUANTILE of them unlike: the photo's nearest training image in evaluator features and
in pixel thumbnails, a plain border, and a product that stands out from it
(``plain_background``). A projection's verdict asks this first (explore/projection.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from productgan.explore.neighbours import NeighbourIndex


# Each test of ``likeness`` calls at most this share of held-out real images unlike the data.
UNLIKE_QUANTILE = 0.005

PLAIN_LEVEL = 32  # grey levels (0..255) within which a pixel has the background's colour


def plain_background(image_uint8: np.ndarray, own: np.ndarray | None = None) -> tuple[float | None, float, float]:
    """How much an image looks like a product on a plain background, in grey: (the border's
    median grey, the share of the border within PLAIN_LEVEL of it, the share of the box around
    the pixels that are not which is not either: the product). The border: the pixels within a
    14th of the side of the edges of the area ``own`` (H x W, the photo's own pixels rather than
    padding; all by default) covers. When that border is mostly not the photo's own (a product cut
    out on a transparent sheet, filled with the data's background), the whole image is measured
    and the median is None. A product photo has a plain border and a product that stands out; a
    landscape has an uneven border, or nothing in front of it."""
    grey = np.asarray(image_uint8, dtype=np.float32).mean(axis=0)  # C x H x W -> H x W
    whole = np.ones(grey.shape, bool)
    own = whole if own is None else np.asarray(own, bool)
    rows, columns = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
    if not len(rows):
        own, rows, columns = whole, np.arange(grey.shape[0]), np.arange(grey.shape[1])
    width = max(1, grey.shape[-1] // 14)
    frame = np.zeros_like(own)
    frame[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] = True
    frame[rows[0] + width : rows[-1] + 1 - width, columns[0] + width : columns[-1] + 1 - width] = False
    ring = frame & own
    transparent = ring.sum() < 0.5 * frame.sum()
    if transparent:
        own = whole
        ring = np.zeros_like(own)
        ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    level = float(np.median(grey[ring]))
    apart = (np.abs(grey - level) > PLAIN_LEVEL) & own
    border = float(1.0 - apart[ring].mean())
    found_rows, found_columns = np.flatnonzero(apart.any(axis=1)), np.flatnonzero(apart.any(axis=0))
    product = 0.0
    if len(found_rows):
        box = (slice(found_rows[0], found_rows[-1] + 1), slice(found_columns[0], found_columns[-1] + 1))
        product = float(apart[box][own[box]].mean())
    return (None if transparent else level), border, product


@dataclass
class Likeness:
    """Whether an image looks like the training data, by four tests, each of which calls at most
    ``UNLIKE_QUANTILE`` of the held-out real images unlike: its evaluator-feature and thumbnail
    distances to the nearest training image are no larger, and its plain-border and product
    shares (``plain_background``) no smaller, than all but that share of the held-out images'.
    ``reasons``: a phrase per test failed; none when it looks like the data."""

    feature_distance: float
    thumbnail_distance: float
    border_share: float
    product_share: float
    reasons: list[str]

    @property
    def looks_like_data(self) -> bool:
        return not self.reasons

    @classmethod
    def judge(cls, index: NeighbourIndex, feature: float, thumbnail: float, border: float, product: float):
        reasons = []
        limit = _held_out_limit(index.reference_distances, above=True)
        if feature > limit:
            reasons.append(
                f"its features are farther from every training image ({feature:.2f}) than real held-out images "
                f"are ({limit:.2f} at most)"
            )
        if thumbnail > _held_out_limit(index.reference_thumbnail_distances, above=True):
            reasons.append("its pixels are farther from every training image than real held-out images' are")
        limit = _held_out_limit(index.reference_backgrounds[:, 0], above=False)
        if border < limit:
            reasons.append(f"it has no plain background ({border:.0%} of its border is, against {limit:.0%} at least)")
        if product < _held_out_limit(index.reference_backgrounds[:, 1], above=False):
            reasons.append("no product stands out from its background")
        return cls(feature, thumbnail, border, product, reasons)

    def record(self) -> dict:
        """As projection.json and the API write it."""
        return {
            "looks_like_training_data": self.looks_like_data,
            "nearest_training_distance": round(self.feature_distance, 6),
            "nearest_training_thumbnail_distance": round(self.thumbnail_distance, 4),
            "plain_border_share": round(self.border_share, 4),
            "product_share": round(self.product_share, 4),
            "unlike_because": self.reasons,
        }


def _held_out_limit(values: np.ndarray, above: bool) -> float:
    """The value past which (above it, or below it) only UNLIKE_QUANTILE of the held-out ``values``
    lie. Fewer than 5 / UNLIKE_QUANTILE images do not show that tail, so there the limit lies
    beyond the farthest of them by half its distance from their median (small data is not called
    unlike because its few held-out images happen to be alike)."""
    values = np.asarray(values, dtype=np.float64)
    median = float(np.median(values))
    if len(values) >= 5 / UNLIKE_QUANTILE:
        return float(np.quantile(values, 1 - UNLIKE_QUANTILE if above else UNLIKE_QUANTILE))
    farthest = float(values.max() if above else values.min())
    return farthest + 0.5 * (farthest - median)
