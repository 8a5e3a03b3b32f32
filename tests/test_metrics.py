"""Metrics on crafted point sets with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from productgan.errors import ProductganError, UsageError
from productgan.metrics import (
    METRICS,
    MIN_GENERATED,
    MIN_REFERENCE,
    check_reference,
    class_histogram,
    classifier_score,
    compute_all,
    density_coverage,
    distances,
    fid_bootstrap,
    fid_from_features,
    frechet_distance,
    kid,
    memorisation,
    precision_recall,
    rarest_class_share,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny; with the CPU shared (tests beside a training job), a second
    OpenMP thread spends its time waiting for a core and makes small ops 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- point sets


def clusters(centres, per_cluster: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    """``per_cluster`` Gaussian points around each centre, float64."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.as_tensor(centres, dtype=torch.float64)
    noise = torch.randn(len(centres), per_cluster, centres.shape[1], generator=generator, dtype=torch.float64)
    return (centres[:, None, :] + spread * noise).reshape(-1, centres.shape[1])


CENTRES = [[20, 0, 0, 0], [0, 20, 0, 0], [0, 0, 20, 0], [0, 0, 0, 20]]


@pytest.fixture(scope="module")
def real_clusters() -> torch.Tensor:
    return clusters(CENTRES, 100, seed=0)


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_rotation_invariant():
    # A random rotation makes both covariances full, non-commuting-looking matrices while the
    # answer stays the diagonal closed form: this exercises the general matrix square root.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-9)
    # Shifting every feature by 1 moves the mean by sqrt(16) and leaves the covariance alone.
    assert fid_from_features(features, features + 1) == pytest.approx(16.0, rel=1e-9)
    assert fid_from_features(features.numpy(), (features + 1).numpy()) == pytest.approx(16.0, rel=1e-9)


def test_fid_survives_singular_covariances():
    # More dimensions than samples: the covariance is rank-deficient, as with dead ReLU units.
    features = torch.randn(20, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    features[:, :8] = 0.0
    value = fid_from_features(features, features)
    assert math.isfinite(value) and value == pytest.approx(0.0, abs=1e-7)


def test_fid_bootstrap_interval_contains_the_estimate_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=generator, dtype=torch.float64)
    fake = torch.randn(400, 8, generator=generator, dtype=torch.float64) * 1.2 + 0.3
    value, low, high = fid_bootstrap(real, fake, n_boot=50, seed=3)
    assert value == pytest.approx(fid_from_features(real, fake), rel=1e-12)
    assert low < value < high
    assert fid_bootstrap(real, fake, n_boot=50, seed=3) == (value, low, high)


# ----------------------------------------------------------------------------- KID


def test_kid_is_near_zero_for_identical_sets_and_positive_for_shifted_ones():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(600, 16, generator=generator, dtype=torch.float64)
    same_mean, same_std = kid(features, features, subsets=10, subset_size=200, seed=0)
    fresh_mean, _ = kid(
        features, torch.randn(600, 16, generator=generator, dtype=torch.float64), subsets=10, subset_size=200, seed=0
    )
    shifted_mean, _ = kid(features, features + 0.5, subsets=10, subset_size=200, seed=0)
    # Shared images make the cross term include k(x, x), which is large; the estimator then
    # dips slightly below zero, by about 2 (mean k(x, x) - mean k(x, y)) / (m - 1) at most.
    assert abs(same_mean) < 0.05 and same_std >= 0
    assert abs(fresh_mean) < 0.05
    assert shifted_mean > 0.5
    assert kid(features, features + 0.5, subsets=10, subset_size=200, seed=0)[0] == shifted_mean


# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_on_crafted_sets(real_clusters):
    inside = real_clusters[::2]
    assert precision_recall(real_clusters, inside)[0] == 1.0

    far = real_clusters + 1000.0
    assert precision_recall(real_clusters, far) == (0.0, 0.0)

    half = clusters(CENTRES[:2], 100, seed=1)
    precision, recall = precision_recall(real_clusters, half)
    assert precision > 0.9
    assert 0.4 < recall <= 0.5


def test_density_coverage_on_crafted_sets(real_clusters):
    same = clusters(CENTRES, 100, seed=1)
    density, coverage = density_coverage(real_clusters, same)
    assert 0.75 < density < 1.25 and coverage > 0.9

    assert density_coverage(real_clusters, real_clusters + 1000.0) == (0.0, 0.0)

    half = clusters(CENTRES[:2], 100, seed=1)
    _, coverage = density_coverage(real_clusters, half)
    assert 0.4 < coverage <= 0.5


def test_chunked_distances_give_the_same_answers(real_clusters, monkeypatch):
    fake = clusters(CENTRES[:3], 50, seed=2)
    whole = (
        precision_recall(real_clusters, fake),
        density_coverage(real_clusters, fake),
        memorisation(real_clusters, fake),
    )
    # 7 distances per block forces hundreds of ragged blocks.
    monkeypatch.setattr(distances, "MAX_BLOCK_ELEMENTS", 7 * len(real_clusters))
    chunked = (
        precision_recall(real_clusters, fake),
        density_coverage(real_clusters, fake),
        memorisation(real_clusters, fake),
    )
    assert chunked == whole


# ----------------------------------------------------------------------------- classifier metrics


