"""Images a catalogue can place (generator/cutout.py): crops to the product's box with a margin,
the alpha matte and its un-blended edges, the measured plain-background check; then ``generate
--crop product --background transparent`` end to end, its refusals, and the API's bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import CLASS_NAMES, FMNIST_INFO, plain_generator
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import UsageError
from productgan.generator import cutout
from productgan.generator.cutout import (
    ALPHA_CLEAR,
    ALPHA_SOLID,
    UNIFORM_BOUND,
    Cutout,
    alpha_matte,
    background_share,
    border_share,
    crop_box,
    plan_cutout,
    with_alpha,
)
from productgan.generator.export import write_export
from productgan.generator.grid import make_grid, to_pil
from productgan.generator.output import generate_to_path, image_file_name
from productgan.generator.sampler import Sampler, load_generator
from productgan.models import Generator, init_weights

WHITE = np.array([255.0, 255.0, 255.0])
# The plain generator's square at FMNIST_INFO's native 28x28: rows and columns 4 to 23; its box
# (20 pixels) with a margin of 2 on each side is 24 x 24 from (2, 2).
SQUARE, CROPPED = slice(4, 24), 24


def on_white(height: int, width: int, rows: slice, cols: slice, colour=(0, 0, 0)) -> np.ndarray:
    """uint8 1 x 3 x H x W: a white canvas with a box of ``colour``."""
    images = np.full((1, 3, height, width), 255, np.uint8)
    images[0, :, rows, cols] = np.asarray(colour, np.uint8)[:, None, None]
    return images


def png_pixels(data: bytes | str) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    return image.mode, np.asarray(image)


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory):
    """A conditional grey generator drawing a white square on black, exported as Fashion-MNIST's."""
    return write_export(plain_generator(), tmp_path_factory.mktemp("plain") / "generator", FMNIST_INFO)


@pytest.fixture(scope="module")
def noisy_export(tmp_path_factory):
    """A random generator whose images are noise to their borders, exported as Fashion-MNIST's."""
    torch.manual_seed(0)
    generator = Generator(ModelConfig(nz=8, ngf=4, conditional=True), 32, 1, num_classes=10)
    init_weights(generator)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(5)
    return write_export(generator.eval(), tmp_path_factory.mktemp("noisy") / "generator", FMNIST_INFO)


# --- the pure functions ---------------------------------------------------------------------------


def test_a_crop_is_the_products_box_with_a_tenth_of_its_longer_side_around_it():
    images = on_white(40, 40, slice(10, 30), slice(12, 22))  # 20 high, 10 wide
    assert crop_box(images[0], WHITE) == (8, 32, 10, 24)  # ceil(0.1 * 20) = 2 on every side
    picture = Cutout("product", "keep", WHITE).pictures(images)[0]
    assert picture.shape == (24, 14, 3)
    assert np.array_equal(picture, images[0, :, 8:32, 10:24].transpose(1, 2, 0))
    # the margin stops at the canvas; a one-pixel product still gets one pixel; nothing to crop to: all
    assert crop_box(on_white(40, 40, slice(0, 20), slice(30, 40))[0], WHITE) == (0, 22, 28, 40)
    assert crop_box(on_white(9, 9, slice(4, 5), slice(4, 5))[0], WHITE) == (3, 6, 3, 6)
    assert crop_box(on_white(9, 9, slice(0, 0), slice(0, 0))[0], WHITE) == (0, 9, 0, 9)


def test_the_alpha_is_0_on_the_background_255_on_the_product_and_edges_are_unblended():
    assert (ALPHA_CLEAR, ALPHA_SOLID) == (12, 48)
    images = on_white(4, 4, slice(1, 3), slice(1, 3), colour=(0, 0, 200))
    images[0, :, 0, 0] = 250  # the noise of a generated background: d = 5
    images[0, :, 0, 1] = 234  # an edge, a quarter product: d = 21, alpha (21 - 12) / 36 = 0.25
    images[0, :, 0, 2] = 207  # d = 48: opaque
    rgba = with_alpha(images, WHITE)
    assert rgba.shape == (1, 4, 4, 4)
    alpha = rgba[0, 3]
    assert alpha[0, 0] == 0 and alpha[3, 3] == 0 and alpha[0, 2] == 255
    assert (alpha[1:3, 1:3] == 255).all() and (rgba[0, :3, 1, 1] == [0, 0, 200]).all()  # the product untouched
    assert alpha[0, 1] == 64  # round(0.25 * 255)
    # (234 - 255 * (1 - 64/255)) / (64/255) = 171.3: darker than the blend, no white fringe...
    assert (rgba[0, :3, 0, 1] == 171).all()
    # ...and laid on the white it came from, the pixel comes back
    composited = 64 / 255 * 171 + (1 - 64 / 255) * 255
    assert abs(composited - 234) < 1
    assert (rgba[0, :3, 0, 0] == 255).all()  # transparent pixels hold the background colour
    # on black (a grey level): d = 30 gives alpha 0.5, the colour 30 / (128/255) = 60
    grey = np.zeros((1, 1, 1, 3), np.uint8)
    grey[0, 0, 0] = [0, 30, 100]
    assert alpha_matte(grey, np.array([0.0])).tolist() == [[[0, 128, 255]]]
    assert with_alpha(grey, np.array([0.0]))[0, 0, 0].tolist() == [0, 60, 100]


