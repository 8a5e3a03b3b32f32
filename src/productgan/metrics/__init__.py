"""Metrics on features and class probabilities: pure functions, one file per metric, and a registry.

Typical use::

    results = compute_all(real_feats, fake_feats, fake_probs, class_names)

The features come from productgan's own evaluator (``productgan.evaluator``), so every score
carries a name of its own (``fid_productgan``, not FID) and compares only between runs scored by
the same evaluator. Nothing here imports the evaluator: the metrics take tensors.
"""

from productgan.metrics.class_histogram import class_histogram, rarest_class_share
from productgan.metrics.classifier_score import classifier_score
from productgan.metrics.density_coverage import density_coverage
from productgan.metrics.frechet import fid_bootstrap, fid_from_features, frechet_distance
from productgan.metrics.kid import kid
from productgan.metrics.memorisation import memorisation
from productgan.metrics.precision_recall import precision_recall
from productgan.metrics.registry import (
    METRICS,
    MIN_GENERATED,
    MIN_REFERENCE,
    MetricInputs,
    check_reference,
    compute_all,
)

__all__ = [
    "METRICS",
    "MIN_GENERATED",
    "MIN_REFERENCE",
    "MetricInputs",
    "check_reference",
    "class_histogram",
    "classifier_score",
    "compute_all",
    "density_coverage",
    "fid_bootstrap",
    "fid_from_features",
    "frechet_distance",
    "kid",
    "memorisation",
    "precision_recall",
    "rarest_class_share",
]
