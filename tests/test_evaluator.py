"""The evaluator package on a tiny synthetic dataset: network, training, inference, cache, CAS."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from productgan.data import PackedDataset
from productgan.errors import ProductganError
from productgan.evaluator import (
    CACHE_ENV,
    ROTATION_CLASSES,
    Evaluator,
    EvaluatorConfig,
    EvaluatorNet,
    cache,
    class_probabilities,
    classification_accuracy_score,
    extract_features,
    find_evaluator,
    load_or_train_evaluator,
    native_images,
    rotated,
    train_evaluator,
)
from productgan.evaluator.cache import EvaluatorRequest, fingerprint_cache_dir
from productgan.evaluator.config import DEFAULT_CONFIG
from productgan.evaluator.inference import accuracy

NATIVE, PADDED, PAD = 28, 32, 2
# No flips: they would turn one stripe angle into another, i.e. change the class.
TINY = EvaluatorConfig(widths=(8, 16, 16), feature_dim=16, epochs=4, batch_size=25, lr=0.05, augment=False)


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
    net, info = load_or_train_evaluator(dataset, cache, TINY, progress=False)
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
    assert features.dtype == torch.float64 and features.shape == (100, TINY.feature_dim)
    probs = class_probabilities(net, test_images, batch_size=7)
    assert probs.shape == (100, 10) and torch.allclose(probs.sum(1), torch.ones(100, dtype=torch.float64))

    again, again_info = load_or_train_evaluator(dataset, cache, TINY, progress=False)
    assert again_info["loaded_from_cache"]
    assert torch.equal(extract_features(again, test_images), features)

    # Other settings or one changed training pixel: the cache is stale.
    other = load_or_train_evaluator(dataset, tmp_path / "other", replace(TINY, epochs=1), progress=False)[1]
    assert other["train_fingerprint"] == info["train_fingerprint"]
    changed = blob_dataset()
    changed.images[0, 0, 10, 10] ^= 1
    retrained, retrained_info = load_or_train_evaluator(changed, cache, TINY, progress=False)
    assert not retrained_info["loaded_from_cache"]
    assert retrained_info["train_fingerprint"] != info["train_fingerprint"]
    stored = json.loads((cache / "evaluator.json").read_text())
    assert stored["train_fingerprint"] == retrained_info["train_fingerprint"]


def test_train_evaluator_is_deterministic():
    labels = np.arange(50) % 10
    images = blob_images(labels, seed=1)
    settings = EvaluatorConfig(widths=(4, 8), feature_dim=8, epochs=1, batch_size=10, seed=4)
    first = train_evaluator(images, labels, 10, settings, progress=False).state_dict()
    second = train_evaluator(images, labels, 10, settings, progress=False).state_dict()
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
    net, info = load_or_train_evaluator(unlabelled, tmp_path / "cache", TINY, progress=False)
    assert info["task"] == "rotation" and info["class_names"] == list(ROTATION_CLASSES)
    assert info["test_accuracy"] > 0.5  # well above the 0.25 of guessing: blobs show their turn
    again, cached = load_or_train_evaluator(unlabelled, tmp_path / "cache", TINY, progress=False)
    assert cached["loaded_from_cache"]


def test_large_images_are_downscaled_before_the_network():
    net = EvaluatorNet(3, 4, (96, 128), widths=(4, 8), feature_dim=8, max_side=64).eval()
    assert net.working_size == (48, 64)
    assert class_probabilities(net, np.zeros((2, 3, 96, 128), np.uint8)).shape == (2, 4)


# ----------------------------------------------------------------------------- CAS


def test_classification_accuracy_score_on_stand_in_generators():
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

    good = classification_accuracy_score(faithful, real_train, real_test, 10, n=200, config=TINY)
    bad = classification_accuracy_score(mislabelled, real_train, real_test, 10, n=200, config=TINY)
    assert good["cas"] >= 0.8 and good["cas_real_baseline"] >= 0.8
    assert bad["cas"] <= 0.1  # it learned the wrong names for every class
    assert bad["cas_real_baseline"] == good["cas_real_baseline"]  # the baseline ignores the generator
    assert good["protocol"]["num_generated"] == 200 and good["protocol"]["num_test"] == 100


# ----------------------------------------------------------------------------- where evaluators are kept


def packed_blobs(tmp_path) -> tuple[str, PackedDataset]:
    """blob_dataset saved as a packed dataset folder, and the dataset as opened from it."""
    folder = blob_dataset().save(tmp_path / "packed")
    return str(folder), PackedDataset.load(folder)


def test_a_read_only_packed_dataset_keeps_its_evaluator_in_the_user_cache(tmp_path, monkeypatch):
    # Running as root, chmod does not stop writes, so the dataset folder is made unwritable by
    # replacing the cache's writability check rather than its permissions.
    data, dataset = packed_blobs(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "writable", lambda folder: not folder.is_relative_to(data))
    evaluator = Evaluator(data, dataset, progress=False, config=TINY)
    assert not evaluator.info["loaded_from_cache"]
    stored = fingerprint_cache_dir(evaluator.info["train_fingerprint"])
    assert stored.parent == tmp_path / "cache" / "evaluators" and stored.name.startswith("data-")
    assert evaluator.info["stored_in"] == str(stored) and (stored / "evaluator.json").is_file()
    assert not (tmp_path / "packed" / "evaluator").exists()

    again = Evaluator(data, dataset, progress=False, config=TINY)
    assert again.info["loaded_from_cache"] and again.info["stored_in"] == str(stored)
    # Another dataset in the same user cache gets a folder of its own.
    other = blob_dataset(seed=1).save(tmp_path / "other")
    monkeypatch.setattr(cache, "writable", lambda folder: tmp_path / "cache" in folder.parents)
    elsewhere = Evaluator(str(other), PackedDataset.load(other), progress=False, config=TINY).info["stored_in"]
    assert elsewhere != str(stored)


def test_an_evaluator_beside_a_read_only_dataset_is_used_as_it_is(tmp_path, monkeypatch):
    data, dataset = packed_blobs(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = Evaluator(data, dataset, progress=False, config=TINY)
    assert first.info["stored_in"] == str(tmp_path / "packed" / "evaluator")
    monkeypatch.setattr(cache, "writable", lambda folder: False)
    again = Evaluator(data, dataset, progress=False, config=TINY)
    assert again.info["loaded_from_cache"] and again.info["weights_sha256"] == first.info["weights_sha256"]
    assert not (tmp_path / "cache").exists()


def test_with_nowhere_to_store_it_the_evaluator_is_refused_before_training(tmp_path, monkeypatch):
    data, dataset = packed_blobs(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "writable", lambda folder: False)
    monkeypatch.setattr(EvaluatorRequest, "train", lambda *a, **k: pytest.fail("trained with nowhere to store"))
    with pytest.raises(ProductganError) as error:
        Evaluator(data, dataset, progress=False, config=TINY)
    message = str(error.value)
    assert str(tmp_path / "packed" / "evaluator") in message and str(tmp_path / "cache") in message
    assert message.endswith(f"set {CACHE_ENV} to a folder you can write to, with a few MB free, and run again.")


def test_a_shipped_evaluator_is_used_when_data_and_recipe_match(tmp_path, monkeypatch):
    dataset = blob_dataset()
    shipped = tmp_path / "shipped" / "blobs"
    made = load_or_train_evaluator(dataset, shipped, TINY, progress=False)[1]
    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))

    net, info = load_or_train_evaluator(dataset, tmp_path / "empty", TINY, progress=False)
    assert info["loaded_from_cache"] and info["stored_in"] == str(shipped)
    assert info["weights_sha256"] == made["weights_sha256"]
    assert not (tmp_path / "empty").exists() and not (tmp_path / "cache").exists()
    assert find_evaluator(dataset, tmp_path / "empty", TINY)[1]["stored_in"] == str(shipped)

    # Another recipe or other data: the shipped file does not describe them.
    assert find_evaluator(dataset, tmp_path / "empty", replace(TINY, epochs=1)) is None
    changed = blob_dataset()
    changed.images[0, 0, 10, 10] ^= 1
    retrained = load_or_train_evaluator(changed, tmp_path / "empty", TINY, progress=False)[1]
    assert not retrained["loaded_from_cache"] and retrained["stored_in"] == str(tmp_path / "empty")


# ----------------------------------------------------------------------------- the shipped evaluator


def test_the_package_ships_a_fashion_mnist_evaluator_of_the_default_recipe():
    assert [folder.name for folder in cache.shipped_dirs()] == ["fashion-mnist-32"]
    for folder in cache.shipped_dirs():
        info = json.loads((folder / "evaluator.json").read_text())
        shape = [info["train_split_size"], info["channels"], *info["native_size"]]
        recipe = cache.recipe_record(DEFAULT_CONFIG, info["task"], shape, info["num_classes"])
        # The same check as any cache: right fingerprint, the default recipe, intact weights.
        loaded = cache.load_evaluator(folder, info["train_fingerprint"], recipe)
        assert loaded is not None, f"{folder} no longer matches the default recipe; run benchmarks/ship_evaluator.py"
        assert info["test_accuracy_float32"] - info["test_accuracy"] <= 0.001


def test_the_shipped_evaluator_serves_the_real_fashion_mnist(tmp_path):
    from productgan.data import open_dataset

    try:
        dataset = open_dataset("fashion-mnist")  # the default packing and split
    except ProductganError:
        pytest.skip("the Fashion-MNIST files are not on this machine")
    found = find_evaluator(dataset, tmp_path / "empty")
    assert found is not None, "the shipped evaluator's fingerprint does not match Fashion-MNIST's train split"
    net, info = found
    assert info["stored_in"] == str(cache.SHIPPED_DIR / "fashion-mnist-32")
    assert info["train_fingerprint"] == EvaluatorRequest(dataset).fingerprint
    check = info["check_slice"]
    images = native_images(dataset, "test")[: check["first_test_images"]]
    labels = dataset.labels[dataset.indices("test")][: check["first_test_images"]]
    measured = accuracy(net, images, labels)
    # Within 2 images of what the shipping machine measured: other CPUs round convolutions differently.
    assert abs(measured - check["accuracy"]) <= 2 / check["first_test_images"] and measured >= 0.9
