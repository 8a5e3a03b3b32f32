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
from productgan.explore.latent import render
from productgan.explore.names import point
from productgan.explore.neighbours import COPY_COLOUR, NeighbourIndex, neighbour_sheet
from productgan.explore.photos import expected_photo, fit_photo, fit_to_generator
from productgan.explore.projection import ProjectionCancelled, describe_fit, project, project_photo
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
    # ... and the block is trimmed and centred as Fashion-MNIST's products are: 28 high, 14 wide.
    assert fitted[0, 16, 16] > 40 and fitted[0, 3, 16] > 40 and fitted[0, 16, 4] == 0 and fitted[0, 1, 16] == 0
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


def test_a_projection_stops_at_its_deadline_with_the_best_so_far(tiny_run, index, monkeypatch):
    import productgan.explore.projection as module

    sampler = load_generator(tiny_run)
    fitted = fit_photo(png_bytes(native_images(index.dataset, "test")[0, 0]), sampler.info, 32, 1)
    clock = iter(range(1000))
    monkeypatch.setattr(module.time, "monotonic", lambda: float(next(clock)))  # one second a look
    result = project(sampler, fitted, index.net, label="Bag", steps=50, restarts=1, deadline=3.0)
    # The first step always runs; the clock is read before each later one: 0, 1, 2 go on, 3 stops.
    assert result.stopped_early and result.steps_done == 4 and result.label == "Bag"
    assert result.reconstruction.shape == (1, 28, 28) and np.isfinite(result.feature_distance)
    whole = project(sampler, fitted, index.net, label="Bag", steps=4, restarts=1, deadline=1e9)
    assert not whole.stopped_early and whole.steps_done == 4


def test_a_cancelled_projection_raises_before_its_next_step(tiny_run, index):
    sampler = load_generator(tiny_run)
    fitted = fit_photo(png_bytes(native_images(index.dataset, "test")[0, 0]), sampler.info, 32, 1)
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(ProjectionCancelled):
        project(sampler, fitted, index.net, label="Bag", steps=50, restarts=1, cancelled=cancelled)
    assert len(asked) == 3  # asked before every step: two steps ran, the third was refused


def landscape(height: int = 60, width: int = 90) -> np.ndarray:
    """A landscape-like photo: a noisy gradient from a light sky to dark ground, no product."""
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    sky, ground = np.array([150.0, 190.0, 240.0]), np.array([40.0, 90.0, 30.0])
    noise = np.random.default_rng(0).normal(0.0, 20.0, (height, width, 3))
    return np.clip(sky * (1 - rows) + ground * rows + noise, 0, 255).astype(np.uint8)


def test_a_photo_unlike_the_training_data_gets_no_match_verdict(tiny_run, index):
    sampler = load_generator(tiny_run)
    judged = project_photo(sampler, index, png_bytes(landscape()), steps=2, restarts=1)
    verdict = judged.verdict()
    assert verdict.startswith("Does not look like the training data: ") and "match" not in verdict.split(".")[0]
    assert "light products on a black background, 28x28 grey" in verdict
    record = judged.record()
    assert record["match"] is None and record["likeness"]["looks_like_training_data"] is False
    assert record["likeness"]["unlike_because"] and record["label"] in sampler.class_names


def test_a_dark_product_on_white_is_inverted_then_matched(tiny_run, index):
    """A test image as a catalogue photo: dark on white, with a margin. It is inverted, trimmed
    back to the product, found to look like the data, and given a category verdict."""
    test = native_images(index.dataset, "test")[5, 0]
    photo = np.full((56, 56), 255, np.uint8)
    photo[14:42, 14:42] = 255 - test
    sampler = load_generator(tiny_run)
    fitted = fit_to_generator(png_bytes(photo), sampler)
    assert fitted.inverted and fitted.trimmed and fitted.opposite and fitted.border_grey == 255
    as_is = fit_photo(png_bytes(test), sampler.info, 32, 1)[0, 2:30, 2:30].astype(float)
    assert np.abs(fitted.pixels[0, 2:30, 2:30] - as_is).mean() < 25  # the product as the dataset holds it
    assert np.abs(fit_to_generator(png_bytes(photo), sampler, invert=False).pixels[0] - as_is.mean()).mean() > 60
    judged = project_photo(sampler, index, fitted, steps=2, restarts=1)
    record = judged.record()
    assert record["likeness"]["looks_like_training_data"], record["likeness"]
    assert record["match"] in ("close", "good", "loose", "poor") and record["fit"]["inverted"]
    assert record["verdict"].startswith(f"{record['match'].capitalize()} match as {record['label']}: ")
    assert "it was inverted" in record["verdict"]
    own = np.pad(test[1:-1, 1:-1], 1)  # as Fashion-MNIST's own images are: on black, filling the frame
    plain = fit_to_generator(png_bytes(own), sampler)
    assert not plain.inverted and not plain.trimmed and np.array_equal(plain.pixels[0, 2:30, 2:30], own)


