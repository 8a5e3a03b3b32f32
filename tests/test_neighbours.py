"""Nearest training images with the copy flag, and photos projected into a run's generator."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import train_tiny_run
from PIL import Image

from productgan.cli import main
from productgan.errors import UsageError
from productgan.evaluator.inference import native_images
from productgan.explore.commands import describe_fit
from productgan.explore.latent import point, render
from productgan.explore.neighbours import COPY_COLOUR, NeighbourIndex, neighbour_sheet
from productgan.explore.projection import fit_photo, project
from productgan.generator.sampler import load_generator


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A conditional run of two steps on the fake Fashion-MNIST (as ``fake_packed`` builds it)."""
    return train_tiny_run(tmp_path_factory.mktemp("neighbours"))


@pytest.fixture(scope="module")
def index(tiny_run):
    return NeighbourIndex.from_run(tiny_run)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_training_images_are_their_own_nearest_neighbour_and_flagged(index):
    train = native_images(index.dataset, "train")[:12]
    found = index.query(train, k=3)
    assert np.array_equal(found.indices[:, 0], index.positions[:12])
    assert np.allclose(found.distances[:, 0], 0.0) and found.copy.all()
    assert (np.diff(found.distances, axis=1) >= 0).all()  # nearest first


def test_the_flag_is_calibrated_on_the_held_out_images(index):
    """By construction, the held-out images it was measured on are flagged at most COPY_QUANTILE
    of the time (half of it per test), whatever the data."""
    held_out = native_images(index.dataset, "val")
    found = index.query(held_out, k=1)
    assert found.copy.mean() <= 0.1 and len(held_out) == 20  # at most one of the 20 per test
    assert index.threshold <= index.typical
    assert found.records()[0].keys() == {"neighbours", "likely_copy", "thumbnail_distance"}


def test_a_noisy_copy_is_caught_by_its_pixels(index):
    train = native_images(index.dataset, "train")[:4].astype(int)
    noise = np.random.default_rng(0).integers(-12, 13, train.shape)
    noisy = np.clip(train + noise, 0, 255).astype(np.uint8)
    found = index.query(noisy, k=1)
    assert found.copy.all() and (found.pixel_distances < found.pixel_threshold).all()
    assert np.array_equal(found.indices[:, 0], index.positions[:4])


def test_training_features_are_cached(tiny_run, index, monkeypatch):
    import productgan.explore.neighbours as module

    calls = []
    original = module.extract_features
    monkeypatch.setattr(
        module, "extract_features", lambda net, images: calls.append(len(images)) or original(net, images)
    )
    again = NeighbourIndex.from_run(tiny_run)
    assert np.array_equal(again.features.numpy(), index.features.numpy())
    assert calls == []  # the training and validation features both come from the cache


def test_sheet_frames_copies_in_red(index):
    train = native_images(index.dataset, "train")[:2]
    test = native_images(index.dataset, "test")[:1]
    images = np.concatenate([train, test])
    found = index.query(images, k=2)
    sheet = neighbour_sheet(images, found, index)
    assert sheet.shape == (3 * (28 + 4 + 4) + 4, 3 * (28 + 4 + 4) + 4, 3)
    assert tuple(sheet[4, 4]) == COPY_COLOUR  # the first row's image is a training image: a copy
    assert tuple(sheet[4 + 2 * 36, 4]) != COPY_COLOUR


def test_neighbours_command_writes_sheet_and_records(tiny_run, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert (
        main(["neighbours", str(tiny_run), "--of", "0:1", "3:2", "--k", "2", "--out", str(out), "--no-progress"]) == 0
    )
    records = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in records["images"]] == ["0:1", "3:2"]
    assert len(records["images"][0]["neighbours"]) == 2 and "copy_threshold" in records
    assert "closer to a training image" in capsys.readouterr().out
    assert main(["neighbours", str(tiny_run), "--k", "0", "--out", str(tmp_path / "b.png"), "--no-progress"]) == 2
    assert main(["neighbours", str(tiny_run / "generator"), "--out", str(tmp_path / "c.png")]) == 1
    assert "not a productgan run directory" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "c.png").exists()


