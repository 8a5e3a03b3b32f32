"""Every metric by name, and ``compute_all``, which runs them on one set of features.

Each registry entry takes a ``MetricInputs`` and returns a dict of results under
productgan-specific names. Scores computed with productgan's evaluator carry names of their own
(``fid_productgan``, ``kid_productgan_*``, ``classifier_score``): they are not the Inception
scores of the literature and must never be reported as plain "FID", "KID" or "IS".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from productgan.config import MIN_GENERATED as MIN_GENERATED
from productgan.config import MIN_REFERENCE
from productgan.errors import UsageError
from productgan.metrics.class_histogram import class_histogram, rarest_class_share
from productgan.metrics.classifier_score import classifier_score
from productgan.metrics.common import as_features, as_probabilities, check_same_width
from productgan.metrics.density_coverage import density_coverage
from productgan.metrics.frechet import fid_bootstrap
from productgan.metrics.kid import kid
from productgan.metrics.memorisation import memorisation
from productgan.metrics.precision_recall import precision_recall

if TYPE_CHECKING:
    from productgan.data import PackedDataset

# Protocol constants, reported with every result so numbers are never compared across protocols.
FID_BOOTSTRAP_RESAMPLES = 200
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5
CLASSIFIER_SCORE_SPLITS = 10
# MIN_GENERATED and MIN_REFERENCE, the image counts these k's need, are defined in config/settings.py, whose
# checks refuse a validation setting before training starts; this module re-exports them.


def check_reference(dataset: PackedDataset, split: str, flag: str) -> None:
    """A UsageError when ``split`` holds too few images to score generated ones against."""
    count = len(dataset.indices(split))
    if count < MIN_REFERENCE:
        raise UsageError(
            f"{flag}: the {split} split holds {count} image(s), and scoring needs at least "
            f"{MIN_REFERENCE}; prepare the dataset with a larger {split} share."
        )


@dataclass
class MetricInputs:
    """Features of one evaluation: real reference, generated images, and optionally training."""

    real: torch.Tensor  # float64 N_real x F, the reference split's features
    fake: torch.Tensor  # float64 N_fake x F, the generated images' features
    fake_probs: torch.Tensor  # float64 N_fake x K, evaluator class probabilities
    class_names: list[str]
    train: torch.Tensor | None = None  # float64 N_train x F, for memorisation
    seed: int = 0


def _fid(inputs: MetricInputs) -> dict[str, Any]:
    value, low, high = fid_bootstrap(inputs.real, inputs.fake, FID_BOOTSTRAP_RESAMPLES, inputs.seed)
    return {"fid_productgan": value, "fid_productgan_ci95": [low, high]}


def _kid(inputs: MetricInputs) -> dict[str, Any]:
    mean, std = kid(inputs.real, inputs.fake, KID_SUBSETS, KID_SUBSET_SIZE, inputs.seed)
    return {"kid_productgan_mean": mean, "kid_productgan_std": std}


def _precision_recall(inputs: MetricInputs) -> dict[str, Any]:
    precision, recall = precision_recall(inputs.real, inputs.fake, PRECISION_RECALL_K)
    return {"precision": precision, "recall": recall}


def _density_coverage(inputs: MetricInputs) -> dict[str, Any]:
    density, coverage = density_coverage(inputs.real, inputs.fake, DENSITY_COVERAGE_K)
    return {"density": density, "coverage": coverage}


def _classifier_score(inputs: MetricInputs) -> dict[str, Any]:
    splits = min(CLASSIFIER_SCORE_SPLITS, len(inputs.fake_probs))
    mean, std = classifier_score(inputs.fake_probs, splits)
    return {"classifier_score": mean, "classifier_score_std": std}


def _class_histogram(inputs: MetricInputs) -> dict[str, Any]:
    histogram = class_histogram(inputs.fake_probs, inputs.class_names)
    return {
        "class_counts": histogram["counts"],
        "class_shares": histogram["shares"],
        "rarest_class_share": rarest_class_share(inputs.fake_probs),
    }


def _memorisation(inputs: MetricInputs) -> dict[str, Any]:
    # Without training features there is nothing to compare with; None says "not measured".
    share = None if inputs.train is None else memorisation(inputs.train, inputs.fake)
    return {"memorisation_share": share}


METRICS: dict[str, Callable[[MetricInputs], dict[str, Any]]] = {
    "fid_productgan": _fid,
    "kid_productgan": _kid,
    "precision_recall": _precision_recall,
    "density_coverage": _density_coverage,
    "classifier_score": _classifier_score,
    "class_histogram": _class_histogram,
    "memorisation": _memorisation,
}


def compute_all(
    real_feats,
    fake_feats,
    fake_probs,
    class_names,
    train_feats=None,
    seed: int = 0,
    metrics: list[str] | None = None,
) -> dict[str, Any]:
    """Run the named registry metrics (all by default) and return one flat dict of results.

    Keys: fid_productgan, fid_productgan_ci95, kid_productgan_mean, kid_productgan_std,
    precision, recall, density, coverage, classifier_score, classifier_score_std, class_counts,
    class_shares, rarest_class_share, memorisation_share (None without ``train_feats``), and
    ``protocol``: sample counts, feature width, seed and the constants each metric used. The
    caller adds what only it knows (the evaluator's weights_sha256, the reference split).
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise UsageError(f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    real = as_features(real_feats, "real features")
    fake = as_features(fake_feats, "generated features")
    train = None if train_feats is None else as_features(train_feats, "training features")
    named = [("real", real), ("generated", fake)] + ([("training", train)] if train is not None else [])
    check_same_width(*named)
    probs = as_probabilities(fake_probs, "generated class probabilities")
    inputs = MetricInputs(real, fake, probs, [str(name) for name in class_names], train, int(seed))

    results: dict[str, Any] = {}
    for name in names:
        results.update(METRICS[name](inputs))
    results["protocol"] = {
        "metrics": names,
        "num_real": len(real),
        "num_fake": len(fake),
        "num_train": None if train is None else len(train),
        "feature_dim": real.shape[1],
        "seed": int(seed),
        "fid_bootstrap_resamples": FID_BOOTSTRAP_RESAMPLES,
        "fid_ci": "95% percentile interval of generated-set bootstrap, re-centred on the estimate",
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": min(KID_SUBSET_SIZE, len(real), len(fake)),
        "precision_recall_k": PRECISION_RECALL_K,
        "density_coverage_k": DENSITY_COVERAGE_K,
        "classifier_score_splits": min(CLASSIFIER_SCORE_SPLITS, len(probs)),
    }
    return results
