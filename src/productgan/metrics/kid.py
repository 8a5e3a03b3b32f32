"""Kernel Inception Distance on productgan's evaluator features (``kid_productgan``).

Reference: Bińkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs", ICLR 2018.
KID is the squared maximum mean discrepancy with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, d the feature width, estimated without bias on random subsets::

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m(m-1)) + sum_{i != j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2

Unlike FID it has an unbiased estimator, so it can be compared across sample sizes, and it can
be slightly negative when the two sets come from the same distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_features, check_same_width


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between two equally sized samples with the cubic polynomial kernel."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * k_xy.sum() / (m * m))


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of unbiased MMD^2 over ``subsets`` random subsets of each set.

    Each subset draws ``min(subset_size, len(real), len(fake))`` rows without replacement from
    each set, as torch-fidelity and clean-fid do; std is the population standard deviation
    over subsets (it shows the subset noise, not a standard error).
    """
    real, fake = as_features(real, "real features"), as_features(fake, "generated features")
    check_same_width(("real", real), ("generated", fake))
    if subsets < 1:
        raise ProductganError(f"KID needs at least 1 subset, not {subsets}.")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ProductganError(f"KID needs subsets of at least 2 images, not {size}.")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = real[torch.from_numpy(rng.choice(len(real), size, replace=False))]
        y = fake[torch.from_numpy(rng.choice(len(fake), size, replace=False))]
        values[s] = mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())
