"""Export, load and sample a generator; write images to .npy, .png grids and folders."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import CLASS_NAMES, FMNIST_INFO, assert_close
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.data.pixels import to_native, to_uint8
from productgan.errors import ProductganError, UsageError
from productgan.generator.export import CONFIG_FILE, WEIGHTS_FILE, find_export, write_export
from productgan.generator.grid import make_grid
from productgan.generator.latents import noise
from productgan.generator.output import generate_to_path
from productgan.generator.sampler import Sampler, load_generator
from productgan.generator.statistics import measure_statistics
from productgan.models import Generator, init_weights

NZ = 100


def build_generator(image_size: int = 32, channels: int = 1, seed: int = 0, **model) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(ModelConfig(ngf=8, **model), image_size, channels)
    init_weights(generator)
    return generator.eval()


@pytest.fixture
def generator() -> Generator:
    return build_generator()


@pytest.fixture
def run_dir(tmp_path, generator) -> Path:
    """A run directory with the export in generator/, as training leaves it."""
    run = tmp_path / "00000-fashion-mnist-32"
    write_export(generator, run / "generator", FMNIST_INFO)
    return run


@pytest.fixture
def export_dir(run_dir) -> Path:
    return run_dir / "generator"


def by_hand(generator: Generator, n: int, seed: int, native: bool = True) -> torch.Tensor:
    """What the sampler should return, computed from the original in-memory generator."""
    with torch.no_grad():
        images = generator(noise(n, NZ, seed))
    if native:
        images = to_native(images, FMNIST_INFO)
    return to_uint8(images, (-1.0, 1.0))


# --- export / load -------------------------------------------------------------------------


def test_export_writes_weights_and_a_complete_config(export_dir):
    assert sorted(p.name for p in export_dir.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["generator"]  # no tmp / old left
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    assert config["format"] == "productgan-generator"
    assert config["version"] == 1
    assert config["model"] == {
        "nz": 100,
        "ngf": 8,
        "ndf": 32,
        "g_norm": "batch",
        "d_norm": "batch",
        "g_activation": "relu",
        "d_activation": "leaky_relu",
        "leaky_slope": 0.2,
        "g_output": "tanh",
        "conditional": False,
        "d_pack": 1,
    }
    assert config["image_size"] == 32 and config["channels"] == 1
    assert config["pixel_range"] == [-1.0, 1.0]
    for key, value in FMNIST_INFO.items():
        assert config[key] == value


def test_sigmoid_export_records_zero_to_one_pixels(tmp_path):
    folder = write_export(build_generator(g_output="sigmoid"), tmp_path / "gen", FMNIST_INFO)
    assert json.loads((folder / CONFIG_FILE).read_text())["pixel_range"] == [0.0, 1.0]
    sampler = load_generator(folder)
    with torch.no_grad():
        raw = sampler.generator(noise(2, NZ, 0))
    expected = (to_native(raw, FMNIST_INFO) * 255).round().to(torch.uint8)
    assert torch.equal(sampler(n=2, seed=0), expected)


def test_export_replaces_an_earlier_export_whole(tmp_path):
    folder = tmp_path / "gen"
    write_export(build_generator(seed=1), folder, FMNIST_INFO)
    second = build_generator(seed=2)
    write_export(second, folder, {**FMNIST_INFO, "step": 7})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]
    sampler = load_generator(folder)
    assert sampler.info["step"] == 7
    assert torch.equal(sampler(n=3, seed=0), by_hand(second, 3, 0))


def test_round_trip_gives_identical_outputs(generator, export_dir):
    sampler = load_generator(export_dir)
    assert isinstance(sampler, Sampler)
    loaded = sampler.generator
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    original_state, loaded_state = generator.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    assert all(torch.equal(original_state[k], loaded_state[k]) for k in original_state)
    z = noise(4, NZ, 3)
    with torch.no_grad():
        assert torch.equal(loaded(z), generator(z))
    assert torch.equal(sampler(n=4, seed=3), by_hand(generator, 4, 3))


@pytest.mark.parametrize("which", ["run dir", "export folder", "weights file"])
def test_load_generator_accepts_run_dir_export_folder_or_weights(which, generator, run_dir):
    source = {
        "run dir": run_dir,
        "export folder": run_dir / "generator",
        "weights file": run_dir / "generator" / WEIGHTS_FILE,
    }[which]
    assert find_export(source) == run_dir / "generator"
    assert torch.equal(load_generator(str(source))(n=2, seed=5), by_hand(generator, 2, 5))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ProductganError, match="does not exist") as error:
        load_generator(tmp_path / "no-such-run")
    assert "no-such-run" in str(error.value)
    assert error.value.exit_code == 1


def test_missing_file_inside_an_export_is_an_error(export_dir):
    with pytest.raises(ProductganError, match="does not exist"):
        load_generator(export_dir / "modle.safetensors")


def test_folder_without_export_is_a_clear_error(tmp_path):
    empty_run = tmp_path / "unfinished-run"
    (empty_run / "generator").mkdir(parents=True)
    (empty_run / "generator" / CONFIG_FILE).write_text("{}")  # half an export is no export
    with pytest.raises(ProductganError, match="holds no exported generator") as error:
        load_generator(empty_run)
    assert "productgan export" in str(error.value)


def _edit_config(export_dir: Path, **changes) -> None:
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    for key, value in changes.items():
        if key == "model":
            config["model"].update(value)
        else:
            config[key] = value
    (export_dir / CONFIG_FILE).write_text(json.dumps(config))


def test_config_with_the_wrong_format_is_rejected(export_dir):
    _edit_config(export_dir, format="some-other-tool")
    with pytest.raises(ProductganError, match="is not a productgan generator export") as error:
        load_generator(export_dir)
    assert "some-other-tool" in str(error.value)


def test_config_that_is_not_json_is_rejected(export_dir):
    (export_dir / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ProductganError, match="is not readable JSON"):
        load_generator(export_dir)


def test_config_that_is_not_a_json_object_is_rejected(export_dir):
    (export_dir / CONFIG_FILE).write_text("[1, 2, 3]\n")
    with pytest.raises(ProductganError):
        load_generator(export_dir)


def test_config_describing_an_unbuildable_generator_is_rejected(export_dir):
    _edit_config(export_dir, image_size=48)
    with pytest.raises(ProductganError, match="does not describe a generator this version can build"):
        load_generator(export_dir)
    _edit_config(export_dir, image_size=32, model={"unknown_knob": 1})
    with pytest.raises(ProductganError, match="unknown_knob"):
        load_generator(export_dir)


@pytest.mark.parametrize(
    "field, changes",
    [
        ("pixel_range", {"pixel_range": None}),
        ("pixel_range", {"pixel_range": [1, -1]}),
        ("nz", {"model": {"nz": -1}}),
        ("ngf", {"model": {"ngf": "8"}}),
        ("channels", {"channels": "x"}),
        ("num_classes", {"num_classes": -1}),
        ("class_names", {"class_names": "abc"}),
        ("native_size", {"native_size": [28]}),
        ("pad", {"pad": "2"}),
        ("model", {"model": None}),
    ],
)
def test_a_config_missing_or_mistyping_a_field_names_the_file_and_the_field(export_dir, field, changes):
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        elif key == "model":
            config["model"].update(value)
        else:
            config[key] = value
    (export_dir / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ProductganError) as error:
        load_generator(export_dir)(2, seed=0)
    message = str(error.value)
    assert str(export_dir / CONFIG_FILE) in message and f"'{field}'" in message, message
    assert "export the generator again" in message


def test_weights_that_do_not_match_the_config_are_rejected(export_dir):
    _edit_config(export_dir, model={"ngf": 16})
    with pytest.raises(ProductganError, match="do not match the architecture") as error:
        load_generator(export_dir)
    assert WEIGHTS_FILE in str(error.value) and "export the generator again" in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_weights_are_rejected(export_dir, damage):
    weights = export_dir / WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes({"truncated": good[: len(good) // 2], "garbage": b"\x00garbage" * 64, "empty": b""}[damage])
    with pytest.raises(ProductganError, match="Error while deserializing") as error:
        load_generator(export_dir)
    assert WEIGHTS_FILE in str(error.value)


# --- noise and the sampler -----------------------------------------------------------------


def test_noise_is_seeded_on_the_cpu_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = noise(5, NZ, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state changes nothing
    assert torch.equal(noise(5, NZ, seed=7), first)
    assert first.device.type == "cpu" and first.shape == (5, NZ) and first.dtype == torch.float32
    assert torch.equal(noise(3, NZ, seed=7), first[:3])  # image i of a seed does not depend on n
    assert not torch.equal(noise(5, NZ, seed=8), first)


def test_same_seed_same_images_different_seed_different_images(export_dir):
    sampler = load_generator(export_dir)
    first = sampler(n=4, seed=11)
    assert torch.equal(sampler(n=4, seed=11), first)
    assert torch.equal(load_generator(export_dir)(n=4, seed=11), first)
    other = sampler(n=4, seed=12)
    assert (other != first).any()
    assert first.dtype == torch.uint8 and first.shape == (4, 1, 28, 28)


def test_batching_does_not_change_the_images(export_dir):
    sampler = load_generator(export_dir)
    assert torch.equal(sampler(n=5, seed=2, batch_size=2), sampler(n=5, seed=2))


def test_training_size_returns_the_padded_square(generator, export_dir):
    sampler = load_generator(export_dir)
    images = sampler(n=3, seed=1, size="training")
    assert images.shape == (3, 1, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, by_hand(generator, 3, 1, native=False))
    # The native image is exactly the centre of the training-size one (pad 2 on each side).
    assert torch.equal(sampler(n=3, seed=1), images[..., 2:30, 2:30])


def test_sampler_rejects_bad_arguments(export_dir):
    sampler = load_generator(export_dir)
    with pytest.raises(ProductganError, match="size must be 'native' or 'training'"):
        sampler(n=2, size="huge")
    with pytest.raises(ProductganError, match="at least 1"):
        sampler(n=0)
    with pytest.raises(UsageError, match="'tpu:0' is not a device"):
        load_generator(export_dir, device="tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU is visible"):
            load_generator(export_dir, device="cuda")


def test_sampler_reports_class_names_and_native_size(export_dir):
    sampler = load_generator(export_dir)
    assert sampler.class_names == CLASS_NAMES
    assert sampler.native_size == [28, 28]
    assert sampler.device == torch.device("cpu")
    bare = Sampler(build_generator(), {"pixel_range": [-1.0, 1.0]})
    assert bare.class_names == [] and bare.native_size == [32, 32]
    assert bare(n=1, seed=0).shape == (1, 1, 32, 32)  # no fit recorded: nothing to crop


def test_temperature_scales_the_latent_vectors(tmp_path):
    generator = build_generator()
    with torch.no_grad():  # weights large enough that the latent's scale shows in the rounded images
        for module in generator.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(5)
    export = write_export(generator, tmp_path / "gen", FMNIST_INFO)
    plain = load_generator(export)
    assert plain.temperature == 1.0
    assert torch.equal(plain(n=6, seed=4, temperature=1.0), by_hand(generator, 6, 4))
    hot = plain(n=6, seed=4, temperature=1.6)
    assert torch.equal(hot, plain.from_noise(noise(6, NZ, 4) * 1.6))
    assert all(not torch.equal(a, b) for a, b in zip(hot, plain(n=6, seed=4)))
    assert torch.equal(plain.latents(6, 4, 1.6), noise(6, NZ, 4) * 1.6)
    # a sampler's own temperature is its default; an argument overrides it
    warm = load_generator(export, temperature=1.6)
    assert warm.temperature == 1.6 and torch.equal(warm(n=6, seed=4), hot)
    assert torch.equal(warm(n=6, seed=4, temperature=1.0), plain(n=6, seed=4))
    assert torch.equal(warm.latents(6, 4)[:3], warm.latents(3, 4))  # still prefix-stable
    for bad in (0, -1.0, float("nan"), float("inf"), "warm"):
        with pytest.raises(UsageError, match="temperature must be above 0 and at most 4"):
            plain(n=2, seed=0, temperature=bad)
    with pytest.raises(UsageError, match="temperature must be above 0 and at most 4"):
        load_generator(export, temperature=0)
    with pytest.raises(UsageError, match="The seed must be 0 or more, not -1"):
        plain(n=2, seed=-1)


def test_a_64_pixel_generator_samples_at_native_size(tmp_path):
    generator = build_generator(image_size=64, channels=3)
    sampler = load_generator(write_export(generator, tmp_path / "gen64", FMNIST_INFO))
    assert sampler(n=2, seed=0).shape == (2, 3, 28, 28)
    assert sampler(n=2, seed=0, size="training").shape == (2, 3, 64, 64)


# --- to_native / to_uint8 ------------------------------------------------------------------


def test_to_native_crops_the_pad_exactly():
    images = torch.arange(2 * 1 * 32 * 32, dtype=torch.float32).view(2, 1, 32, 32)
    native = to_native(images, FMNIST_INFO)
    assert native.shape == (2, 1, 28, 28)
    assert torch.equal(native, images[:, :, 2:30, 2:30])
    assert native[0, 0, 0, 0].item() == 2 * 32 + 2  # row 2, column 2
    assert native[1, 0, 27, 27].item() == 1024 + 29 * 32 + 29


def test_to_native_reads_the_pad_as_top_bottom_left_right():
    info = {"padded_size": [32, 32], "pad": [1, 3, 0, 4]}
    images = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32)
    native = to_native(images, info)
    assert native.shape == (1, 1, 28, 28)
    assert torch.equal(native, images[:, :, 1:29, 0:28])


def test_to_native_without_a_fit_is_a_no_op():
    images = torch.rand(1, 1, 32, 32)
    assert to_native(images, {}) is images
    assert to_native(images, {"padded_size": None, "pad": None}) is images


def test_to_native_resizes_a_64_pixel_output_down_before_cropping():
    # A 2x antialiased bilinear downscale averages input pixels 2i-1 .. 2i+2 with weights
    # 1/8, 3/8, 3/8, 1/8 (a triangle filter stretched to the output's pixel size). Along the
    # rows we use a ramp (kept a ramp: 2i + 0.5), along the columns a parabola x^2, which comes
    # out as (2i + 0.5)^2 + 0.75 (the filter's variance); plain bilinear sampling would give
    # + 0.25. Only border pixels, where the filter is cut off, differ, and to_native crops them.
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    images = (xs**2 + 64 * ys).view(1, 1, 64, 64).repeat(2, 3, 1, 1)
    native = to_native(images, FMNIST_INFO)
    assert native.shape == (2, 3, 28, 28)
    out_ys, out_xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    expected = ((2 * (out_xs + 2) + 0.5) ** 2 + 0.75) + 64 * (2 * (out_ys + 2) + 0.5)
    assert_close(native, expected.expand(2, 3, 28, 28), rtol=0, atol=1e-2)


def test_to_uint8_maps_the_range_ends_and_clamps():
    values = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 0.5, -0.999])
    assert to_uint8(values, (-1.0, 1.0)).tolist() == [0, 255, 128, 0, 255, 191, 0]
    assert to_uint8(values, (-1.0, 1.0)).dtype == torch.uint8
    unit = torch.tensor([0.0, 1.0, 0.5, -0.1, 1.1, 0.25])
    assert to_uint8(unit, [0.0, 1.0]).tolist() == [0, 255, 128, 0, 255, 64]
    assert to_uint8(values.to(torch.bfloat16), (-1.0, 1.0)).tolist()[:5] == [0, 255, 128, 0, 255]


# --- make_grid -----------------------------------------------------------------------------


def test_make_grid_layout_is_exact():
    images = (np.arange(12, dtype=np.uint8) + 1).reshape(3, 1, 2, 2)  # 1..12
    grid = make_grid(images, padding=1, fill=99)  # 3 images -> 2 per row, 2 rows
    expected = np.array(
        [
            [99, 99, 99, 99, 99, 99, 99],
            [99, 1, 2, 99, 5, 6, 99],
            [99, 3, 4, 99, 7, 8, 99],
            [99, 99, 99, 99, 99, 99, 99],
            [99, 9, 10, 99, 99, 99, 99],
            [99, 11, 12, 99, 99, 99, 99],
            [99, 99, 99, 99, 99, 99, 99],
        ],
        dtype=np.uint8,
    )[..., None]
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, expected)


def test_make_grid_places_colour_channels_last_and_honours_nrow():
    images = np.zeros((2, 3, 2, 3), np.uint8)
    images[1, 0] = 10  # red plane of the second image
    images[1, 2, 1, 2] = 200  # one blue pixel: channel 2, row 1, column 2
    grid = make_grid(images, nrow=3)  # default padding 2, fill 0
    assert grid.shape == (1 * (2 + 2) + 2, 3 * (3 + 2) + 2, 3)
    left = 2 + 1 * (3 + 2)  # second slot
    np.testing.assert_array_equal(grid[2:4, left : left + 3, 0], np.full((2, 3), 10))
    assert grid[2 + 1, left + 2, 2] == 200
    assert grid.sum() == 10 * 6 + 200


def test_make_grid_rejects_non_uint8_or_wrong_rank():
    with pytest.raises(ValueError, match="expected uint8 N x C x H x W"):
        make_grid(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="expected uint8 N x C x H x W"):
        make_grid(np.zeros((1, 2, 2), np.uint8))


# --- generate_to_path ----------------------------------------------------------------------


def test_generate_npy_matches_the_sampler(export_dir, tmp_path):
    out = generate_to_path(export_dir, tmp_path / "out" / "samples.npy", n=5, seed=3)
    assert out == tmp_path / "out" / "samples.npy"
    array = np.load(out)
    assert array.dtype == np.uint8 and array.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(array, load_generator(export_dir)(n=5, seed=3).numpy())
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.npy"]  # no temporary left


def test_generate_npy_at_training_size(export_dir, tmp_path):
    out = generate_to_path(export_dir, tmp_path / "big.NPY", n=2, seed=0, size="training")
    assert np.load(out).shape == (2, 1, 32, 32)


def test_generate_npy_on_a_full_disk_says_the_disk_is_full(export_dir, tmp_path, monkeypatch, capsys):
    def short_write(file, array, *args, **kwargs):  # numpy's own words when a write comes up short
        Path(file).write_bytes(b"\x93NUMPY")
        raise OSError("4096 requested and 1024 written")

    monkeypatch.setattr(np, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(total=10**9, used=10**9, free=0))
    out = tmp_path / "x.npy"
    assert main(["generate", str(export_dir), "--out", str(out), "--n", "2"]) == 1
    message = capsys.readouterr().err
    assert "No space left on device" in message and str(out) in message and "free some space" in message, message
    assert list(tmp_path.iterdir()) == [export_dir.parent]  # no temporary left


def test_generate_png_writes_one_grid(export_dir, tmp_path):
    n = 5
    out = generate_to_path(export_dir, tmp_path / "grid.png", n=n, seed=3)
    nrow = math.ceil(math.sqrt(n))  # 3 per row, 2 rows, 2 px padding around and between
    rows = math.ceil(n / nrow)
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.mode == "L"
        assert picture.size == (nrow * (28 + 2) + 2, rows * (28 + 2) + 2) == (92, 62)
        pixels = np.asarray(picture)
    expected = make_grid(load_generator(export_dir)(n=n, seed=3).numpy())[..., 0]
    np.testing.assert_array_equal(pixels, expected)


def test_generate_folder_writes_one_png_per_image(export_dir, tmp_path):
    out = generate_to_path(export_dir, tmp_path / "pngs", n=3, seed=4)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["4-000000.png", "4-000001.png", "4-000002.png"]
    images = load_generator(export_dir)(n=3, seed=4).numpy()
    for index, name in enumerate(names):
        with Image.open(out / name) as picture:
            assert picture.size == (28, 28) and picture.mode == "L"
            np.testing.assert_array_equal(np.asarray(picture), images[index, 0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-fashion-mnist-32", "pngs"]


def test_generate_into_an_existing_empty_folder(export_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    out = generate_to_path(export_dir, tmp_path / "empty", n=2)
    assert len(list(out.iterdir())) == 2


@pytest.mark.parametrize("name", ["old.npy", "old.png"])
def test_generate_refuses_to_overwrite_a_file(export_dir, tmp_path, name):
    existing = tmp_path / name
    existing.write_bytes(b"keep me")
    with pytest.raises(ProductganError, match="already exists; choose another --out or pass --overwrite"):
        generate_to_path(export_dir, existing, n=2)
    assert existing.read_bytes() == b"keep me"


def test_generate_refuses_to_overwrite_a_non_empty_folder(export_dir, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ProductganError, match="already exists"):
        generate_to_path(export_dir, folder, n=2)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert (folder / "keep.txt").read_text() == "mine"


def test_generate_overwrite_replaces_a_file(export_dir, tmp_path):
    existing = tmp_path / "old.npy"
    existing.write_bytes(b"keep me")
    generate_to_path(export_dir, existing, n=2, seed=1, overwrite=True)
    np.testing.assert_array_equal(np.load(existing), load_generator(export_dir)(n=2, seed=1).numpy())

    grid = tmp_path / "old.png"
    grid.write_bytes(b"keep me")
    generate_to_path(export_dir, grid, n=2, seed=1, overwrite=True)
    with Image.open(grid) as picture:
        assert picture.size == (2 * 30 + 2, 30 + 2)


def test_generate_overwrite_replaces_a_folder_of_images_only(export_dir, tmp_path):
    folder = generate_to_path(export_dir, tmp_path / "pngs", n=3, seed=1)
    generate_to_path(export_dir, folder, n=2, seed=0, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["0-000000.png", "0-000001.png"]
    # A folder holding anything else (a run directory, someone's notes) is never replaced.
    (folder / "keep.txt").write_text("mine")
    (folder / "checkpoints").mkdir()
    with pytest.raises(ProductganError, match=r"holds more than images \(checkpoints, keep.txt\)"):
        generate_to_path(export_dir, folder, n=2, seed=0, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["0-000000.png", "0-000001.png", "checkpoints", "keep.txt"]


@pytest.mark.parametrize("name", ["grid.jpg", "images.txt"])
def test_generate_refuses_a_file_type_it_cannot_write(export_dir, tmp_path, name):
    with pytest.raises(UsageError, match="writes NAME.npy, NAME.png or a folder of PNGs"):
        generate_to_path(export_dir, tmp_path / name, n=2)
    assert not (tmp_path / name).exists()


def test_generate_refuses_a_file_as_the_folder_when_overwriting(export_dir, tmp_path):
    existing = tmp_path / "samples"
    existing.write_text("a file")
    with pytest.raises(UsageError, match="is a file; give a folder, a .png or a .npy path"):
        generate_to_path(export_dir, existing, n=2, overwrite=True)
    assert existing.read_text() == "a file"


def test_generate_refuses_a_file_as_the_folder(export_dir, tmp_path):
    existing = tmp_path / "samples"
    existing.write_text("a file")
    with pytest.raises(ProductganError):
        generate_to_path(export_dir, existing, n=2)


def test_generate_rejects_zero_images_as_a_usage_error(export_dir, tmp_path):
    with pytest.raises(UsageError, match="--n must be at least 1") as error:
        generate_to_path(export_dir, tmp_path / "none.npy", n=0)
    assert error.value.exit_code == 2
    assert not (tmp_path / "none.npy").exists()


@pytest.fixture
def conditional_export(tmp_path) -> Path:
    torch.manual_seed(0)
    generator = Generator(ModelConfig(ngf=8, conditional=True), 32, 1, len(CLASS_NAMES))
    init_weights(generator)
    return write_export(generator.eval(), tmp_path / "generator", FMNIST_INFO)


def test_images_that_cannot_fit_in_memory_are_refused_before_any_is_made(
    conditional_export, tmp_path, monkeypatch, capsys
):
    from productgan import machine

    monkeypatch.setattr(machine, "available_memory", lambda: 2**30)  # 1 GiB free
    sampler = load_generator(conditional_export)
    with pytest.raises(
        UsageError, match="1,000,000,000 images of 28x28 would need about 1.4 TiB of memory, and 1.0 GiB is free"
    ):
        sampler(n=1_000_000_000)
    assert sampler(n=4).shape[0] == 4
    out = tmp_path / "x.npy"
    assert main(["generate", str(conditional_export), "--n", "1000000000", "--out", str(out)]) == 2
    assert not out.exists()
    assert "ask for fewer images at a time" in capsys.readouterr().err


def test_an_empty_label_is_every_class_in_turn_everywhere(conditional_export, tmp_path, capsys):
    sampler = load_generator(conditional_export)
    assert torch.equal(sampler(n=6, label=""), sampler(n=6)) and torch.equal(sampler(n=6, label=" "), sampler(n=6))
    assert main(["generate", str(conditional_export), "--n", "4", "--label", "", "--out", str(tmp_path / "a.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "a.npy"), sampler(n=4).numpy())


@pytest.mark.parametrize("temperature", [0, -1, 4.01, 1e38, float("inf"), float("nan")])
def test_temperatures_outside_the_useful_range_are_refused(conditional_export, temperature):
    with pytest.raises(UsageError, match="above 0 and at most 4"):
        load_generator(conditional_export, temperature=temperature)


@pytest.mark.parametrize("label", ["²", "¹⁰", "--5", "1" * 4400, "٣"])
def test_labels_that_only_look_like_numbers_are_one_sentence(conditional_export, label, capsys, tmp_path):
    sampler = load_generator(conditional_export)
    with pytest.raises(UsageError, match="Unknown class|out of range"):
        sampler.labels(2, label)
    out = tmp_path / "x.npy"
    assert main(["generate", str(conditional_export), "--n", "2", "--label", label, "--out", str(out)]) == 2
    assert len(capsys.readouterr().err) < 400 and not out.exists()


def test_a_category_named_by_a_number_wins_over_the_index(tmp_path):
    torch.manual_seed(0)
    generator = Generator(ModelConfig(ngf=8, conditional=True), 32, 1, 3)
    init_weights(generator)
    export = write_export(generator.eval(), tmp_path / "generator", {**FMNIST_INFO, "class_names": ["1", "0", "205"]})
    sampler = load_generator(export)
    assert sampler.class_index("1") == 0 and sampler.class_index("0") == 1 and sampler.class_index("205") == 2
    assert sampler.class_index("2") == 2  # not a name: an index


def _norm_buffers(generator: Generator) -> list[torch.Tensor]:
    return [b.clone() for name, b in generator.named_buffers() if "running" in name]


def test_measured_statistics_are_those_of_the_generators_own_samples():
    """After ``measure_statistics`` the generator in eval mode draws as it does with the statistics
    of a large batch of its own samples; with statistics it did not make, it does not."""
    torch.manual_seed(3)
    generator = Generator(ModelConfig(ngf=8, nz=NZ, conditional=True), 32, 1, num_classes=10)
    init_weights(generator)
    for name, buffer in generator.named_buffers():
        if "running_mean" in name:
            buffer.fill_(0.5)  # statistics that fit other weights
        elif "running_var" in name:
            buffer.fill_(4.0)
    z, labels = torch.randn(512, NZ, generator=torch.Generator().manual_seed(9)), torch.arange(512) % 10

    def eval_against_batch_statistics() -> float:
        with torch.no_grad():
            drawn = generator.eval()(z, labels)
            batch = copy.deepcopy(generator).train()(z, labels)
        return float((drawn - batch).abs().mean())

    before = eval_against_batch_statistics()
    pointers = [b.data_ptr() for b in generator.buffers()]
    assert measure_statistics(generator, seed=0) is generator
    after = eval_against_batch_statistics()
    assert after < 0.005 and before > 0.03, (after, before)
    assert [b.data_ptr() for b in generator.buffers()] == pointers  # in place, as a CUDA graph needs
    assert not generator.training


def test_measured_statistics_depend_on_the_seed_only():
    generator = build_generator(seed=4)
    first = _norm_buffers(measure_statistics(generator, seed=1))
    for name, buffer in generator.named_buffers():
        if "running" in name:
            buffer.fill_(7.0)  # what the buffers held before does not matter
    assert all(torch.equal(a, b) for a, b in zip(_norm_buffers(measure_statistics(generator, seed=1)), first))
    as_trained = copy.deepcopy(generator).to(memory_format=torch.channels_last)
    measure_statistics(as_trained, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(_norm_buffers(as_trained), first))
    other = _norm_buffers(measure_statistics(generator, seed=2))
    assert not all(torch.equal(a, b) for a, b in zip(other, first))


def test_save_pretrained_and_from_pretrained_are_a_pair(run_dir, tmp_path):
    """A sampler saved and loaded again gives the same pixels and describes itself the same way."""
    sampler = Sampler.from_pretrained(run_dir)
    copy_dir = sampler.save_pretrained(tmp_path / "copy")
    again = Sampler.from_pretrained(copy_dir)
    assert torch.equal(again(n=6, seed=3), sampler(n=6, seed=3))
    assert again.info == sampler.info
    assert torch.equal(load_generator(copy_dir)(n=2, seed=1), sampler(n=2, seed=1))


def test_the_old_import_path_still_loads_and_warns(run_dir):
    import importlib
    import sys

    sys.modules.pop("productgan.sampling", None)
    with pytest.warns(DeprecationWarning, match="productgan.sampling is deprecated"):
        old = importlib.import_module("productgan.sampling")
    assert old.load_generator is load_generator and old.Sampler is Sampler
    assert torch.equal(old.load_generator(run_dir)(n=2, seed=0), load_generator(run_dir)(n=2, seed=0))


def test_a_grid_is_enlarged_by_whole_pixels_to_a_readable_size(tmp_path):
    from productgan.generator.grid import enlarge, save_grid

    images = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    small = make_grid(images)
    big = enlarge(small, 400)  # 62 pixels: 7 times makes 434
    assert big.shape[:2] == (434, 434) and np.array_equal(big[::7, ::7], small)
    assert enlarge(small, 10) is small  # already large enough
    assert enlarge(small, 10_000).shape[0] == small.shape[0] * 8  # at most 8 times
    assert Image.open(save_grid(images, tmp_path / "g.png", least=400)).size == (434, 434)


# --- the weights' SHA-256 and finite weights (issue 34) ------------------------------------


def test_export_records_the_weights_sha256_and_refuses_flipped_bytes(export_dir, capsys):
    import hashlib

    weights = export_dir / WEIGHTS_FILE
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    assert config["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    for offset in range(len(data) - 64, len(data)):  # 64 bytes of tensor data: still a readable file
        data[offset] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ProductganError, match="is not the file that was exported") as error:
        load_generator(export_dir)
    assert str(weights) in str(error.value) and str(error.value).count(". ") == 0
    assert main(["generate", str(export_dir), "--n", "2", "--out", str(export_dir.parent / "g.png")]) == 1
    assert "is not the file that was exported" in capsys.readouterr().err


def test_an_export_without_the_sha256_field_loads_as_before(export_dir, generator):
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    del config["weights_sha256"]
    (export_dir / CONFIG_FILE).write_text(json.dumps(config))
    assert torch.equal(load_generator(export_dir)(2, seed=0), by_hand(generator, 2, 0))
    _edit_config(export_dir, weights_sha256="abc")
    with pytest.raises(ProductganError, match="'weights_sha256'"):
        load_generator(export_dir)


def test_save_pretrained_records_the_hash_of_its_own_weights(export_dir, tmp_path):
    sampler = load_generator(export_dir)
    sampler.info["weights_sha256"] = "0" * 64  # what was loaded never replaces what is written
    out = sampler.save_pretrained(tmp_path / "again")
    assert load_generator(out)(1, seed=0).shape[0] == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_export_and_at_load(export_dir, generator, tmp_path, value):
    from safetensors.torch import load_file, save_file

    broken = copy.deepcopy(generator)
    with torch.no_grad():
        next(broken.parameters()).view(-1)[0] = value
    with pytest.raises(ProductganError, match="NaN or infinite values") as error:
        write_export(broken, tmp_path / "broken", FMNIST_INFO)
    assert not (tmp_path / "broken").exists() and str(error.value).count(". ") == 0
    # An export written without the check (an older productgan) is refused when loaded.
    state = load_file(export_dir / WEIGHTS_FILE)
    name = next(iter(k for k, v in state.items() if v.is_floating_point()))
    state[name].view(-1)[0] = value
    save_file(state, str(export_dir / WEIGHTS_FILE), metadata={"format": "productgan-generator"})
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    del config["weights_sha256"]
    (export_dir / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ProductganError, match=f"holds NaN or infinite weights \\(in {name}\\)") as error:
        load_generator(export_dir)
    assert str(error.value).count(". ") == 0
