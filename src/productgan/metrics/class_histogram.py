"""Which classes the generator produces, according to the evaluator classifier.

Each generated image counts for the class with the highest probability. A class whose share
drops towards zero is one the generator has stopped making: the most direct alarm for mode
collapse in a labelled product catalogue. A balanced generator on a balanced dataset gives every
class a share near 1/K.
"""

from __future__ import annotations

import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_probabilities


def _predicted_counts(probs, num_names: int | None = None) -> torch.Tensor:
    probs = as_probabilities(probs)
    if num_names is not None and probs.shape[1] != num_names:
        raise ProductganError(
            f"The class probabilities have {probs.shape[1]} columns but {num_names} class names "
            f"were given; use the class names of the evaluator's dataset."
        )
    return torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])


def class_histogram(probs, class_names) -> dict[str, dict[str, float]]:
    """{"counts": {class: images}, "shares": {class: share of images}} by predicted class."""
    names = [str(name) for name in class_names]
    counts = _predicted_counts(probs, len(names))
    total = int(counts.sum())
    return {
        "counts": {name: int(count) for name, count in zip(names, counts)},
        "shares": {name: int(count) / total for name, count in zip(names, counts)},
    }


def rarest_class_share(probs) -> float:
    """Share of images predicted as the least produced class (0 when a class is never made)."""
    counts = _predicted_counts(probs)
    return float(counts.min()) / float(counts.sum())
