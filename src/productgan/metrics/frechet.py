"""Fréchet distance between Gaussians fitted to two feature sets (the statistic behind FID).

Reference: Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017. For
N(mu1, S1) and N(mu2, S2)::

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2)

The last trace is usually written Tr((S1 S2)^1/2); the two agree because S1 S2 and
S1^1/2 S2 S1^1/2 have the same eigenvalues, and the second form is symmetric positive
semi-definite, so a float64 symmetric eigen-decomposition computes it stably without scipy.

Computed on productgan's evaluator features this is ``fid_productgan``: it is not the Inception
FID of the literature, and its values are comparable only between runs scored with the same
evaluator.
"""

from __future__ import annotations

import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_features, check_same_width


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    # Covariances are symmetric in exact arithmetic; rounding makes them slightly not, and eigh
    # reads only one triangle, so average the two first.
    return (matrix + matrix.T) / 2


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition.

    Eigenvalues that rounding pushed slightly below zero are clipped to zero.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(_symmetric(matrix))
    roots = eigenvalues.clamp_min(0).sqrt()
    return (eigenvectors * roots) @ eigenvectors.T


def mean_and_covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased (N - 1) covariance, as numpy.cov and every FID implementation use."""
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / (len(features) - 1)


def _as_statistics(mu, sigma, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.as_tensor(mu).detach().to("cpu", torch.float64)
    sigma = torch.as_tensor(sigma).detach().to("cpu", torch.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ProductganError(
            f"The {name} statistics must be a mean of length F and an F x F covariance, not "
            f"{tuple(mu.shape)} and {tuple(sigma.shape)}."
        )
    if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise ProductganError(f"The {name} statistics contain NaN or infinite values.")
    return mu, sigma


def _distance(mu1, sqrt_sigma1, trace1, mu2, sigma2) -> float:
    inner = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt = torch.linalg.eigvalsh(_symmetric(inner)).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    value = diff @ diff + trace1 + torch.trace(sigma2) - 2 * trace_sqrt
    # The distance is non-negative; a tiny negative value is rounding, reported as 0.
    return max(float(value), 0.0)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, sigma1 = _as_statistics(mu1, sigma1, "first")
    mu2, sigma2 = _as_statistics(mu2, sigma2, "second")
    if len(mu1) != len(mu2):
        raise ProductganError(
            f"The two Gaussians have different dimensions ({len(mu1)} and {len(mu2)}); compute "
            f"both from features of the same evaluator."
        )
    return _distance(mu1, sqrtm_psd(sigma1), torch.trace(sigma1), mu2, sigma2)


def fid_from_features(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to real and generated features (N x F each)."""
    real, fake = as_features(real, "real features"), as_features(fake, "generated features")
    check_same_width(("real", real), ("generated", fake))
    return frechet_distance(*mean_and_covariance(real), *mean_and_covariance(fake))


def fid_bootstrap(real, fake, n_boot: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """(value, low, high): the Fréchet distance and a 95% bootstrap interval around it.

    What is resampled: the GENERATED features only, with replacement, ``n_boot`` times; the real
    statistics stay fixed, because they are the reference. The interval therefore describes how
    much the score moves with the particular sample of generated images.

    Resampling with replacement duplicates about a third of the images, and the Fréchet distance
    of a finite sample is biased upwards as its diversity drops, so the raw bootstrap values sit
    above the point estimate. The interval is the 2.5 and 97.5 percentiles of the bootstrap
    values re-centred on the point estimate (each shifted by value - mean of the bootstrap
    values): it keeps the spread the bootstrap measures and drops the shift resampling adds.
    """
    real, fake = as_features(real, "real features"), as_features(fake, "generated features")
    check_same_width(("real", real), ("generated", fake))
    if n_boot < 2:
        raise ProductganError(f"The bootstrap needs at least 2 resamples, not {n_boot}.")
    mu1, sigma1 = mean_and_covariance(real)
    sqrt_sigma1, trace1 = sqrtm_psd(sigma1), torch.trace(sigma1)
    value = _distance(mu1, sqrt_sigma1, trace1, *mean_and_covariance(fake))

    generator = torch.Generator().manual_seed(seed)
    replicates = torch.empty(n_boot, dtype=torch.float64)
    for b in range(n_boot):
        index = torch.randint(0, len(fake), (len(fake),), generator=generator)
        replicates[b] = _distance(mu1, sqrt_sigma1, trace1, *mean_and_covariance(fake[index]))
    shifted = replicates - replicates.mean() + value
    low, high = torch.quantile(shifted, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return value, max(low, 0.0), high
