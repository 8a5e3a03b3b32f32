"""Shared fixtures: tiny, seeded stand-ins for Fashion-MNIST that every test can use.

How the tests stay fast: ``fake_fmnist`` writes seeded Fashion-MNIST look-alikes (200 train and
50 test images as gzipped idx files) and ``fake_packed`` packs them at 32x32 (180 train, 20 val,
50 test); ``one_torch_thread`` pins torch to one thread for the session, and ``own_user_cache``
points PRODUCTGAN_CACHE at a folder of the session's own (some tests give theirs a fresh one).
tests/helpers.py holds ``tiny_config`` (batch 16, 6 steps, nz 8, ngf = ndf = 4, fp32, a grid of
4), ``train_tiny_run`` (a two-step conditional run to query), ``sigterm_after_step`` (stop
training after a given step), ``assert_close`` and ``dead_pid``. tests/test_distributed.py gives
every torchrun a timeout. Slow checks live in benchmarks/, which print figures and are not
tests (docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

FAKE_TRAIN = 200
FAKE_TEST = 50
IDX_FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def encode_idx(array: np.ndarray) -> bytes:
    """The idx bytes of a uint8 array: magic 0x0000080<ndim>, big-endian dims, raw data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def _write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = encode_idx(array)
    # mtime=0 keeps the gzip bytes identical from run to run.
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_fashion_mnist_arrays(n_train: int = FAKE_TRAIN, n_test: int = FAKE_TEST, seed: int = 0):
    """Seeded uint8 28x28 images with labels cycling 0..9, keyed like the idx file names."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }


@pytest.fixture
def write_idx():
    """``write_idx(path, array, gz=True)`` writes a uint8 array as an idx file."""
    return _write_idx


@pytest.fixture
def make_fake_fmnist():
    """``make_fake_fmnist(folder, n_train=200, n_test=50, gz=True)`` writes the four idx files."""

    def make(folder, n_train: int = FAKE_TRAIN, n_test: int = FAKE_TEST, gz: bool = True):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key, array in fake_fashion_mnist_arrays(n_train, n_test).items():
            name = IDX_FILE_NAMES[key] + (".gz" if gz else "")
            _write_idx(folder / name, array, gz=gz)
        return folder

    return make


@pytest.fixture
def fake_fmnist(tmp_path, make_fake_fmnist) -> Path:
    """A folder holding gzipped Fashion-MNIST look-alikes: 200 train and 50 test images."""
    return make_fake_fmnist(tmp_path / "fake-fashion-mnist")


@pytest.fixture
def fake_packed(tmp_path, fake_fmnist) -> Path:
    """A packed 32x32 dataset built from ``fake_fmnist``: 180 train, 20 val, 50 test."""
    from productgan.data import prepare

    return prepare(fake_fmnist, tmp_path / "packed", image_size=32, val_size=20, seed=0)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny test models run fastest on one thread, and a second pool would fight any other job."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def own_user_cache(tmp_path_factory):
    """Caches the code keeps in the user's folder (evaluators, precision measurements) go to a
    folder of the test session's own, never the user's."""
    previous = os.environ.get("PRODUCTGAN_CACHE")
    os.environ["PRODUCTGAN_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if previous is None:
        os.environ.pop("PRODUCTGAN_CACHE", None)
    else:
        os.environ["PRODUCTGAN_CACHE"] = previous
