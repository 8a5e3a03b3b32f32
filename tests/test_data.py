"""Fashion-MNIST reading, splitting, fitting and the packed dataset format."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from productgan.data import (
    FASHION_MNIST_CLASSES,
    FILES,
    SPLITS,
    PackedDataset,
    build_fashion_mnist,
    fashion_mnist,
    find_fashion_mnist,
    fit_fashion_mnist,
    is_packed_dataset,
    load_fashion_mnist,
    open_dataset,
    packed,
    prepare,
    read_idx,
    search_folders,
    stratified_split,
)
from productgan.errors import ProductganError, UsageError

REAL_FOLDER = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def isolated_search(monkeypatch, tmp_path):
    """No PRODUCTGAN_DATA, no system copy, an empty HOME: only what a test puts there counts."""
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FOLDER", tmp_path / "system-fashion-mnist")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _idx_path(folder: Path, key: str) -> Path:
    return folder / f"{FILES[key]}.gz"


def _raw_idx(folder: Path, key: str) -> bytes:
    return gzip.decompress(_idx_path(folder, key).read_bytes())


# --- idx files ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, write_idx, gz):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([9, 0, 4], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / "images", images, gz=gz), ndim=3)
    got_labels = read_idx(write_idx(tmp_path / "labels", labels, gz=gz), ndim=1)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_images.flags.writeable


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: raw + b"\x00" * 7, "longer than its header"),
        (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "magic number 0x00000d03"),
        (lambda raw: raw[:10], "ends inside its idx header"),
        (lambda raw: b"", "too short"),
    ],
)
def test_read_idx_damaged_file_names_the_file(tmp_path, fake_fmnist, damage, expected):
    bad = tmp_path / "damaged-idx3-ubyte"
    bad.write_bytes(damage(_raw_idx(fake_fmnist, "train_images")))
    with pytest.raises(ProductganError, match=expected) as caught:
        read_idx(bad)
    assert str(bad) in str(caught.value)


def test_read_idx_corrupt_gzip(tmp_path, fake_fmnist):
    good = _idx_path(fake_fmnist, "train_images").read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])
    scrambled = tmp_path / "scrambled.gz"
    middle = len(good) // 2
    flipped = bytes(b ^ 0xFF for b in good[middle : middle + 64])
    scrambled.write_bytes(good[:middle] + flipped + good[middle + 64 :])
    for path in (cut, scrambled):
        with pytest.raises(ProductganError, match="corrupt or truncated") as caught:
            read_idx(path)
        assert str(path) in str(caught.value)


def test_read_idx_wrong_kind_and_missing(tmp_path, fake_fmnist):
    with pytest.raises(ProductganError, match="1-D idx array but images were expected"):
        read_idx(_idx_path(fake_fmnist, "train_labels"), ndim=3)
    with pytest.raises(ProductganError, match="does not exist"):
        read_idx(tmp_path / "nothing-here")


def test_load_fashion_mnist(fake_fmnist):
    data = load_fashion_mnist(fake_fmnist)
    assert data.folder == fake_fmnist
    assert data.train_images.shape == (200, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (50, 28, 28)
    assert data.train_labels.dtype == np.int64
    np.testing.assert_array_equal(data.train_labels, np.arange(200) % 10)


def test_load_fashion_mnist_plain_files(tmp_path, make_fake_fmnist):
    folder = make_fake_fmnist(tmp_path / "plain", n_train=20, n_test=10, gz=False)
    assert load_fashion_mnist(folder).test_labels.shape == (10,)


def test_load_fashion_mnist_label_out_of_range(fake_fmnist, write_idx):
    labels = np.full(200, 10, dtype=np.uint8)
    write_idx(_idx_path(fake_fmnist, "train_labels"), labels)
    with pytest.raises(ProductganError, match="label 10 .* 0 to 9"):
        load_fashion_mnist(fake_fmnist)


def test_load_fashion_mnist_count_mismatch(fake_fmnist, write_idx):
    write_idx(_idx_path(fake_fmnist, "test_labels"), np.zeros(49, dtype=np.uint8))
    with pytest.raises(ProductganError, match="50 images but .* 49 labels"):
        load_fashion_mnist(fake_fmnist)


def test_load_fashion_mnist_wrong_image_size(fake_fmnist, write_idx):
    write_idx(_idx_path(fake_fmnist, "test_images"), np.zeros((50, 27, 27), dtype=np.uint8))
    with pytest.raises(ProductganError, match="27x27 images"):
        load_fashion_mnist(fake_fmnist)


# --- where the files are found -----------------------------------------------------------


def test_search_folders_order(isolated_search, monkeypatch, tmp_path):
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path / "env"))
    assert search_folders(tmp_path / "explicit") == [
        tmp_path / "explicit",
        tmp_path / "env",
        tmp_path / "system-fashion-mnist",
        isolated_search / ".cache" / "productgan" / "fashion-mnist",
    ]


def test_find_uses_environment_variable(isolated_search, monkeypatch, fake_fmnist):
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(fake_fmnist))
    assert find_fashion_mnist() == fake_fmnist


def test_find_uses_home_cache(isolated_search, make_fake_fmnist):
    cache = make_fake_fmnist(isolated_search / ".cache" / "productgan" / "fashion-mnist", 10, 10)
    assert find_fashion_mnist() == cache


def test_explicit_folder_does_not_fall_back(isolated_search, monkeypatch, fake_fmnist, tmp_path):
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(fake_fmnist))
    assert find_fashion_mnist(fake_fmnist) == fake_fmnist
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProductganError, match="lacks the Fashion-MNIST file") as caught:
        find_fashion_mnist(empty)
    assert "train-images-idx3-ubyte" in str(caught.value)
    with pytest.raises(ProductganError, match="does not exist"):
        find_fashion_mnist(tmp_path / "missing")


def test_missing_everywhere_says_where_and_how(isolated_search, tmp_path):
    with pytest.raises(ProductganError) as caught:
        find_fashion_mnist()
    message = str(caught.value)
    assert str(tmp_path / "system-fashion-mnist") in message
    assert str(isolated_search / ".cache" / "productgan" / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "https://github.com/zalandoresearch/fashion-mnist" in message
    assert "PRODUCTGAN_DATA" in message


# --- stratified split --------------------------------------------------------------------


def test_stratified_split_proportional_and_exact():
    labels = np.repeat([0, 1, 2, 3], [100, 50, 30, 20])
    mask = stratified_split(labels, 40, seed=0)
    assert mask.dtype == bool and mask.sum() == 40
    np.testing.assert_array_equal(np.bincount(labels[mask]), [20, 10, 6, 4])


def test_stratified_split_remainders_keep_the_total_exact():
    labels = np.arange(200) % 10
    mask = stratified_split(labels, 25, seed=3)
    assert mask.sum() == 25
    # Every class's share is 2.5: five classes get 3, five get 2, ties going to lower labels.
    np.testing.assert_array_equal(np.bincount(labels[mask], minlength=10), [3] * 5 + [2] * 5)


def test_stratified_split_is_seeded():
    labels = np.arange(1000) % 7
    first = stratified_split(labels, 100, seed=1)
    np.testing.assert_array_equal(first, stratified_split(labels, 100, seed=1))
    assert not np.array_equal(first, stratified_split(labels, 100, seed=2))


@pytest.mark.parametrize("val_size", [-1, 10, 11, 2.5])
def test_stratified_split_rejects_bad_sizes(val_size):
    with pytest.raises(ProductganError, match="validation size"):
        stratified_split(np.arange(10) % 2, val_size, seed=0)


def test_stratified_split_zero():
    assert not stratified_split(np.arange(10) % 2, 0, seed=0).any()


# --- fitting to the training size ---------------------------------------------------------


def test_fit_32_pads_with_black():
    images = np.random.default_rng(0).integers(1, 256, (5, 28, 28), dtype=np.uint8)
    fitted, meta = fit_fashion_mnist(images, 32)
    assert fitted.shape == (5, 1, 32, 32) and fitted.dtype == np.uint8
    np.testing.assert_array_equal(fitted[:, 0, 2:30, 2:30], images)
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert (fitted[:, 0][:, border] == 0).all()
    assert meta == {
        "fit": "pad",
        "native_size": [28, 28],
        "padded_size": [32, 32],
        "pad": [2, 2, 2, 2],
        "background": 0,
        "resize_filter": None,
    }


def test_fit_64_resizes_after_padding():
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    images[1] = 255
    fitted, meta = fit_fashion_mnist(images, 64)
    assert fitted.shape == (3, 1, 64, 64) and fitted.dtype == np.uint8
    assert meta["resize_filter"] == "lanczos" and meta["pad"] == [2, 2, 2, 2]
    assert (fitted[0] == 0).all()
    # The white square lands, scaled by two, inside a dark frame (Lanczos rings a little).
    assert (fitted[1, 0, 10:54, 10:54] == 255).all()
    assert fitted[1, 0, :2].max() < 32 and fitted[1, 0, :, -2:].max() < 32


@pytest.mark.parametrize("size", [16, 28, 48, 512, "32"])
def test_fit_rejects_unsupported_sizes(size):
    with pytest.raises(ProductganError, match="image size"):
        fit_fashion_mnist(np.zeros((1, 28, 28), dtype=np.uint8), size)


# --- building and the packed format -------------------------------------------------------


def test_build_fashion_mnist(fake_fmnist):
    source = load_fashion_mnist(fake_fmnist)
    dataset = build_fashion_mnist(fake_fmnist, image_size=32, val_size=20, seed=0)
    assert dataset.images.shape == (250, 1, 32, 32)
    assert (dataset.num_classes, dataset.channels, dataset.image_size) == (10, 1, 32)
    assert dataset.class_names == list(FASHION_MNIST_CLASSES)
    assert dataset.split_sizes() == {"train": 180, "val": 20, "test": 50}
    # Train file first, then the test file, which is exactly the test split.
    np.testing.assert_array_equal(dataset.indices("test"), np.arange(200, 250))
    np.testing.assert_array_equal(dataset.images[200:, 0, 2:30, 2:30], source.test_images)
    np.testing.assert_array_equal(np.bincount(dataset.labels[dataset.indices("val")]), [2] * 10)
    assert dataset.meta["source"] == "fashion-mnist"
    assert dataset.meta["source_folder"] == str(fake_fmnist)
    assert dataset.meta["native_size"] == [28, 28]
    assert dataset.meta["split"]["seed"] == 0


def test_indices_and_subset(fake_fmnist):
    dataset = build_fashion_mnist(fake_fmnist, val_size=20)
    everything = np.concatenate([dataset.indices(name) for name in SPLITS])
    np.testing.assert_array_equal(np.sort(everything), np.arange(250))
    assert dataset.indices("val").dtype == np.int64
    images, labels = dataset.subset("val")
    assert images.shape == (20, 1, 32, 32) and labels.shape == (20,)
    with pytest.raises(ProductganError, match="Unknown split"):
        dataset.indices("validation")


def test_packed_round_trip(fake_packed):
    assert is_packed_dataset(fake_packed)
    info = json.loads((fake_packed / "dataset.json").read_text())
    assert info["split_sizes"] == {"train": 180, "val": 20, "test": 50}
    assert info["class_names"] == list(FASHION_MNIST_CLASSES)
    loaded = PackedDataset.load(fake_packed)
    again = build_fashion_mnist(loaded.meta["source_folder"], val_size=20)
    np.testing.assert_array_equal(loaded.images, again.images)
    np.testing.assert_array_equal(loaded.labels, again.labels)
    np.testing.assert_array_equal(loaded.split, again.split)
    assert loaded.labels.dtype == np.int64 and loaded.split.dtype == np.int8
    assert loaded.meta["pad"] == [2, 2, 2, 2]
    mapped = PackedDataset.load(fake_packed, mmap=True)
    assert isinstance(mapped.images, np.memmap)
    np.testing.assert_array_equal(mapped.subset("test")[1], loaded.subset("test")[1])


def test_prepare_refuses_a_negative_seed(fake_fmnist, tmp_path):
    with pytest.raises(UsageError, match="--seed must be 0 or more"):
        prepare(fake_fmnist, tmp_path / "out", seed=-1)
    assert not (tmp_path / "out").exists()


def test_a_packed_dataset_gets_the_permissions_of_any_new_folder(fake_packed, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        (tmp_path / "plain").mkdir()
        out = prepare(str(fake_packed), tmp_path / "copy")
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o755


def test_save_refuses_then_overwrites(fake_packed, fake_fmnist):
    smaller = build_fashion_mnist(fake_fmnist, val_size=10)
    with pytest.raises(ProductganError, match="already exists; choose another --out or pass --overwrite"):
        smaller.save(fake_packed)
    assert PackedDataset.load(fake_packed).split_sizes()["val"] == 20
    smaller.save(fake_packed, overwrite=True)
    assert PackedDataset.load(fake_packed).split_sizes()["val"] == 10
    assert sorted(p.name for p in fake_packed.parent.iterdir()) == ["fake-fashion-mnist", "packed"]


def test_save_never_overwrites_other_folders(tmp_path, fake_fmnist):
    dataset = build_fashion_mnist(fake_fmnist, val_size=10)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ProductganError, match=r"holds more than a packed dataset \(thesis.tex\)"):
        dataset.save(precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_packed_dataset(dataset.save(empty))


def test_interrupted_save_leaves_nothing_behind(tmp_path, fake_packed, fake_fmnist, monkeypatch):
    dataset = build_fashion_mnist(fake_fmnist, val_size=10)
    real_save = np.save
    calls = []

    def failing_save(file, array, *args, **kwargs):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(packed.np, "save", failing_save)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(KeyboardInterrupt):
        dataset.save(tmp_path / "fresh")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        dataset.save(fake_packed, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert PackedDataset.load(fake_packed).split_sizes()["val"] == 20


def test_load_errors(tmp_path, fake_packed):
    with pytest.raises(ProductganError, match="not a packed dataset folder"):
        PackedDataset.load(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ProductganError, match="has no dataset.json"):
        PackedDataset.load(tmp_path / "plain")

    np.save(fake_packed / "labels.npy", np.zeros(7, dtype=np.int64))
    with pytest.raises(ProductganError, match="labels of dtype int64 and shape \\(7,\\) for 250"):
        PackedDataset.load(fake_packed)
    np.save(fake_packed / "images.npy", np.zeros((250, 1, 32, 32), dtype=np.float32))
    with pytest.raises(ProductganError, match="dtype float32 but uint8"):
        PackedDataset.load(fake_packed)
    (fake_packed / "images.npy").write_bytes(b"not numpy")
    with pytest.raises(ProductganError, match="images.npy is damaged"):
        PackedDataset.load(fake_packed)
    (fake_packed / "dataset.json").write_text("{")
    with pytest.raises(ProductganError, match="cannot be read as JSON"):
        PackedDataset.load(fake_packed)


@pytest.mark.parametrize(
    "field, value",
    [
        ("meta", [1]),
        ("class_names", "abc"),
        ("class_names", [1, 2]),
        ("shape", "32"),
        ("meta", {"split": [0]}),
        ("meta", {"native_size": "28x28"}),
        ("meta", {"pad": [2, 2]}),
    ],
)
def test_load_names_a_field_of_dataset_json_that_is_missing_or_mistyped(fake_packed, field, value):
    info = json.loads((fake_packed / "dataset.json").read_text())
    info[field] = value if field != "meta" or not isinstance(value, dict) else {**info["meta"], **value}
    (fake_packed / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(ProductganError) as raised:
        PackedDataset.load(fake_packed)
    message = str(raised.value)
    named = next(iter(value)) if isinstance(value, dict) else field
    assert str(fake_packed / "dataset.json") in message and f"'{named}'" in message, message
    assert "productgan prepare" in message


def test_load_rejects_images_that_disagree_with_json(fake_packed):
    np.save(fake_packed / "images.npy", np.zeros((250, 1, 64, 64), dtype=np.uint8))
    with pytest.raises(ProductganError, match="records \\(250, 1, 32, 32\\)"):
        PackedDataset.load(fake_packed)


# --- opening by name, folder or packed dataset ----------------------------------------------


def test_open_dataset_by_name_and_folder(isolated_search, monkeypatch, fake_fmnist):
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(fake_fmnist))
    by_name = open_dataset("fashion-mnist", val_size=20)
    by_folder = open_dataset(str(fake_fmnist), val_size=20)
    np.testing.assert_array_equal(by_name.images, by_folder.images)
    np.testing.assert_array_equal(by_name.split, by_folder.split)
    assert by_name.image_size == 32


def test_open_dataset_packed(fake_packed):
    assert open_dataset(fake_packed).split_sizes()["val"] == 20
    assert open_dataset(str(fake_packed), image_size=32, val_size=20, seed=0).image_size == 32
    with pytest.raises(ProductganError, match="holds 32x32 images but image size 64") as caught:
        open_dataset(fake_packed, image_size=64)
    assert "--image-size 64" in str(caught.value) and "drop the flag" in str(caught.value)
    with pytest.raises(ProductganError, match="20 validation images but --val-size 30"):
        open_dataset(fake_packed, val_size=30)


def test_open_dataset_prefers_an_existing_folder_over_the_name(isolated_search, monkeypatch, tmp_path, fake_fmnist):
    prepare(fake_fmnist, tmp_path / "fashion-mnist", val_size=30)
    monkeypatch.chdir(tmp_path)
    assert open_dataset("fashion-mnist").split_sizes()["val"] == 30


def test_open_dataset_rejects_anything_else(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for data, problem in [
        ("mnist", "neither the name 'fashion-mnist' nor an existing folder"),
        (tmp_path / "empty", "holds neither a packed dataset"),
        (tmp_path / "file.txt", "is a file"),
    ]:
        with pytest.raises(ProductganError, match=problem) as caught:
            open_dataset(data)
        assert "productgan prepare" in str(caught.value)


def test_prepare_checks_the_output_before_reading(fake_packed, tmp_path):
    with pytest.raises(ProductganError, match="already exists"):
        prepare(tmp_path / "no-such-source", fake_packed)
    with pytest.raises(ProductganError, match="holds more than a packed dataset"):
        prepare(tmp_path / "no-such-source", tmp_path, overwrite=True)


def test_prepare_64(fake_fmnist, tmp_path):
    out = prepare(fake_fmnist, tmp_path / "packed-64", image_size=64, val_size=10, seed=5)
    dataset = PackedDataset.load(out)
    assert dataset.images.shape == (250, 1, 64, 64)
    assert dataset.meta["image_size"] == 64 and dataset.meta["split"]["seed"] == 5


# --- the real thing, where installed --------------------------------------------------------


@pytest.mark.skipif(
    not all(fashion_mnist.idx_file(REAL_FOLDER, name) for name in FILES.values()),
    reason="Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist",
)
def test_real_fashion_mnist():
    data = load_fashion_mnist(REAL_FOLDER)
    assert data.train_images.shape == (60000, 28, 28)
    assert data.test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(data.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.test_labels), [1000] * 10)


def shut(monkeypatch, folder: Path) -> None:
    """``folder`` as chmod 000 leaves it for anyone but root (the tests run as root): it cannot
    be listed, and nothing inside it can be reached."""
    real_scandir, real_stat = os.scandir, os.stat
    inside = str(folder) + os.sep

    def scandir(path="."):
        if os.fspath(path).rstrip(os.sep) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(inside):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)


def test_an_unreadable_dataset_folder_is_named_not_a_file_inside_it(fake_packed, monkeypatch, tmp_path):
    shut(monkeypatch, fake_packed)
    for attempt in (lambda: open_dataset(fake_packed), lambda: prepare(fake_packed, tmp_path / "out")):
        with pytest.raises(ProductganError, match=f"Cannot list {fake_packed} \\(Permission denied\\)") as raised:
            attempt()
        assert "dataset.json" not in str(raised.value)


def test_a_packed_dataset_without_images_npy_says_so(fake_packed):
    (fake_packed / "images.npy").unlink()
    with pytest.raises(ProductganError, match=f"The packed dataset {fake_packed} lacks images.npy") as raised:
        open_dataset(fake_packed)
    assert "holds neither" not in str(raised.value) and str(raised.value).count(". ") == 0
