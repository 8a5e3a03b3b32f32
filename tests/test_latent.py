"""Latent tools: image names, saved vectors, walks, variants, and the commands that write them."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from helpers import FMNIST_INFO
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import UsageError
from productgan.explore.latent import MAX_FRAMES, encode_frames, render, slerp, variants, walk, walk_images
from productgan.explore.names import (
    DEFAULT_SPREAD,
    ImageName,
    Point,
    VariantName,
    check_latent,
    load_latent,
    point,
    save_latent,
    variant_names,
    variant_points,
    vector_name,
)
from productgan.generator.export import write_export as export_generator
from productgan.generator.sampler import load_generator
from productgan.models import Generator, init_weights


def make_export(folder, conditional: bool):
    torch.manual_seed(0)
    generator = Generator(ModelConfig(nz=8, ngf=8, conditional=conditional), 32, 1, num_classes=10)
    init_weights(generator)
    with torch.no_grad():  # weights large enough that small latent changes show in the rounded pixels
        for module in generator.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(5)
            if hasattr(module, "table"):
                torch.nn.init.normal_(module.table.weight, 0.0, 0.5)
    return export_generator(generator.eval(), folder, FMNIST_INFO)


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("latent") / "generator", conditional=True)


@pytest.fixture(scope="module")
def unconditional(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("latent") / "generator", conditional=False)


@pytest.fixture(scope="module")
def sampler(conditional):
    return load_generator(conditional)


def test_names_round_trip_and_read_every_form():
    assert ImageName.parse("7:3") == ImageName(7, 3)
    assert ImageName.parse("7:3:Ankle boot") == ImageName(7, 3, "Ankle boot")
    assert ImageName.parse("7:3:T-shirt/top@0.8") == ImageName(7, 3, "T-shirt/top", 0.8)
    assert ImageName.parse(" 7:3@1.5 ") == ImageName(7, 3, None, 1.5)
    for name in (ImageName(7, 3), ImageName(0, 12, "Bag"), ImageName(5, 1, "Bag", 0.7), ImageName(2, 0, None, 2.0)):
        assert ImageName.parse(str(name)) == name
    assert str(ImageName(1, 2, None, 1e-5)) == "1:2@0.00001"  # never in exponent form


@pytest.mark.parametrize("text", ["7", "7:", ":3", "-1:3", "7:-3", "x:3", "7:3@hot", "7:3@0", "7:3@nan", "7:3@99"])
def test_a_bad_name_is_one_sentence(text):
    with pytest.raises(UsageError, match=r"SEED:INDEX|temperature"):
        ImageName.parse(text)


def test_a_name_gives_generates_image_pixel_for_pixel(sampler):
    grid = sampler(n=24, seed=7).numpy()
    for index in (0, 3, 13, 23):
        assert np.array_equal(render(sampler, [point(sampler, f"7:{index}")]).numpy()[0], grid[index])
    in_class = sampler(n=6, seed=7, label="Bag", temperature=0.8).numpy()
    assert np.array_equal(render(sampler, [point(sampler, "7:5:bag@0.8")]).numpy()[0], in_class[5])


def test_walk_ends_are_the_named_images_and_the_middle_moves(sampler):
    grid = sampler(n=12, seed=3).numpy()
    frames = walk_images(sampler, [point(sampler, "3:2"), point(sampler, "3:5"), point(sampler, "3:11")], 9).numpy()
    assert frames.shape == (9, 1, 28, 28)
    assert np.array_equal(frames[0], grid[2]) and np.array_equal(frames[4], grid[5])
    assert np.array_equal(frames[-1], grid[11])
    steps = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(8)]
    assert all(step > 0 for step in steps)


def test_a_walk_between_categories_blends_the_conditioning(sampler):
    a, b = point(sampler, "1:0:Trouser"), point(sampler, "1:0:Sandal")
    path = walk(sampler, [a, b], 5)
    assert path[0].label == 1 and path[-1].label == 5
    middle = path[2].label
    assert isinstance(middle, torch.Tensor) and middle[1] == pytest.approx(0.5) and middle[5] == pytest.approx(0.5)
    assert torch.equal(path[2].z, a.z)  # same vector: only the category moves
    frames = render(sampler, path).numpy()
    assert not np.array_equal(frames[2], frames[0]) and not np.array_equal(frames[2], frames[4])


def test_slerp_keeps_the_ends_exactly_and_the_norm_on_the_arc():
    a, b = torch.randn(64), torch.randn(64)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    b = b * (a.norm() / b.norm())
    assert slerp(a, b, 0.5).norm() == pytest.approx(float(a.norm()), rel=1e-5)
    assert torch.allclose(slerp(a, a.clone(), 0.3), a)


def test_variants_are_seeded_and_their_distance_grows_with_the_spread(sampler):
    base = point(sampler, "4:1")
    first, _ = variants(sampler, base, 6, 0.3, seed=2)
    again, _ = variants(sampler, base, 6, 0.3, seed=2)
    other, _ = variants(sampler, base, 6, 0.3, seed=3)
    assert torch.equal(first, again) and not torch.equal(first, other)
    distances = []
    for spread in (0.05, 0.3, 1.0):
        points = variant_points(sampler, base, 64, spread, seed=0)
        distances.append(float(torch.stack([(p.z - base.z).norm() for p in points]).mean()))
    assert distances[0] < distances[1] < distances[2]
    moved, _ = variants(sampler, base, 2, 0.3, seed=2, label="Bag")
    assert not torch.equal(moved, first[:2])


def test_a_variant_has_a_short_name_that_gives_its_pixels(sampler):
    names = variant_names(sampler, "7:3", 4, 0.5, seed=0)
    assert names == [f"7:3~0.5/0#{i}" for i in range(4)]
    images, points = variants(sampler, point(sampler, "7:3"), 4, 0.5, seed=0)
    for name, expected, image in zip(names, points, images):
        found = point(sampler, name)
        assert torch.equal(found.z, expected.z) and found.label == expected.label
        assert torch.equal(render(sampler, [found])[0], image)
        assert str(VariantName.parse(name)) == name
    # A class and a temperature travel in the base name; a category asked for, after the variant.
    names = variant_names(sampler, "7:3@0.8", 3, 0.35, seed=4, label="bag")
    assert names == [f"7:3@0.8~0.35/4#{i}:Bag" for i in range(3)]
    images, _ = variants(sampler, point(sampler, "7:3@0.8"), 3, 0.35, seed=4, label="Bag")
    assert torch.equal(render(sampler, [point(sampler, name) for name in names]), images)
    again = point(sampler, "7:3~0.5/0#2~0.3/1#1")  # a variant of a variant
    assert torch.equal(again.z, variant_points(sampler, point(sampler, "7:3~0.5/0#2"), 2, 0.3, seed=1)[1].z)
    assert VariantName.parse("7:3:T-shirt/top~0.25/9#7") == VariantName("7:3:T-shirt/top", 0.25, 9, 7)
    assert VariantName.parse("7:3") is None and VariantName.parse("z:AAAA:Bag") is None


def test_a_variant_of_a_vector_is_named_by_its_vector(sampler, tmp_path):
    base = point(sampler, "6:2:Bag")
    saved = save_latent(tmp_path / "base.npy", base.z)
    for ref in (vector_name(base.z, "Bag"), f"{saved}:Bag"):
        names = variant_names(sampler, ref, 2, 0.5, seed=3)
        _, points = variants(sampler, base, 2, 0.5, seed=3)
        assert all(name.startswith("z:") and name.endswith(":Bag") for name in names)
        assert [point(sampler, name).z.tolist() for name in names] == [p.z.tolist() for p in points]


@pytest.mark.parametrize(
    "text, words",
    [("7:3~1.5/0#0", "spread"), ("7:3~0.5/0#5000", "variant below"), ("7:3~0.5/0#1:Spaceship", "Unknown class")],
)
def test_a_bad_variant_name_is_one_sentence(sampler, text, words):
    with pytest.raises(UsageError, match=words):
        point(sampler, text)
    assert 0 < DEFAULT_SPREAD <= 1


def test_saved_vectors_load_back_and_bad_ones_are_refused(tmp_path, sampler):
    z = point(sampler, "9:4").z
    save_latent(tmp_path / "z.npy", z)
    assert torch.equal(load_latent(tmp_path / "z.npy", 8), z)
    grid = sampler(n=5, seed=9).numpy()
    assert np.array_equal(render(sampler, [point(sampler, f"{tmp_path / 'z.npy'}:Coat")]).numpy()[0], grid[4])
    with pytest.raises(UsageError, match="needs one"):
        point(sampler, str(tmp_path / "z.npy"))
    for bad, reason in (
        (np.zeros(7, np.float32), "takes 8 numbers"),
        (np.array([np.nan] * 8, np.float32), "NaN"),
        (np.array(["a"] * 8), "takes 8 numbers"),
        (np.zeros((2, 8), np.float32), "takes 8 numbers"),
    ):
        with pytest.raises(UsageError, match=reason):
            check_latent(bad, 8)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(UsageError, match="not a readable"):
        load_latent(tmp_path / "junk.npy", 8)


def test_unconditional_generators_refuse_categories(unconditional):
    sampler = load_generator(unconditional)
    assert point(sampler, "3:1").label is None
    with pytest.raises(UsageError, match="not class-conditional"):
        point(sampler, "3:1:Bag")
    with pytest.raises(UsageError, match="not class-conditional"):
        variants(sampler, point(sampler, "3:1"), 2, 0.3, label="Bag")


def test_walk_and_variant_limits(sampler):
    a = point(sampler, "1:1")
    for frames in (1, 0, MAX_FRAMES + 1):
        with pytest.raises(UsageError, match="between 2 and"):
            walk(sampler, [a, a], frames)
    with pytest.raises(UsageError, match="at least two"):
        walk(sampler, [a], 5)
    for spread in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="spread"):
            variant_points(sampler, a, 2, spread)
    with pytest.raises(UsageError, match="number of variants"):
        variant_points(sampler, a, 0, 0.3)


def test_frames_encode_as_animations_strips_and_arrays(sampler):
    frames = walk_images(sampler, [point(sampler, "1:1"), point(sampler, "1:2")], 4).numpy()
    gif = Image.open(io.BytesIO(encode_frames(frames, "gif", fps=10)))
    assert gif.n_frames == 4 and gif.size == (28, 28) and gif.info["duration"] == 100
    gif.seek(3)
    assert np.array_equal(np.asarray(gif.convert("L")), frames[3, 0])
    webp = Image.open(io.BytesIO(encode_frames(frames, "webp", scale=2)))
    assert webp.n_frames == 4 and webp.size == (56, 56)
    strip = Image.open(io.BytesIO(encode_frames(frames, "png")))
    assert strip.size == (4 * 30 + 2, 32)
    assert np.array_equal(np.load(io.BytesIO(encode_frames(frames, "npy"))), frames)
    assert encode_frames(frames, "gif") == encode_frames(frames, "gif")  # bytes are a function of the frames
    with pytest.raises(UsageError, match="written as"):
        encode_frames(frames, "mp4")
    for fps in (0.01, 61, float("nan")):
        with pytest.raises(UsageError, match="frame rate"):
            encode_frames(frames, "gif", fps=fps)


def test_interpolate_command_writes_each_format_and_refuses_bad_input(tmp_path, conditional, sampler, capsys):
    grid = sampler(n=8, seed=7).numpy()
    out = tmp_path / "walk.npy"
    assert (
        main(["interpolate", str(conditional), "--from", "7:1", "--to", "7:6", "--frames", "5", "--out", str(out)]) == 0
    )
    frames = np.load(out)
    assert frames.shape == (5, 1, 28, 28) and np.array_equal(frames[0], grid[1]) and np.array_equal(frames[4], grid[6])
    gif = tmp_path / "walk.gif"
    args = ["interpolate", str(conditional), "--from", "7:1", "--via", "7:3", "--to", "7:6", "--frames", "7"]
    assert main([*args, "--out", str(gif)]) == 0
    assert Image.open(gif).n_frames == 7
    assert main([*args, "--out", str(gif)]) == 1  # no replacing without --overwrite
    capsys.readouterr()
    for bad, message in (
        (["--from", "7:1", "--to", "nope", "--out", str(tmp_path / "a.gif")], "names no image"),
        (["--from", "7:1", "--to", "7:2", "--frames", "1", "--out", str(tmp_path / "b.gif")], "between 2 and"),
        (["--from", "7:1", "--to", "7:2:Spaceship", "--out", str(tmp_path / "c.gif")], "Unknown class"),
        (["--from", "7:1", "--to", "7:2", "--out", str(tmp_path / "d.mp4")], "written as"),
        (
            ["--from", str(tmp_path / "none.npy") + ":Bag", "--to", "7:2", "--out", str(tmp_path / "e.gif")],
            "not a file",
        ),
    ):
        assert main(["interpolate", str(conditional), *bad]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif", "walk.npy"]  # nothing half-written


def test_variants_command_writes_grid_folder_and_vectors(tmp_path, conditional, sampler):
    folder = tmp_path / "variants"
    latents = tmp_path / "v.npy"
    args = ["variants", str(conditional), "--of", "2:3", "--n", "4", "--spread", "0.2", "--seed", "5"]
    assert main([*args, "--out", str(folder), "--save-latents", str(latents)]) == 0
    listed = ["latents.npy"] + [f"variant-000{i}.png" for i in range(4)] + ["variants.json"]
    assert sorted(p.name for p in folder.iterdir()) == listed
    manifest = json.loads((folder / "variants.json").read_text())
    assert [v["name"] for v in manifest["variants"]] == [f"2:3~0.2/5#{i}" for i in range(4)]
    assert manifest["variants"][2] == {"file": "variant-0002.png", "name": "2:3~0.2/5#2", "category": "Dress"}
    vectors = np.load(latents)
    assert vectors.shape == (4, 8) and np.array_equal(np.load(folder / "latents.npy"), vectors)
    expected, _ = variants(sampler, point(sampler, "2:3"), 4, 0.2, seed=5)
    again = render(sampler, [Point(torch.from_numpy(v), 3) for v in vectors]).numpy()
    assert np.array_equal(again, expected.numpy())
    assert np.array_equal(np.asarray(Image.open(folder / "variant-0002.png")), expected.numpy()[2, 0])
    assert main([*args, "--spread", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_a_vector_travels_inside_its_name(sampler):
    base = point(sampler, "6:2")
    name = vector_name(base.z, "Bag")
    assert name.startswith("z:") and name.endswith(":Bag") and "=" not in name
    again = point(sampler, name)
    assert torch.equal(again.z, base.z) and again.label == 8
    assert np.array_equal(render(sampler, [again]).numpy(), render(sampler, [Point(base.z, 8)]).numpy())
    with pytest.raises(UsageError, match="needs one"):
        point(sampler, vector_name(base.z))
    for bad in ("z:", "z:AAAA", "z:!!!!", vector_name(torch.full((8,), float("inf")), "Bag")):
        with pytest.raises(UsageError, match="bytes|NaN or infinite"):
            point(sampler, bad)


def test_variants_overwrite_never_deletes_a_folder_of_other_files(tmp_path, conditional, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    args = ["variants", str(conditional), "--of", "7:3", "--n", "2", "--out", str(folder)]
    assert main([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "thesis.tex" in err and "never replaces" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"] and (folder / "thesis.tex").read_text() == "mine"
    (folder / "thesis.tex").unlink()
    assert main(args) == 0  # an empty folder is free
    assert main(args) == 1 and "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--seed", "1", "--overwrite"]) == 0  # its own earlier variants are replaced


def test_variants_that_fail_leave_none_of_their_outputs(tmp_path, conditional, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    latents = tmp_path / "lat.npy"
    args = ["variants", str(conditional), "--of", "7:3", "--n", "2", "--save-latents", str(latents)]
    assert main([*args, "--out", str(blocker / "v.png")]) == 1  # its folder is a file: found before the work
    assert str(blocker) in capsys.readouterr().err and not latents.exists()

    saved = np.save

    def full_disk(path, array, *rest, **options):
        if str(path).endswith(".npy"):
            raise OSError(28, "No space left on device")
        return saved(path, array, *rest, **options)

    monkeypatch.setattr(np, "save", full_disk)
    assert main([*args, "--out", str(tmp_path / "v.png")]) == 1
    assert f"No space left on device ({latents})" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no grid, no vectors, no temporaries


def _npy_claiming(path, shape, descr="<f4", data=b""):
    """A .npy file whose header claims ``shape``, followed by ``data`` only."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": descr, "fortran_order": False, "shape": shape})
        file.write(data)
    return path


