"""Input checks shared by the metric functions: everything becomes a float64 CPU tensor.

Metrics are computed in float64 because several of them subtract large, nearly equal numbers
(traces in the Fréchet distance, squared norms in pairwise distances).
"""

from __future__ import annotations

import numpy as np
import torch

from productgan.errors import ProductganError


def as_features(values, name: str = "features", min_rows: int = 2) -> torch.Tensor:
    """A 2-D float64 CPU tensor (N x F) from a torch tensor or numpy array, checked for NaN/inf."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values))
    values = values.detach().to("cpu", torch.float64)
    if values.ndim != 2:
        raise ProductganError(f"The {name} must be a 2-D array N x F, not shape {tuple(values.shape)}.")
    if len(values) < min_rows:
        raise ProductganError(
            f"The {name} hold {len(values)} rows, but at least {min_rows} are needed; evaluate more images."
        )
    if not torch.isfinite(values).all():
        raise ProductganError(f"The {name} contain NaN or infinite values; check the images fed to the evaluator.")
    return values.contiguous()


def check_same_width(*named: tuple[str, torch.Tensor]) -> None:
    widths = {name: values.shape[1] for name, values in named}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{name} {width}" for name, width in widths.items())
        raise ProductganError(
            f"The feature sets have different widths ({listed}); extract them all with the same evaluator."
        )


def as_probabilities(values, name: str = "class probabilities") -> torch.Tensor:
    """A float64 N x K tensor of non-negative rows that sum to 1 (within 1e-6)."""
    probs = as_features(values, name, min_rows=1)
    row_sums = probs.sum(dim=1)
    if (probs < 0).any() or not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-6):
        raise ProductganError(f"The {name} must be non-negative rows that sum to 1; pass softmax outputs, not logits.")
    return probs