def test_a_grid_of_crops_centres_each_on_one_cell_of_the_background():
    images = np.concatenate([on_white(12, 12, slice(2, 10), slice(4, 8)), on_white(12, 12, slice(5, 7), slice(5, 7))])
    grid = Cutout("product", "keep", WHITE).grid(images, nrow=2)
    # cells of the larger crop (12 x 6: 8 high with 1 above and below, 4 wide with 1 each side)
    assert grid.shape == (2 + 10 + 2, 2 + 2 * (6 + 2), 3)
    second = grid[2:12, 10:16]
    # its 4 x 4 crop (the 2 x 2 product and a pixel around it) centred, on white
    assert (second[4:6, 2:4] == 0).all() and (second == 0).sum() == 2 * 2 * 3
    transparent = Cutout("product", "transparent", WHITE).grid(images, nrow=2)
    assert transparent.shape[2] == 4 and transparent[0, 0, 3] == 0 and transparent[2, 10, 3] == 0
    # with neither option, a grid is make_grid's
    whole = Cutout().grid(images, nrow=2)
    assert np.array_equal(whole, make_grid(images, 2))


def test_a_plain_background_is_measured_and_a_noisy_one_refused_with_its_share(plain_export, noisy_export):
    plain = np.zeros((4, 1, 10, 10), np.uint8)
    plain[:, :, 3:7, 3:7] = 255
    assert border_share(plain, np.array([0.0])) == 1.0
    noise = np.random.default_rng(0).integers(0, 256, (4, 1, 10, 10), dtype=np.uint8)
    assert border_share(noise, np.array([0.0])) < 0.2

    assert background_share(load_generator(plain_export)) == 1.0
    assert plan_cutout(load_generator(plain_export), "product", "transparent").active
    noisy = load_generator(noisy_export)
    share = background_share(noisy)
    assert share < UNIFORM_BOUND
    with pytest.raises(UsageError, match="transparent background needs a plain one") as refused:
        plan_cutout(noisy, "none", "transparent")
    assert f"{share:.1%}" in str(refused.value) and str(refused.value).count(". ") == 0
    assert plan_cutout(noisy, "product", "keep").crop == "product"  # a crop needs only the colour
    # the fixed batch: the same share every time, whatever the sampler's own temperature
    noisy.temperature = 1.7
    assert background_share(noisy) == share


def test_no_recorded_background_and_bad_values_are_refused_in_one_sentence(plain_export):
    info = {key: value for key, value in FMNIST_INFO.items() if key != "background"}
    sampler = Sampler(plain_generator(), {**info, "pixel_range": [-1.0, 1.0]})
    for crop, background in (("product", "keep"), ("none", "transparent")):
        with pytest.raises(UsageError, match="this export records none"):
            plan_cutout(sampler, crop, background)
    assert not plan_cutout(sampler).active  # the defaults need no background
    for odd in ("white", 300, [0, 0, 256], [1, 2]):  # what an export's checks let through, but no pixel value
        with pytest.raises(UsageError, match="which is no pixel value"):
            cutout.recorded_background({"background": odd}, 1)
    with pytest.raises(UsageError, match="crop must be none or product"):
        plan_cutout(sampler, "box")
    with pytest.raises(UsageError, match="background must be keep or transparent"):
        plan_cutout(sampler, "none", "white")
    with pytest.raises(UsageError, match="holds images of one size"):
        cutout.check_npy("product")


# --- generate, end to end --------------------------------------------------------------------------


def test_generate_crop_product_writes_each_png_cropped_to_its_product(plain_export, tmp_path, capsys):
    out = tmp_path / "crops"
    assert main(["generate", str(plain_export), "--n", "3", "--seed", "2", "--out", str(out), "--crop", "product"]) == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [image_file_name(2, i, 3, CLASS_NAMES[i]) for i in range(3)]
    for file in files:
        mode, pixels = png_pixels(str(file))
        assert mode == "L" and pixels.shape == (CROPPED, CROPPED)  # smaller than the 28 x 28 canvas
        assert (pixels[2:-2, 2:-2] == 255).all() and pixels[:2].max() == 0 and pixels[:, -2:].max() == 0