def test_a_saved_vector_is_checked_by_its_header_before_it_is_loaded(tmp_path, conditional, capsys):
    (tmp_path / "empty.npy").write_bytes(b"")
    bad = {
        _npy_claiming(tmp_path / "huge.npy", (10**12,), data=b"\0" * 16): "shape (1000000000000,)",
        _npy_claiming(tmp_path / "huge2.npy", (1, 10**12)): "shape (1, 1000000000000)",
        _npy_claiming(tmp_path / "short.npy", (8,), data=b"\0" * 16): "not a readable .npy array",
        tmp_path / "empty.npy": "not a readable .npy array",
    }
    for path, words in bad.items():
        with pytest.raises(UsageError, match=re.escape(words)) as raised:
            load_latent(path, 8)
        assert str(path) in str(raised.value) and str(raised.value).count(". ") == 0
    for path, words in bad.items():
        for args in (
            ["interpolate", str(conditional), "--from", str(path) + ":Bag", "--to", "7:2", "--frames", "2"],
            ["variants", str(conditional), "--of", str(path) + ":Bag", "--n", "2"],
        ):
            assert main([*args, "--out", str(tmp_path / "out.gif")]) == 2
            err = capsys.readouterr().err
            assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_an_image_name_ending_in_at_says_the_temperature_is_missing():
    for text in ("7:3@", "7:3:Sneaker@", "7:3@ "):
        with pytest.raises(UsageError, match="has no temperature after @") as raised:
            ImageName.parse(text)
        assert "nan" not in str(raised.value)
    with pytest.raises(UsageError, match="not 'warm'"):
        ImageName.parse("7:3@warm")