def test_classifier_score_spans_one_to_the_number_of_classes():
    classes = 10
    uniform = torch.eye(classes, dtype=torch.float64)[torch.arange(200) % classes]
    assert classifier_score(uniform, splits=10)[0] == pytest.approx(classes, rel=1e-12)
    single = torch.eye(classes, dtype=torch.float64)[torch.zeros(200, dtype=torch.long)]
    assert classifier_score(single, splits=10) == (pytest.approx(1.0), pytest.approx(0.0))
    flat = torch.full((200, classes), 1 / classes, dtype=torch.float64)
    assert classifier_score(flat)[0] == pytest.approx(1.0)


def test_classifier_score_rejects_logits():
    with pytest.raises(ProductganError, match="softmax"):
        classifier_score(torch.randn(20, 3))


def test_class_histogram_and_rarest_share():
    names = ["Sneaker", "Bag", "Coat"]
    predicted = torch.tensor([0, 0, 0, 1, 0, 1])
    probs = torch.eye(3, dtype=torch.float64)[predicted] * 0.8 + 0.2 / 3
    histogram = class_histogram(probs, names)
    assert histogram["counts"] == {"Sneaker": 4, "Bag": 2, "Coat": 0}
    assert histogram["shares"] == {"Sneaker": pytest.approx(4 / 6), "Bag": pytest.approx(2 / 6), "Coat": 0.0}
    assert rarest_class_share(probs) == 0.0
    assert rarest_class_share(torch.eye(3, dtype=torch.float64)[torch.tensor([0, 1, 2, 2])]) == 0.25
    with pytest.raises(ProductganError, match="class names"):
        class_histogram(probs, names[:2])


# ----------------------------------------------------------------------------- memorisation


def test_memorisation_counts_copies_and_ignores_far_points(real_clusters):
    assert memorisation(real_clusters, real_clusters[:50]) == 1.0
    assert memorisation(real_clusters, real_clusters[:50] + 1000.0) == 0.0
    # Half copies, half points between clusters (far from every training image).
    between = torch.full((50, 4), 10.0, dtype=torch.float64)
    assert memorisation(real_clusters, torch.cat([real_clusters[:50], between])) == 0.5


def test_memorisation_counts_a_copy_of_a_duplicated_training_image(real_clusters):
    train = torch.cat([real_clusters, real_clusters[:1]])
    assert memorisation(train, real_clusters[:1] + 0.0) == 1.0
    assert memorisation(train, real_clusters[:1] + 1e-3) == 0.0


# ----------------------------------------------------------------------------- compute_all


def test_compute_all_reports_every_metric_under_productgan_names(real_clusters):
    fake = clusters(CENTRES, 30, seed=5)
    probs = torch.softmax(fake[:, :4], dim=1)
    results = compute_all(real_clusters, fake, probs, ["a", "b", "c", "d"], train_feats=real_clusters, seed=1)
    expected = {
        "fid_productgan",
        "fid_productgan_ci95",
        "kid_productgan_mean",
        "kid_productgan_std",
        "precision",
        "recall",
        "density",
        "coverage",
        "classifier_score",
        "classifier_score_std",
        "class_counts",
        "class_shares",
        "rarest_class_share",
        "memorisation_share",
        "protocol",
    }
    assert set(results) == expected
    assert not any(key in {"fid", "kid", "is", "inception_score"} for key in results)
    assert results["fid_productgan_ci95"][0] <= results["fid_productgan"] <= results["fid_productgan_ci95"][1]
    assert sum(results["class_shares"].values()) == pytest.approx(1.0)
    assert results["protocol"]["num_fake"] == 120 and results["protocol"]["kid_subset_size"] == 120
    json.dumps(results)  # plain values only, ready for metrics.jsonl

    without_train = compute_all(real_clusters, fake, probs, ["a", "b", "c", "d"], metrics=["memorisation"])
    assert without_train["memorisation_share"] is None
    assert set(METRICS) >= {"fid_productgan", "kid_productgan", "memorisation"}


# ----------------------------------------------------------------------------- registry checks


def test_the_minimum_counts_are_what_the_neighbour_metrics_need(real_clusters):
    # One image fewer than the minimum fails the metric with the larger k on that side.
    few_fake = real_clusters[:MIN_GENERATED]
    compute_all(real_clusters[:MIN_REFERENCE], few_fake, torch.full((MIN_GENERATED, 2), 0.5, dtype=torch.float64), "ab")
    with pytest.raises(ProductganError, match="k = 3"):
        precision_recall(real_clusters, real_clusters[: MIN_GENERATED - 1])
    with pytest.raises(ProductganError, match="k = 5"):
        density_coverage(real_clusters[: MIN_REFERENCE - 1], few_fake)


def test_check_reference_names_the_flag_and_the_fix():
    class Splits:
        def indices(self, split):
            return np.arange({"val": MIN_REFERENCE - 1, "test": MIN_REFERENCE}[split])

    check_reference(Splits(), "test", "--split")
    with pytest.raises(UsageError, match=r"--split: the val split holds 5 image\(s\).*larger val share"):
        check_reference(Splits(), "val", "--split")


def test_the_metrics_never_load_the_evaluator():
    import subprocess
    import sys

    code = "import sys, productgan.metrics; print('productgan.evaluator' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
