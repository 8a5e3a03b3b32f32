"""The classifier score: the Inception Score computed with productgan's evaluator classifier.

Reference: Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen, "Improved Techniques for
Training GANs", NeurIPS 2016. With p(y|x) the classifier's class probabilities::

    score = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x)

It is high when each image is confidently one class (sharp p(y|x)) and the classes are used
evenly (flat p(y)); it ranges from 1 to the number of classes K. Because the classifier is
productgan's evaluator, not Inception, it is called ``classifier_score``, not IS.
"""

from __future__ import annotations

import torch

from productgan.errors import ProductganError
from productgan.metrics.common import as_probabilities


def classifier_score(probs, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the score over ``splits`` consecutive equal parts, as the reference does.

    std is the population standard deviation over the parts.
    """
    probs = as_probabilities(probs)
    if not 1 <= splits <= len(probs):
        raise ProductganError(
            f"The classifier score needs at least one image per split, but got {len(probs)} "
            f"images for {splits} splits; evaluate more images or use fewer splits."
        )
    scores = []
    for part in torch.tensor_split(probs, splits):
        marginal = part.mean(dim=0, keepdim=True)
        # xlogy makes 0 * log 0 = 0, so confident one-hot rows need no epsilon.
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(dim=1)
        scores.append(torch.exp(kl.mean()))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(correction=0))
