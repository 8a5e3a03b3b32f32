"""Density and coverage: fidelity and diversity measured on real-sample balls only.

Reference: Naeem, Oh, Uh, Choi & Yoo, "Reliable Fidelity and Diversity Metrics for Generative
Models", ICML 2020.

With B(x_i) the ball around real point x_i reaching its k-th nearest real neighbour::

    density  = 1/(k M) sum_j sum_i 1[y_j in B(x_i)]        (M generated points y_j)
    coverage = 1/N     sum_i 1[some y_j in B(x_i)]        (N real points x_i)

Density counts how many real balls each generated point falls into, so it is not fooled by
real outliers the way precision is, and can exceed 1 when generated images crowd dense real
regions. Coverage asks, per real point, whether anything was generated near it. Membership is
strict (``<``), as in the reference code.
"""

from __future__ import annotations

import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_features, check_same_width
from productgan.metrics.distances import distance_blocks, kth_neighbour_distances


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """(density, coverage) of generated features against real ones, chunked to bound memory."""
    real, fake = as_features(real, "real features"), as_features(fake, "generated features")
    check_same_width(("real", real), ("generated", fake))
    if not 1 <= k < len(real):
        raise ProductganError(
            f"k = {k} needs more than {k} real images, not {len(real)}; evaluate more images or lower k."
        )
    real_radii = kth_neighbour_distances(real, k)
    memberships = 0
    covered = torch.zeros(len(real), dtype=torch.bool)
    for _, distances in distance_blocks(fake, real):
        inside = distances < real_radii[None, :]
        memberships += int(inside.sum())
        covered |= inside.any(dim=0)
    return memberships / (k * len(fake)), float(covered.double().mean())