def test_what_the_generator_expects(tiny_run):
    from types import SimpleNamespace

    assert expected_photo(load_generator(tiny_run))["text"] == "light products on a black background, 28x28 grey"
    colour = SimpleNamespace(
        info={"fit": "pad", "background": [255, 255, 255]},
        generator=SimpleNamespace(image_size=32, channels=3),
        native_size=[32, 32],
    )
    expected = expected_photo(colour)
    assert expected["text"] == "products on a white background, 32x32 colour"
    assert expected["opposite_background"] == "kept" and expected["light_background"]
    dark = np.zeros((40, 40, 3), np.uint8)
    dark[10:30, 10:30] = (200, 30, 30)  # a red product on black, for a generator of products on white
    fitted = fit_to_generator(png_bytes(dark), colour)
    assert fitted.opposite and not fitted.inverted and "change a colour product's colours" in fitted.note
    assert tuple(fitted.pixels[:, 16, 16]) == (200, 30, 30)


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


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` and holds a few bytes of pixels: enough for
    Pillow to read its size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_project_and_neighbours_judge_every_input_before_building_the_index(tiny_run, tmp_path, monkeypatch, capsys):
    def no_index(*args, **kwargs):
        raise AssertionError("the neighbour index was built before the inputs were checked")

    monkeypatch.setattr(NeighbourIndex, "from_run", no_index)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(np.zeros((28, 28), np.uint8)))
    (tmp_path / "empty.png").write_bytes(b"")
    noise = png_bytes(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(noise[: len(noise) // 2])
    (tmp_path / "huge.png").write_bytes(header_only_png(20_000, 20_000))
    (tmp_path / "a-file").write_text("x")
    out = ["--out", str(tmp_path / "p")]
    for photo_path, flags, words in (
        (tmp_path / "empty.png", out, "empty file"),
        (tmp_path / "cut.png", out, "damaged or truncated"),
        (tmp_path / "huge.png", out, "too large"),
        (photo, ["--out", str(tmp_path / "a-file")], "is a file"),
        (photo, [*out, "--steps", "100000"], "--steps must be between 1 and"),
        (photo, [*out, "--restarts", "0"], "--restarts must be between 1 and"),
        (photo, [*out, "--label", "Spaceship"], "Unknown class"),
    ):
        assert main(["project", str(tiny_run), str(photo_path), *flags, "--no-progress"]) == 2, words
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    sheet = ["neighbours", str(tiny_run), "--out", str(tmp_path / "s.png"), "--no-progress"]
    assert main([*sheet, "--k", "0"]) == 2 and "--k (neighbours per image) must be" in capsys.readouterr().err
    assert main([*sheet, "--of", "nope"]) == 2 and "names no image" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "cut.png", "empty.png", "huge.png", "photo.png"]


def test_neighbours_that_fail_leave_no_sheet(tiny_run, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    (tmp_path / "sheet.json").mkdir()  # where its records would go: refused before any work
    args = ["neighbours", str(tiny_run), "--of", "0:1", "--out", str(out), "--no-progress", "--overwrite"]
    assert main(args) == 1
    assert str(tmp_path / "sheet.json") in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.json"]


def test_the_index_is_built_batch_by_batch_in_float32(tiny_run, index, tmp_path, monkeypatch):
    """No split is held whole as images, nor its features or thumbnails twice: each is one float32
    array filled BUILD_BATCH images at a time (whole splits in float64 took a Fashion-MNIST
    index to 1.4 GB)."""
    import torch

    import productgan.explore.neighbours as module

    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path))  # features computed, not read from the cache
    monkeypatch.setattr(module, "BUILD_BATCH", 16)
    made = []
    original = module.native_images
    monkeypatch.setattr(
        module,
        "native_images",
        lambda dataset, split, *args: made.append(len(dataset.indices(split))) or original(dataset, split, *args),
    )
    batched = NeighbourIndex.from_run(tiny_run)
    assert made and max(made) <= 16 and sum(made) == 2 * (180 + 20)  # features, then thumbnails
    assert batched.features.dtype == batched.thumbnails.dtype == index.features.dtype == torch.float32
    assert torch.allclose(batched.features, index.features, atol=1e-5)
    assert torch.equal(batched.thumbnails, index.thumbnails)
    assert batched.threshold == pytest.approx(index.threshold) and batched.pixel_threshold == index.pixel_threshold


def test_nearest_in_tiles_is_the_whole_answer(monkeypatch):
    import torch

    import productgan.explore.neighbours as module

    monkeypatch.setattr(module, "QUERY_ROWS", 3)
    monkeypatch.setattr(module, "REFERENCE_ROWS", 5)  # tiles of 3 x 5, the last ones short
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(23, 6, generator=generator)  # float32, as the index keeps it
    queries = torch.cat([torch.randn(7, 6, generator=generator), reference[[4, 17]]])
    distances, positions = module.nearest(queries, reference, 4)
    expected = torch.cdist(queries.double(), reference.double()).topk(4, dim=1, largest=False)
    assert distances.dtype == torch.float64 and torch.equal(positions, expected.indices)
    assert torch.allclose(distances, expected.values, atol=1e-9)
    assert torch.equal(positions[-2:, 0], torch.tensor([4, 17])) and (distances[-2:, 0] == 0).all()  # copies at 0


def test_a_build_stops_between_batches_once_asked(tiny_run, tmp_path, monkeypatch):
    import threading

    import productgan.explore.neighbours as module

    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(module, "BUILD_BATCH", 16)
    stop = threading.Event()
    batches = []
    original = module.extract_features

    def counted(net, images):
        batches.append(len(images))
        if len(batches) == 3:
            stop.set()  # as the server's Ctrl-C does, from another thread
        return original(net, images)

    monkeypatch.setattr(module, "extract_features", counted)
    with pytest.raises(module.BuildStopped):
        NeighbourIndex.from_run(tiny_run, stop=stop)
    assert batches == [16, 16, 16]  # not one batch more
    assert not list(tmp_path.rglob("*.npy"))  # nothing half-made is cached
    with pytest.raises(module.BuildStopped):
        NeighbourIndex.from_run(tiny_run, stop=stop)  # set before: nothing is computed
    assert batches == [16, 16, 16]