def test_generate_background_transparent_writes_pngs_whose_corners_are_clear(tmp_path, capsys):
    # an RGB generator on white: RGBA PNGs; a grey one (the folder below): grey and alpha
    info = {"native_size": [32, 32], "background": [255, 255, 255]}
    export = write_export(plain_generator(3, 255, conditional=False), tmp_path / "rgb", info)
    out = tmp_path / "clear"
    assert main(["generate", str(export), "--n", "2", "--out", str(out), "--background", "transparent"]) == 0
    for file in sorted(out.glob("*.png")):
        mode, pixels = png_pixels(str(file))
        assert mode == "RGBA" and pixels.shape == (32, 32, 4)
        assert [pixels[y, x, 3] for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1))] == [0, 0, 0, 0]
        assert (pixels[6:26, 6:26] == [0, 0, 0, 255]).all()
    grid = tmp_path / "grid.png"
    flags = ["--crop", "product", "--background", "transparent"]
    assert main(["generate", str(export), "--n", "4", "--out", str(grid), *flags]) == 0
    mode, pixels = png_pixels(str(grid))
    assert mode == "RGBA" and pixels.shape == (2 + 2 * (24 + 2), 2 + 2 * (24 + 2), 4)
    assert pixels[0, 0, 3] == 0 and pixels[2 + 12, 2 + 12, 3] == 255


def test_generate_refusals_exit_2_and_write_nothing(plain_export, noisy_export, tmp_path, capsys):
    out = tmp_path / "images"
    assert main(["generate", str(noisy_export), "--n", "2", "--out", str(out), "--background", "transparent"]) == 2
    said = capsys.readouterr().err
    assert "transparent background needs a plain one" in said and "%" in said
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # an earlier output is kept as it was
    assert main(["generate", str(noisy_export), "--n", "2", "--out", str(out)]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    flags = ["--background", "transparent", "--overwrite"]
    assert main(["generate", str(noisy_export), "--n", "2", "--out", str(out), *flags]) == 2
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    # an array holds one size
    array = tmp_path / "a.npy"
    assert main(["generate", str(plain_export), "--n", "2", "--out", str(array), "--crop", "product"]) == 2
    assert "holds images of one size" in capsys.readouterr().err and not array.exists()
    assert main(["generate", str(plain_export), "--out", str(tmp_path / "b.png"), "--crop", "box"]) == 2
    assert not (tmp_path / "b.png").exists()


def test_generate_defaults_are_unchanged_and_transparent_npy_gains_an_alpha_channel(plain_export, tmp_path):
    sampler = load_generator(plain_export)
    images = sampler(n=4, seed=1).numpy()
    grid = generate_to_path(sampler, tmp_path / "grid.png", n=4, seed=1)
    buffer = io.BytesIO()
    to_pil(make_grid(images, sampler.grid_columns(4))).save(buffer, format="PNG")
    assert grid.read_bytes() == buffer.getvalue()
    array = generate_to_path(sampler, tmp_path / "a.npy", n=4, seed=1, background="transparent")
    rgba = np.load(array)
    assert rgba.shape == (4, 2, 28, 28) and np.array_equal(rgba[:, 1] > 0, images[:, 0] > 0)


# --- the API ----------------------------------------------------------------------------------------


def test_the_api_gives_the_bytes_of_generate_and_its_refusal(plain_export, noisy_export, tmp_path):
    client_class = pytest.importorskip("fastapi.testclient").TestClient
    serve = pytest.importorskip("productgan.serve")
    flags = ["--crop", "product", "--background", "transparent"]
    for out in ("f", "g.png"):
        command = ["generate", str(plain_export), "--n", "3", "--seed", "7", "--out", str(tmp_path / out)]
        assert main([*command, *flags]) == 0
    client = client_class(serve.create_app(plain_export, max_images=16))
    query = "crop=product&background=transparent"
    one = client.get(f"/image.png?seed=7&index=2&{query}")
    assert one.status_code == 200
    assert one.content == (tmp_path / "f" / image_file_name(7, 2, 3, CLASS_NAMES[2])).read_bytes()
    assert client.get(f"/named.png?name=7:2&{query}").content == one.content
    grid = client.get(f"/images.png?n=3&seed=7&{query}")
    assert grid.content == (tmp_path / "g.png").read_bytes()
    assert grid.headers["ETag"] != client.get("/images.png?n=3&seed=7").headers["ETag"]  # the key holds both

    refused = client_class(serve.create_app(noisy_export, max_images=16)).get("/image.png?background=transparent")
    assert refused.status_code == 422
    with pytest.raises(UsageError) as library:
        plan_cutout(load_generator(noisy_export), "none", "transparent")
    assert refused.json()["detail"] == str(library.value)
    assert "crop must be 'none' or 'product'" in client.get("/image.png?crop=box").json()["detail"]
