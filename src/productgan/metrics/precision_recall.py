"""Improved precision and recall (k-nearest-neighbour manifolds).

Reference: Kynkäänniemi, Karras, Laine, Lehtinen & Aila, "Improved Precision and Recall Metric
for Assessing Generative Models", NeurIPS 2019.

Each set's manifold is the union of balls around its points, each ball reaching the point's
k-th nearest neighbour in the same set. Precision is the share of generated points inside the
real manifold (are the images realistic?); recall is the share of real points inside the
generated manifold (is the variety covered?). A point on a ball's boundary counts as inside
(``<=``), as in the reference code.
"""

from __future__ import annotations

import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_features, check_same_width
from productgan.metrics.distances import distance_blocks, kth_neighbour_distances


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones, chunked to bound memory."""
    real, fake = as_features(real, "real features"), as_features(fake, "generated features")
    check_same_width(("real", real), ("generated", fake))
    if not 1 <= k < min(len(real), len(fake)):
        raise ProductganError(
            f"k = {k} needs more than {k} real and generated images, not {len(real)} real and {len(fake)} "
            f"generated; evaluate more images or lower k."
        )
    real_radii = kth_neighbour_distances(real, k)
    fake_radii = kth_neighbour_distances(fake, k)

    fake_inside = torch.zeros(len(fake), dtype=torch.bool)
    real_inside = torch.zeros(len(real), dtype=torch.bool)
    # One pass over the fake x real distances serves both directions.
    for start, distances in distance_blocks(fake, real):
        rows = slice(start, start + len(distances))
        fake_inside[rows] = (distances <= real_radii[None, :]).any(dim=1)
        real_inside |= (distances <= fake_radii[rows, None]).any(dim=0)
    return float(fake_inside.double().mean()), float(real_inside.double().mean())
