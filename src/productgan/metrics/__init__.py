"""Evaluation: productgan's own evaluator network and the metrics computed on its features.

Typical use::

    net, info = load_or_train_evaluator(dataset, cache_dir)
    real = extract_features(net, native_images(dataset, "test"))
    fake, probs = features_and_probabilities(net, sampler(10_000, seed=0))
    results = compute_all(real, fake, probs, dataset.class_names)

All scores are computed on productgan's evaluator features, so they carry names of their own
(``fid_productgan``, not FID) and compare only between runs scored by the same evaluator.
"""

from productgan.metrics.cas import classification_accuracy_score
from productgan.metrics.class_histogram import class_histogram, rarest_class_share
from productgan.metrics.classifier_score import classifier_score
from productgan.metrics.density_coverage import density_coverage
from productgan.metrics.features import (
    EvaluatorNet,
    class_probabilities,
    data_fingerprint,
    extract_features,
    features_and_probabilities,
    load_or_train_evaluator,
    native_images,
    train_evaluator,
)
from productgan.metrics.frechet import fid_bootstrap, fid_from_features, frechet_distance
from productgan.metrics.kid import kid
from productgan.metrics.memorisation import memorisation
from productgan.metrics.precision_recall import precision_recall
from productgan.metrics.registry import METRICS, MetricInputs, compute_all

__all__ = [
    "METRICS",
    "EvaluatorNet",
    "MetricInputs",
    "class_histogram",
    "class_probabilities",
    "classification_accuracy_score",
    "classifier_score",
    "compute_all",
    "data_fingerprint",
    "density_coverage",
    "extract_features",
    "features_and_probabilities",
    "fid_bootstrap",
    "fid_from_features",
    "frechet_distance",
    "kid",
    "load_or_train_evaluator",
    "memorisation",
    "native_images",
    "precision_recall",
    "rarest_class_share",
    "train_evaluator",
]
