"""Metrics on crafted point sets with known answers, and the evaluator on a tiny synthetic dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from productgan.data import PackedDataset
from productgan.errors import ProductganError
from productgan.metrics import (
    METRICS,
    EvaluatorNet,
    class_histogram,
    class_probabilities,
    classifier_score,
    compute_all,
    density_coverage,
    extract_features,
    fid_bootstrap,
    fid_from_features,
    frechet_distance,
    kid,
    load_or_train_evaluator,
    memorisation,
    native_images,
    neighbours,
    precision_recall,
    rarest_class_share,
    train_evaluator,
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
    monkeypatch.setattr(neighbours, "MAX_BLOCK_ELEMENTS", 7 * len(real_clusters))
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


# ----------------------------------------------------------------------------- evaluator

NATIVE, PADDED, PAD = 28, 32, 2
# No flips: they would turn one stripe angle into another, i.e. change the class.
TINY = {"widths": (8, 16, 16), "feature_dim": 16, "epochs": 4, "batch_size": 25, "lr": 0.05, "augment": False}


def blob_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """28x28 uint8 images of a striped blob: stripe angle (5) x stripe width (2) = class.

    Stripes rather than positions, because global average pooling makes the evaluator (rightly)
    indifferent to where an object sits.
    """
    rng = np.random.default_rng(seed)
    count = len(labels)
    yy, xx = np.mgrid[:NATIVE, :NATIVE] - 13.5
    angle = (labels % 5) * np.pi / 5
    frequency = np.where(labels < 5, 1 / 7, 1 / 3.5)
    phase = rng.uniform(0, 2 * np.pi, count)
    along = xx * np.cos(angle)[:, None, None] + yy * np.sin(angle)[:, None, None]
    stripes = np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    shift = rng.uniform(-2, 2, (2, count))
    dy, dx = yy - shift[0, :, None, None], xx - shift[1, :, None, None]
    envelope = np.exp(-(dy**2 + dx**2) / (2 * 7**2))
    noisy = 128 + 110 * stripes * envelope + rng.normal(0, 15, stripes.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)[:, None]


def blob_dataset(train: int = 200, test: int = 100, seed: int = 0) -> PackedDataset:
    """A packed dataset stored like Fashion-MNIST: 28x28 content padded to 32x32."""
    labels = np.arange(train + test) % 10
    images = np.zeros((train + test, 1, PADDED, PADDED), np.uint8)
    images[:, :, PAD:-PAD, PAD:-PAD] = blob_images(labels, seed)
    split = np.array([0] * train + [2] * test, np.int8)
    meta = {"native_size": [NATIVE, NATIVE], "padded_size": [PADDED, PADDED], "pad": [PAD] * 4}
    return PackedDataset(images, labels.astype(np.int64), [f"c{i}" for i in range(10)], split, meta)


def test_native_images_undo_the_pad():
    dataset = blob_dataset(train=20, test=10)
    native = native_images(dataset, "train")
    assert native.shape == (20, 1, NATIVE, NATIVE) and native.dtype == np.uint8
    np.testing.assert_array_equal(native, dataset.images[:20, :, PAD:-PAD, PAD:-PAD])


def test_evaluator_trains_caches_reloads_and_retrains_on_new_data(tmp_path):
    dataset = blob_dataset()
    cache = tmp_path / "evaluator"
    state = torch.random.get_rng_state()
    net, info = load_or_train_evaluator(dataset, cache, progress=False, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert not info["loaded_from_cache"]
    assert info["test_accuracy"] >= 0.9
    assert info["train_split_size"] == 200 and info["native_size"] == [NATIVE, NATIVE]
    assert (cache / "evaluator.safetensors").is_file()
    stored = json.loads((cache / "evaluator.json").read_text())
    assert stored["train_fingerprint"] == info["train_fingerprint"]
    assert stored["weights_sha256"].startswith("sha256:")

    test_images = native_images(dataset, "test")
    features = extract_features(net, test_images)
    assert features.dtype == torch.float64 and features.shape == (100, TINY["feature_dim"])
    probs = class_probabilities(net, test_images, batch_size=7)
    assert probs.shape == (100, 10) and torch.allclose(probs.sum(1), torch.ones(100, dtype=torch.float64))

    again, again_info = load_or_train_evaluator(dataset, cache, progress=False, **TINY)
    assert again_info["loaded_from_cache"]
    assert torch.equal(extract_features(again, test_images), features)

    # Other settings or one changed training pixel: the cache is stale.
    other = load_or_train_evaluator(dataset, tmp_path / "other", progress=False, **{**TINY, "epochs": 1})[1]
    assert other["train_fingerprint"] == info["train_fingerprint"]
    changed = blob_dataset()
    changed.images[0, 0, 10, 10] ^= 1
    retrained, retrained_info = load_or_train_evaluator(changed, cache, progress=False, **TINY)
    assert not retrained_info["loaded_from_cache"]
    assert retrained_info["train_fingerprint"] != info["train_fingerprint"]
    stored = json.loads((cache / "evaluator.json").read_text())
    assert stored["train_fingerprint"] == retrained_info["train_fingerprint"]


def test_train_evaluator_is_deterministic():
    labels = np.arange(50) % 10
    images = blob_images(labels, seed=1)
    settings = {"widths": (4, 8), "feature_dim": 8, "epochs": 1, "batch_size": 10, "progress": False}
    first = train_evaluator(images, labels, 10, seed=4, **settings).state_dict()
    second = train_evaluator(images, labels, 10, seed=4, **settings).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_evaluator_refuses_wrong_sizes_and_unlabelled_data(tmp_path):
    net = EvaluatorNet(1, 10, (NATIVE, NATIVE), widths=(4, 8), feature_dim=8).eval()
    assert extract_features(net, np.zeros((3, 1, NATIVE, NATIVE), np.uint8)).shape == (3, 8)
    with pytest.raises(ProductganError, match="native size"):
        extract_features(net, np.zeros((3, 1, PADDED, PADDED), np.uint8))
    with pytest.raises(ProductganError, match="uint8"):
        extract_features(net, np.zeros((3, 1, NATIVE, NATIVE), np.float32))

    with pytest.raises(ProductganError, match="evaluation needs class labels"):
        train_evaluator(np.zeros((4, 1, NATIVE, NATIVE), np.uint8), np.zeros(4), 1, progress=False)


def test_unlabelled_data_gets_a_rotation_evaluator(tmp_path):
    from productgan.metrics.features import ROTATION_CLASSES, rotated

    images = np.zeros((8, 1, 4, 4), np.uint8)
    images[:, 0, 0, 0] = 255  # a mark in the top-left corner shows the turn
    turned, turns = rotated(images, seed=0)
    assert set(turns.tolist()) <= {0, 1, 2, 3} and len(set(turns.tolist())) > 1
    corners = {0: (0, 0), 1: (3, 0), 2: (3, 3), 3: (0, 3)}  # np.rot90 turns counter-clockwise
    for image, k in zip(turned, turns):
        assert image[0][corners[int(k)]] == 255 and image.sum() == 255

    # Upright 'T' shapes at random places: like products, they have a top and a bottom.
    rng = np.random.default_rng(0)
    shapes = rng.integers(0, 40, (240, 1, PADDED, PADDED), dtype=np.uint8)
    for image, (dy, dx) in zip(shapes, rng.integers(-3, 4, (240, 2))):
        image[0, 8 + dy : 12 + dy, 7 + dx : 25 + dx] = 255
        image[0, 12 + dy : 24 + dy, 14 + dx : 18 + dx] = 200
    split = np.array([0] * 200 + [2] * 40, np.int8)
    meta = {"native_size": [NATIVE, NATIVE], "padded_size": [PADDED, PADDED], "pad": [PAD] * 4}
    unlabelled = PackedDataset(shapes, np.zeros(240, np.int64), ["all"], split, meta)
    net, info = load_or_train_evaluator(unlabelled, tmp_path / "cache", progress=False, **TINY)
    assert info["task"] == "rotation" and info["class_names"] == list(ROTATION_CLASSES)
    assert info["test_accuracy"] > 0.5  # well above the 0.25 of guessing: blobs show their turn
    again, cached = load_or_train_evaluator(unlabelled, tmp_path / "cache", progress=False, **TINY)
    assert cached["loaded_from_cache"]


def test_large_images_are_downscaled_before_the_network():
    net = EvaluatorNet(3, 4, (96, 128), widths=(4, 8), feature_dim=8, max_side=64).eval()
    assert net.working_size == (48, 64)
    assert class_probabilities(net, np.zeros((2, 3, 96, 128), np.uint8)).shape == (2, 4)


# ----------------------------------------------------------------------------- CAS


def test_classification_accuracy_score_on_stand_in_generators():
    from productgan.metrics import classification_accuracy_score

    train_labels = np.arange(200) % 10
    test_labels = np.arange(100) % 10
    real_train = (blob_images(train_labels, seed=1), train_labels)
    real_test = (blob_images(test_labels, seed=2), test_labels)

    def faithful(n, seed):  # new images drawn from the real distribution, labelled right
        labels = np.arange(n) % 10
        return blob_images(labels, seed=100 + seed), labels

    def mislabelled(n, seed):  # the same images with every label shifted by one class
        images, labels = faithful(n, seed)
        return images, (labels + 1) % 10

    good = classification_accuracy_score(faithful, real_train, real_test, 10, n=200, **TINY)
    bad = classification_accuracy_score(mislabelled, real_train, real_test, 10, n=200, **TINY)
    assert good["cas"] >= 0.8 and good["cas_real_baseline"] >= 0.8
    assert bad["cas"] <= 0.1  # it learned the wrong names for every class
    assert bad["cas_real_baseline"] == good["cas_real_baseline"]  # the baseline ignores the generator
    assert good["protocol"]["num_generated"] == 200 and good["protocol"]["num_test"] == 100