def test_photos_are_fitted_as_prepare_fits_the_data(index):
    sampler_info = {"dataset": "fashion-mnist", "native_size": [28, 28], "background": 0}
    test = native_images(index.dataset, "test")[0, 0]
    fitted = fit_photo(png_bytes(test), sampler_info, 32, 1)
    assert fitted.shape == (1, 32, 32) and np.array_equal(fitted[0, 2:30, 2:30], test)
    rgba = np.zeros((40, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[10:30, 5:15, 3] = 255  # a red block on a transparent sheet: transparent becomes the black background
    fitted = fit_photo(png_bytes(rgba, "RGBA"), sampler_info, 32, 1)
    assert fitted[0, 16, 16] > 40 and fitted[0, 3, 16] == 0
    cmyk = io.BytesIO()
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(cmyk, format="JPEG")
    assert fit_photo(cmyk.getvalue(), {"fit": "pad", "background": [255, 255, 255]}, 32, 3).shape == (3, 32, 32)
    deep = io.BytesIO()
    Image.fromarray(np.full((30, 30), 65535, np.uint16)).save(deep, format="PNG")
    assert fit_photo(deep.getvalue(), sampler_info, 32, 1)[0, 16, 16] == 255
    with pytest.raises(UsageError, match="not an image"):
        fit_photo(b"plain text, no picture", sampler_info, 32, 1)


def test_a_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UsageError, match="too large"):
        fit_photo(png_bytes(np.zeros((100, 100), np.uint8)), {"fit": "pad", "background": [0, 0, 0]}, 32, 1)


def test_projection_finds_an_image_the_generator_made(tiny_run, index):
    sampler = load_generator(tiny_run)
    target = render(sampler, [point(sampler, "5:2")]).numpy()[0]
    other = render(sampler, [point(sampler, "6:3")]).numpy()[0]
    fitted = fit_photo(png_bytes(target[0]), sampler.info, 32, 1)
    result = project(sampler, fitted, index.net, steps=40, restarts=2, seed=0)
    assert set(result.per_class) == set(sampler.class_names)
    assert np.array_equal(result.target, target)
    assert result.reconstruction.shape == target.shape and result.reconstruction.dtype == np.uint8
    start = np.sqrt(((other.astype(float) - target) ** 2).mean())
    assert result.pixel_distance < start  # nearer than another image of the generator
    again = project(sampler, fitted, index.net, label="Bag", steps=40, restarts=2, seed=0)
    assert again.label == "Bag" and list(again.per_class) == ["Bag"]
    with pytest.raises(UsageError, match="steps"):
        project(sampler, fitted, index.net, steps=0)


def test_fit_in_words():
    assert describe_fit(0.5, 1.0).startswith("close")
    assert describe_fit(1.0, 1.0).startswith("good")
    assert describe_fit(1.8, 1.0).startswith("loose")
    assert describe_fit(3.0, 1.0).startswith("poor")


def test_project_command_writes_a_folder_that_walks_start_from(tiny_run, index, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(native_images(index.dataset, "test")[3, 0]))
    out = tmp_path / "projected"
    args = ["project", str(tiny_run), str(photo), "--out", str(out), "--steps", "20", "--restarts", "1"]
    assert main([*args, "--no-progress"]) == 0
    record = json.loads((out / "projection.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["target.png", "reconstruction.png", "comparison.png", "latent.npy", "projection.json"]
    )
    assert record["label"] in load_generator(tiny_run).class_names and record["verdict"]
    assert "feature distance" in capsys.readouterr().out
    walk = tmp_path / "walk.npy"
    start = f"{out / 'latent.npy'}:{record['label']}"
    assert (
        main(["interpolate", str(tiny_run), "--from", start, "--to", "1:1", "--frames", "3", "--out", str(walk)]) == 0
    )
    assert np.array_equal(np.load(walk)[0, 0], np.asarray(Image.open(out / "reconstruction.png")))
    assert main([*args, "--no-progress"]) == 1  # an earlier projection is kept without --overwrite
    (tmp_path / "junk.png").write_bytes(b"no image here")
    bad = ["project", str(tiny_run), str(tmp_path / "junk.png"), "--out", str(tmp_path / "p2"), "--no-progress"]
    assert main(bad) == 2
    assert "cannot be used" in capsys.readouterr().err and not (tmp_path / "p2").exists()
