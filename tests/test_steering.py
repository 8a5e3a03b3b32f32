"""Steering: edits and directions.json (generator/directions.py), edited names (explore/names.py),
directions measured on a generator's own images (explore/directions.py), colourways
(explore/colourways.py), the commands (cli/steering.py) and the routes (serve/routes/steering.py).

Edits are checked on hand-made directions whose answers are known (a shift adds, a turn rotates the
predicted a*, b*, a scale multiplies their chroma) and against a plain numpy reading of
directions.json, the promise to ONNX users. The rest runs on one tiny trained run (helpers'
``train_tiny_run``, grey, conditional) whose directions ``productgan directions`` measures once,
with 200 samples and a probe of 16.
"""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pytest
import torch
from helpers import train_tiny_run
from PIL import Image

from productgan.cli import main
from productgan.data.colour import ciede2000, parse_colours, srgb_to_lab
from productgan.data.product import background_values, main_colours, measure
from productgan.errors import ProductganError, UsageError
from productgan.explore.directions import MAIN_DIRECTIONS, RIDGE, main_directions
from productgan.explore.latent import render
from productgan.explore.names import EditedName, VariantName, edited_name, point
from productgan.generator.directions import (
    DIRECTIONS_FILE,
    MAX_AMOUNT,
    ColourModel,
    Direction,
    Directions,
    check_amount,
    format_edits,
    parse_edits,
    read_directions,
)
from productgan.generator.grid import make_grid
from productgan.generator.latents import balanced_labels, noise
from productgan.generator.sampler import Sampler, load_generator

NZ = 8
CLASSES = 10
MAINS = [f"main{i}" for i in range(1, MAIN_DIRECTIONS + 1)]
GREY_NAMES = ["lightness", *MAINS]  # every pixel of the tiny run is off its background: no size, no aspect
GREYS = "black,#404040,white"


def one_sentence(error: BaseException | str) -> str:
    text = str(error).strip()
    assert text.endswith(".") and "\n" not in text and ". " not in text.replace("e.g. ", ""), text
    return text


# --- hand-made directions: known answers ---------------------------------------------------------


def handmade(coloured: bool = True, seed: int = 0) -> Directions:
    """Directions over nz 8 and ten classes: a random colour model (3 x nz, or L* alone), two shifts,
    a turn of 30 degrees a unit and a scale of 2**0.5 a unit."""
    rng = np.random.default_rng(seed)
    rows = 3 if coloured else 1
    colour = ColourModel(rng.normal(0, 4, (rows, NZ)), rng.normal(0, 20, (CLASSES, rows)))
    vectors = rng.normal(size=(2, NZ))
    directions = [
        Direction("lightness", "shift", vectors[0] / np.linalg.norm(vectors[0]), attribute="lightness"),
        Direction("main1", "shift", vectors[1] / np.linalg.norm(vectors[1])),
    ]
    if coloured:
        directions += [
            Direction("hue", "turn", per_unit=30.0, attribute="hue"),
            Direction("saturation", "scale", per_unit=0.5, attribute="saturation"),
        ]
    return Directions(NZ, "0" * 64, {d.name: d for d in directions}, colour)


def latents(n: int = 16, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.normal(size=(n, NZ)).astype(np.float32))
    return z, torch.from_numpy(rng.integers(0, CLASSES, n))


def predicted_ab(directions: Directions, z: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return directions.colour.predict(z.double().numpy(), labels.numpy())[:, 1:]


def test_edits_parse_and_format_round_trip():
    assert parse_edits(None) == () and parse_edits("") == () and parse_edits("  ") == ()
    assert parse_edits("size=+1,hue=-0.5") == (("size", 1.0), ("hue", -0.5))
    assert parse_edits(" Size = 2 , main3=.25") == (("size", 2.0), ("main3", 0.25))
    assert parse_edits("size=5,hue=-5") == (("size", 5.0), ("hue", -5.0))  # the bounds are allowed
    assert format_edits((("size", 1.0), ("hue", -0.5), ("main3", 0.125))) == "size=1,hue=-0.5,main3=0.125"
    rng = np.random.default_rng(0)
    amounts = [*rng.uniform(-MAX_AMOUNT, MAX_AMOUNT, 200), 0.1, -1e-7, 4.999999999999999, 1 / 3, 0.0]
    for i, amount in enumerate(amounts):
        # An amount is kept to six decimals when read; what was read formats to text that reads back.
        text = f"size={float(amount)!r},main{i % 8 + 1}={-float(amount) / 2!r}"
        edits = parse_edits(text)
        assert edits == (
            ("size", round(float(amount), 6) + 0.0),
            (f"main{i % 8 + 1}", round(-float(amount) / 2, 6) + 0.0),
        )
        assert parse_edits(format_edits(edits)) == edits, edits
    assert check_amount("1.5", "size") == 1.5 and check_amount(-2, "size") == -2.0


def test_every_amount_an_edit_accepts_formats_to_an_edit_that_reads_back():
    """check_amount accepts any finite amount within MAX_AMOUNT, so format_edits's text of it
    (``EditedName``'s, strip.json's names) must read back, however small the amount."""
    for amount in (1e-12, -1e-15, 1e-31, 5e-324, 1 / 3, -4.9999999):
        edits = parse_edits(f"size={amount!r}")
        assert edits == (("size", round(amount, 6) + 0.0),)
        assert parse_edits(format_edits(edits)) == edits, format_edits(edits)
        assert len(format_edits(edits)) <= len("size=") + 9  # within the API's pattern


@pytest.mark.parametrize(
    "text, words",
    [
        ("size=nan", "between -5 and +5"),
        ("size=inf", "between -5 and +5"),
        ("size=-inf", "between -5 and +5"),
        ("size=1e400", "between -5 and +5"),
        ("size=5.01", "between -5 and +5"),
        ("size=-6", "between -5 and +5"),
        ("size=big", "between -5 and +5"),
        ("size", "is not an edit"),
        ("size=", "is not an edit"),
        ("=1", "is not an edit"),
        ("size=1,,hue=1", "is not an edit"),
        ("size=1=2", "is not an edit"),
        ("9size=1", "is not an edit"),
        ("size=1,SIZE=2", "given twice"),
        (",".join(f"main{i}=1" for i in range(17)), "at most 16"),
    ],
)
def test_bad_edits_are_refused_in_one_sentence(text, words):
    with pytest.raises(UsageError) as refused:
        parse_edits(text)
    assert words in one_sentence(refused.value)


def test_an_unknown_direction_is_refused_naming_the_known_ones():
    directions = handmade()
    with pytest.raises(UsageError) as refused:
        directions.edit(latents()[0], (("nosuch", 1.0),))
    sentence = one_sentence(refused.value)
    assert "'nosuch'" in sentence and "lightness, main1, hue, saturation" in sentence
    z = latents()[0]
    assert directions.edit(z, ()) is z  # no edits: the same vectors


def test_a_shift_adds_amount_times_its_vector_exactly():
    directions = handmade()
    z, labels = latents()
    vector = directions.directions["lightness"].vector
    for amount in (1.0, -2.5, 0.3):
        moved = directions.edit(z, (("lightness", amount),), labels)
        expected = torch.from_numpy((z.double().numpy() + amount * vector).astype(np.float32))
        assert moved.dtype == torch.float32 and torch.equal(moved, expected)
    # edits apply in the order written: two shifts add up
    both = directions.edit(z, (("lightness", 1.0), ("main1", -2.0)))
    expected = z.double().numpy() + vector - 2 * directions.directions["main1"].vector
    np.testing.assert_allclose(both.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("amount", [1.0, -0.5, 2.5, -4.0])
def test_a_turn_rotates_the_predicted_colour_by_amount_times_per_unit_degrees(amount):
    directions = handmade()
    z, labels = latents()
    before = predicted_ab(directions, z, labels)
    after = predicted_ab(directions, directions.edit(z, (("hue", amount),), labels), labels)
    angle = math.radians(amount * 30.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    np.testing.assert_allclose(after, before @ rotation.T, rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.hypot(*after.T), np.hypot(*before.T), rtol=1e-5)  # the chroma kept
    turned = np.degrees(np.arctan2(after[:, 1], after[:, 0]) - np.arctan2(before[:, 1], before[:, 0]))
    np.testing.assert_allclose((turned - amount * 30 + 180) % 360 - 180, 0, atol=1e-4)


@pytest.mark.parametrize("amount", [1.0, -2.0, 0.7])
def test_a_scale_multiplies_the_predicted_chroma_by_two_to_amount_times_per_unit(amount):
    directions = handmade()
    z, labels = latents()
    before = predicted_ab(directions, z, labels)
    after = predicted_ab(directions, directions.edit(z, (("saturation", amount),), labels), labels)
    np.testing.assert_allclose(after, before * 2.0 ** (amount * 0.5), rtol=1e-5, atol=1e-3)
    # the class's offset counts: the same z in another class is scaled about another colour
    other = (labels + 1) % CLASSES
    assert not np.allclose(
        directions.edit(z, (("saturation", amount),), labels).numpy(),
        directions.edit(z, (("saturation", amount),), other).numpy(),
    )


def test_a_colour_edit_of_a_grey_model_is_refused():
    grey = handmade(coloured=False)
    grey.directions["hue"] = Direction("hue", "turn", per_unit=30.0)
    with pytest.raises(UsageError) as refused:
        grey.edit(latents()[0], (("hue", 1.0),))
    assert "grey" in one_sentence(refused.value)


def plain_edit(document: dict, z: np.ndarray, labels: np.ndarray | None, text: str) -> np.ndarray:
    """The documented formulas of generator/directions.py, reading nothing but directions.json:
    what an ONNX user with no productgan writes."""
    matrix = np.array(document["colour"]["matrix"], dtype=np.float64)
    offset = np.array(document["colour"]["offset"], dtype=np.float64)
    by_name = {d["name"]: d for d in document["directions"]}
    rows = np.zeros(len(z), dtype=int) if labels is None else labels
    z = z.astype(np.float64)
    for part in text.split(","):
        name, amount = part.split("=")
        direction, amount = by_name[name], float(amount)
        if direction["kind"] == "shift":
            z = z + amount * np.array(direction["vector"])
            continue
        c = z @ matrix.T + offset[rows]  # L*, a*, b*
        c_ab = c[:, 1:]
        if direction["kind"] == "turn":
            a = math.radians(amount * direction["per_unit"])
            target = c_ab @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]).T
        else:
            target = c_ab * 2 ** (amount * direction["per_unit"])
        z = z + (target - c_ab) @ np.linalg.pinv(matrix[1:]).T
    return z.astype(np.float32)


@pytest.mark.parametrize("text", ["lightness=1", "hue=1.5", "saturation=-1", "hue=-0.5,lightness=2,saturation=0.7"])
def test_a_plain_numpy_reading_of_directions_json_makes_the_same_edits(tmp_path, text):
    directions = handmade()
    folder = directions.save(tmp_path).parent
    document = json.loads((folder / DIRECTIONS_FILE).read_text())
    assert document["format"] == "productgan-directions" and document["nz"] == NZ
    z, labels = latents(64)
    ours = directions.edit(z, parse_edits(text), labels).numpy()
    np.testing.assert_allclose(plain_edit(document, z.numpy(), labels.numpy(), text), ours, rtol=0, atol=2e-6)
    assert not np.allclose(ours, z.numpy())
    # and the file read back edits bit for bit as the directions it was written from
    config = {"model": {"nz": NZ}, "weights_sha256": "0" * 64, "num_classes": CLASSES}
    again = read_directions(folder, config)
    assert again.names() == directions.names()
    assert torch.equal(again.edit(z, parse_edits(text), labels), directions.edit(z, parse_edits(text), labels))


def test_an_edit_of_a_row_alone_is_that_row_in_a_batch_bit_for_bit():
    directions = handmade()
    z, labels = latents(32)
    edits = parse_edits("hue=1,saturation=-0.7,lightness=0.3,main1=-1.25")
    batch = directions.edit(z, edits, labels)
    for i in range(len(z)):
        alone = directions.edit(z[i : i + 1], edits, labels[i : i + 1])
        assert torch.equal(alone[0], batch[i]), i
    assert torch.equal(directions.edit(z[5:9], edits, labels[5:9]), batch[5:9])


def test_read_directions_refuses_a_damaged_file(tmp_path):
    config = {"model": {"nz": NZ}, "weights_sha256": "0" * 64, "num_classes": CLASSES}
    assert read_directions(tmp_path, config) is None  # none measured: none read
    good = json.loads(handmade().to_json())

    def refused(document) -> str:
        text = document if isinstance(document, str) else json.dumps(document)
        (tmp_path / DIRECTIONS_FILE).write_text(text)
        with pytest.raises(ProductganError) as caught:
            read_directions(tmp_path, config)
        assert not isinstance(caught.value, UsageError)  # exit 1: the file, not the command line
        sentence = str(caught.value)
        assert sentence.endswith("run `productgan directions RUN` again.") and "\n" not in sentence, sentence
        return sentence

    assert "not readable JSON" in refused("{")
    assert "productgan-directions file of version 1" in refused({**good, "format": "other"})
    assert "of version 1" in refused({**good, "version": 2})
    assert "9 numbers" in refused({**good, "nz": 9})
    assert "other weights" in refused({**good, "weights_sha256": "1" * 64})
    nan = json.loads(json.dumps(good))
    nan["directions"][0]["vector"][3] = float("nan")
    assert "NaN" in refused(nan)
    short = json.loads(json.dumps(good))
    short["directions"][1]["vector"] = short["directions"][1]["vector"][:7]
    assert "7 numbers" in refused(short)
    offsets = json.loads(json.dumps(good))
    offsets["colour"]["offset"] = offsets["colour"]["offset"][:3]
    assert "offsets" in refused(offsets)
    grey = json.loads(json.dumps(good))
    grey["colour"]["matrix"], grey["colour"]["offset"] = grey["colour"]["matrix"][:1], [[0.0]] * CLASSES
    assert "'hue'" in refused(grey) and "grey" in refused(grey)
    unknown = json.loads(json.dumps(good))
    unknown["directions"][0]["kind"] = "warp"
    assert "'warp'" in refused(unknown)
    missing = json.loads(json.dumps(good))
    del missing["colour"]
    refused(missing)


# --- the tiny run and its measured directions ----------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = train_tiny_run(tmp_path_factory.mktemp("steering"))
    flags = ["--samples", "200", "--probe", "16", "--seed", "0", "--no-progress"]
    assert main(["directions", str(run), *flags]) == 0
    return run


@pytest.fixture(scope="module")
def sampler(run) -> Sampler:
    return load_generator(run)


@pytest.fixture(scope="module")
def bare(run, tmp_path_factory):
    """The run's export without directions.json: what a generator is before `productgan directions`."""
    folder = tmp_path_factory.mktemp("bare") / "generator"
    shutil.copytree(run / "generator", folder)
    (folder / DIRECTIONS_FILE).unlink()
    return folder


def rendered(sampler: Sampler, name: str) -> np.ndarray:
    return render(sampler, [point(sampler, name)]).numpy()[0]


def test_directions_json_of_a_grey_run(run, sampler):
    document = json.loads((run / "generator" / DIRECTIONS_FILE).read_text())
    config = json.loads((run / "generator" / "config.json").read_text())
    assert document["format"] == "productgan-directions" and document["version"] == 1
    assert document["nz"] == NZ and document["weights_sha256"] == config["weights_sha256"]
    assert [d["name"] for d in document["directions"]] == GREY_NAMES  # grey: no hue, no saturation
    assert all(d["kind"] == "shift" for d in document["directions"])
    assert document["colour"]["rows"] == ["L"]
    assert np.array(document["colour"]["matrix"]).shape == (1, NZ)
    assert np.array(document["colour"]["offset"]).shape == (CLASSES, 1)
    measured = document["measured"]
    assert measured["samples"] == 200 and measured["probe"] == 16 and measured["seed"] == 0
    assert measured["category_check"] is True and measured["amounts"] == [-2.0, -1.0, 1.0, 2.0]
    assert measured["without_direction"] == ["size", "aspect"]
    for d in document["directions"]:
        assert len(d["vector"]) == NZ and set(d["effects"]) >= {"lightness", "size", "aspect"}
        assert 0.0 <= d["category_kept"] <= 1.0
        assert (d["monotone"] is None) == (d["attribute"] is None) == (d["name"] in MAINS)
    assert sampler.directions is not None and sampler.directions.names() == GREY_NAMES
    assert not sampler.directions.colour.coloured


def test_main_directions_are_the_top_eigenvectors_of_the_first_layer(sampler):
    weight = sampler.generator.main[0].weight.detach().double().numpy()
    w = weight.reshape(weight.shape[0], -1)
    assert w.shape[0] == NZ
    gram = w @ w.T
    stored = np.stack([sampler.directions.directions[name].vector for name in MAINS])
    np.testing.assert_allclose(stored @ stored.T, np.eye(NZ), atol=1e-9)  # orthonormal
    eigenvalues = np.einsum("ij,jk,ik->i", stored, gram, stored)  # v' G v
    np.testing.assert_allclose(stored @ gram, eigenvalues[:, None] * stored, atol=1e-9 * gram.max())
    assert np.all(np.diff(eigenvalues) <= 1e-12)  # largest first
    np.testing.assert_allclose(eigenvalues, np.sort(np.linalg.eigvalsh(gram))[::-1][:MAIN_DIRECTIONS], rtol=1e-9)
    for v in stored:  # signed so that the largest component is positive
        assert v[np.argmax(np.abs(v))] > 0
    np.testing.assert_array_equal(np.stack(main_directions(sampler)), stored)


def ridge_fits(sampler: Sampler, samples: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """explore/directions.py's fits, written out from its docstring: each attribute of the images of
    ``noise(samples, nz, (seed, 2))`` (every class in turn) regressed on z by ridge regression, on
    values centred within each class."""
    z = noise(samples, NZ, (seed, 2))
    labels = balanced_labels(samples, CLASSES)
    images = sampler.from_noise(z, "native", labels=labels).numpy()
    values = measure(images, background_values(sampler.info, 1))
    zs, rows = z.double().numpy(), labels.numpy()
    fits = {}
    for name in ("lightness", "size", "aspect"):
        y = values[name]
        centred = y - np.array([y[rows == c].mean() for c in range(CLASSES)])[rows]
        fits[name] = np.linalg.solve(zs.T @ zs + RIDGE * np.eye(NZ), zs.T @ centred)
    return fits


def without(vector: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """``vector`` less its projection on the span of ``others`` (those that are zero span nothing)."""
    basis = np.stack(others).T
    u, s, _ = np.linalg.svd(basis, full_matrices=False)
    u = u[:, s > 1e-9 * max(1.0, float(s.max(initial=0.0)))]
    return vector - u @ (u.T @ vector)


def test_the_colour_model_is_the_ridge_fit_of_lightness(sampler):
    fits = ridge_fits(sampler)
    np.testing.assert_allclose(sampler.directions.colour.matrix[0], fits["lightness"], rtol=1e-9, atol=1e-12)


def test_lightness_direction_is_its_fit_less_the_size_and_aspect_fits(sampler):
    """The lightness direction is the L* fit with the size and aspect fits projected out. On this
    tiny run every pixel is off the background, so size and aspect are constant and their fits
    zero: nothing is projected out (a zero vector spans nothing), the direction is the L* fit
    itself, and size and aspect get no direction at all."""
    fits = ridge_fits(sampler)
    assert not fits["size"].any() and not fits["aspect"].any()
    expected = without(fits["lightness"], fits["size"], fits["aspect"])
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(sampler.directions.directions["lightness"].vector, expected, atol=1e-9)
    assert "size" not in sampler.directions.directions and "aspect" not in sampler.directions.directions


EDITS = ("lightness=1", "main1=-2,main3=1.5", "main2=1,lightness=-1")


def test_an_edited_seeds_vectors_are_its_names_vectors_bit_for_bit(sampler):
    for edit in EDITS:
        z, labels = sampler.latents(8, 7, None), sampler.labels(8, None)
        moved = sampler.edit(z, edit, labels)
        for i in range(8):
            named = point(sampler, f"7:{i}^{edit}")
            assert torch.equal(named.z, moved[i]) and named.label == i, (edit, i)
    z = sampler.latents(3, 7, 0.8)
    moved = sampler.edit(z, "main2=1", sampler.labels(3, "Bag"))
    assert torch.equal(point(sampler, "7:2:Bag@0.8^main2=1").z, moved[2])


def test_an_edited_seeds_images_are_its_names_images_bit_for_bit(sampler):
    """``sampler(n, seed, edit=E)`` image i is the image of the name ``SEED:i^E``, pixel for pixel (as
    generate's images are their names')."""
    for edit in EDITS:
        images = sampler(n=8, seed=7, edit=edit).numpy()
        for i in range(8):
            assert np.array_equal(images[i], rendered(sampler, f"7:{i}^{edit}")), (edit, i)
    chosen = sampler(n=3, seed=7, label="Bag", temperature=0.8, edit="main2=1").numpy()
    assert np.array_equal(chosen[2], rendered(sampler, "7:2:Bag@0.8^main2=1"))


def test_an_edit_changes_the_images_and_no_edit_does_not(sampler):
    plain = sampler(n=8, seed=7).numpy()
    assert not np.array_equal(sampler(n=8, seed=7, edit="main1=2").numpy(), plain)
    assert not np.array_equal(sampler(n=8, seed=7, edit="lightness=2").numpy(), plain)
    assert np.array_equal(sampler(n=8, seed=7, edit="").numpy(), plain)
    assert np.array_equal(sampler(n=8, seed=7, edit="main1=0").numpy(), plain)
    with pytest.raises(UsageError, match="no direction 'hue'"):
        sampler(n=2, seed=7, edit="hue=1")  # grey: no hue
    with pytest.raises(UsageError, match="between -5 and"):
        sampler(n=2, seed=7, edit="main1=nan")


def test_edited_names_and_variants_compose_both_ways(sampler):
    assert str(EditedName.parse("7:3^size=+1,main1=-0.50")) == "7:3^size=1,main1=-0.5"
    assert EditedName.parse("7:3") is None and EditedName.parse("7:3~0.5/0#2") is None
    assert edited_name("7:3", "main1=1") == "7:3^main1=1" and edited_name(" 7:3 ", None) == "7:3"
    assert VariantName.parse("7:3^main1=1~0.5/0#2").base == "7:3^main1=1"
    assert EditedName.parse("7:3~0.5/0#2^main1=2").base == "7:3~0.5/0#2"

    plain = rendered(sampler, "7:3")
    edited = rendered(sampler, "7:3^main1=2")
    variant = rendered(sampler, "7:3~0.5/0#2")
    variant_of_edited = rendered(sampler, "7:3^main1=2~0.5/0#2")
    edited_of_variant = rendered(sampler, "7:3~0.5/0#2^main1=2")
    pictures = [plain, edited, variant, variant_of_edited, edited_of_variant]
    for i in range(len(pictures)):
        for j in range(i):
            assert not np.array_equal(pictures[i], pictures[j]), (i, j)
    # each is the point its parts name: an edit of the variant's z, a variant of the edited z
    directions = sampler.directions
    base = point(sampler, "7:3~0.5/0#2")
    moved = directions.edit(base.z[None], (("main1", 2.0),), torch.tensor([base.label]))[0]
    assert torch.equal(point(sampler, "7:3~0.5/0#2^main1=2").z, moved)
    assert point(sampler, "7:3~0.5/0#2^main1=2").label == 3
    # edits of an edit apply in turn: both at once, but for the float32 rounding between them
    again = point(sampler, "7:3^main1=2^lightness=1").z
    np.testing.assert_allclose(again.numpy(), point(sampler, "7:3^main1=2,lightness=1").z.numpy(), atol=1e-6)
    with pytest.raises(UsageError, match="no direction 'hue'"):
        point(sampler, "7:3^hue=1")  # grey: no hue


def test_a_sampler_without_directions_says_how_to_measure_them(bare):
    sampler = load_generator(bare)
    assert sampler.directions is None
    for attempt in (
        sampler.require_directions,
        lambda: sampler(n=2, seed=7, edit="main1=1"),
        lambda: point(sampler, "7:3^main1=1"),
    ):
        with pytest.raises(UsageError) as refused:
            attempt()
        assert "run `productgan directions RUN`" in one_sentence(refused.value)
    assert sampler(n=2, seed=7, edit="").shape == (2, 1, 28, 28)


def test_save_pretrained_keeps_directions_and_their_weights(run, sampler, tmp_path):
    saved = sampler.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / DIRECTIONS_FILE).read_text()) == json.loads(
        (run / "generator" / DIRECTIONS_FILE).read_text()
    )
    again = Sampler.from_pretrained(saved)
    assert again.directions.names() == GREY_NAMES
    assert np.array_equal(again(n=4, seed=7, edit="main1=1").numpy(), sampler(n=4, seed=7, edit="main1=1").numpy())

    # other weights saved beside the same directions: refused on load, with the fix
    changed = load_generator(run)
    with torch.no_grad():
        changed.generator.main[0].weight.mul_(1.5)
    changed.save_pretrained(tmp_path / "changed")
    with pytest.raises(ProductganError) as refused:
        Sampler.from_pretrained(tmp_path / "changed")
    sentence = str(refused.value)
    assert "other weights" in sentence and sentence.endswith("run `productgan directions RUN` again.")


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: d.update(format="something-else"), "productgan-directions"),
        (lambda d: d.update(weights_sha256="f" * 64), "other weights"),
        (lambda d: d.update(nz=16), "16 numbers"),
        (lambda d: d["directions"][2]["vector"].__setitem__(0, float("nan")), "NaN"),
    ],
)
def test_a_damaged_directions_json_beside_the_run_is_refused(run, tmp_path, capsys, damage, words):
    folder = tmp_path / "generator"
    shutil.copytree(run / "generator", folder)
    document = json.loads((folder / DIRECTIONS_FILE).read_text())
    damage(document)
    (folder / DIRECTIONS_FILE).write_text(json.dumps(document))
    with pytest.raises(ProductganError) as refused:
        load_generator(folder)
    sentence = str(refused.value)
    assert words in sentence and sentence.endswith("run `productgan directions RUN` again."), sentence
    assert "\n" not in sentence
    # the command says the same, in one line, and writes nothing
    capsys.readouterr()
    assert main(["generate", str(folder), "--n", "2", "--out", str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "productgan directions RUN" in err
    assert not (tmp_path / "x.npy").exists()


# --- the commands --------------------------------------------------------------------------------


def test_directions_prints_the_table_and_writes_the_same_file_again(run, capsys):
    path = run / "generator" / DIRECTIONS_FILE
    before = path.read_bytes()
    capsys.readouterr()
    flags = ["--samples", "200", "--probe", "16", "--no-progress"]
    assert main(["directions", str(run), *flags]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["direction", "kind", "monotone"]
    assert [line.split()[0] for line in lines[1:-1]] == GREY_NAMES
    assert all(line.split()[1] == "shift" for line in lines[1:-1])
    assert lines[-1].startswith(f"Wrote {len(GREY_NAMES)} directions to {path}")
    assert path.read_bytes() == before  # the same seed: the same directions, byte for byte
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "README.md",
        "config.json",
        DIRECTIONS_FILE,
        "model.safetensors",
    ]  # no temporaries left

    assert main(["directions", str(run), "--samples", "10", "--no-progress"]) == 2
    assert "at least 64 samples" in capsys.readouterr().err
    assert path.read_bytes() == before


def strip_images(sampler: Sampler, names: list[str]) -> np.ndarray:
    return np.stack([rendered(sampler, name) for name in names])


def test_steer_writes_a_strip_a_npy_and_a_named_folder(run, sampler, tmp_path):
    names = ["7:3^main1=-2", "7:3^main1=-1", "7:3", "7:3^main1=1", "7:3^main1=2"]
    expected = strip_images(sampler, names)
    assert len({image.tobytes() for image in expected}) == 5  # each step is another image

    assert main(["steer", str(run), "--of", "7:3", "--along", "main1", "--out", str(tmp_path / "s.png")]) == 0
    strip = Image.open(tmp_path / "s.png")
    assert strip.size == (2 + 5 * (28 + 2), 2 + 28 + 2)  # five images side by side
    assert np.array_equal(np.asarray(strip), make_grid(expected, 5)[..., 0])

    assert main(["steer", str(run), "--of", "7:3", "--along", "MAIN1", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), expected)

    folder = tmp_path / "steps"
    flags = ["--of", "7:3:Bag", "--along", "lightness", "--amounts", "-1.5", "0", "0.25", "3"]
    assert main(["steer", str(run), *flags, "--out", str(folder)]) == 0
    manifest = json.loads((folder / "strip.json").read_text())
    assert manifest["of"] == "7:3:Bag" and manifest["along"] == "lightness"
    assert [s["name"] for s in manifest["steps"]] == [
        "7:3:Bag^lightness=-1.5",
        "7:3:Bag",
        "7:3:Bag^lightness=0.25",
        "7:3:Bag^lightness=3",
    ]
    assert [s["amount"] for s in manifest["steps"]] == [-1.5, 0.0, 0.25, 3.0]
    for step in manifest["steps"]:
        picture = np.asarray(Image.open(folder / step["file"]))
        assert np.array_equal(picture, rendered(sampler, step["name"])[0]), step


def test_colourways_of_a_grey_run_reach_their_greys_and_name_them(run, sampler, tmp_path):
    folder = tmp_path / "ways"
    assert main(["colourways", str(run), "--of", "7:3", "--colours", GREYS, "--out", str(folder)]) == 0
    manifest = json.loads((folder / "colourways.json").read_text())
    assert manifest["of"] == "7:3"
    ways = manifest["colourways"]
    assert [w["colour"] for w in ways] == ["#000000", "#404040", "#ffffff"]
    files = sorted(folder.glob("colourway-*.png"))
    assert [f.name for f in files] == ["colourway-00-000000.png", "colourway-01-404040.png", "colourway-02-ffffff.png"]

    background = background_values(sampler.info, 1)
    goal = srgb_to_lab(np.array(parse_colours(GREYS), dtype=float))
    goal[:, 1:] = 0  # a grey generator's targets are L* alone
    start = main_colours(rendered(sampler, "7:3")[None], background)[0]
    for way, goal_lab, file in zip(ways, goal, files):
        picture = rendered(sampler, way["name"])  # the name reproduces the image
        assert np.array_equal(np.asarray(Image.open(file)), picture[0]), way["name"]
        reached = main_colours(picture[None], background)[0]
        difference = float(ciede2000(reached, goal_lab))
        assert way["ciede2000"] == pytest.approx(difference, abs=0.006)
        # the best round is kept, and round 0 is the product as it is: never worse than the start
        assert difference <= float(ciede2000(start, goal_lab)) + 1e-9, way
    # a colourway changes the colour and keeps the category
    assert all(w["name"].startswith("z:") and w["name"].endswith(":Dress") for w in ways)

    # the strip: the product first, then each colourway
    assert main(["colourways", str(run), "--of", "7:3", "--colours", GREYS, "--out", str(tmp_path / "w.png")]) == 0
    expected = strip_images(sampler, ["7:3", *(w["name"] for w in ways)])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "w.png")), make_grid(expected, 4)[..., 0])
    assert main(["colourways", str(run), "--of", "7:3", "--colours", GREYS, "--out", str(tmp_path / "w.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "w.npy"), expected)


def refused(capsys, argv: list[str], code: int, *words: str) -> str:
    capsys.readouterr()
    assert main(argv) == code, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def test_steering_commands_refuse_bad_requests_and_write_nothing(run, bare, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    source = str(run)
    cases = [
        (["colourways", source, "--of", "7:3", "--colours", "navy", "--out"], 2, ["grey", "#000080"]),
        (["colourways", source, "--of", "7:3", "--colours", "grey", "--rounds", "0", "--out"], 2, ["1 to 32"]),
        (["colourways", source, "--of", "7:3", "--colours", "black,nosuch", "--out"], 2, ["'nosuch' is not a colour"]),
        (["colourways", str(bare), "--of", "7:3", "--colours", "black", "--out"], 2, ["run `productgan directions"]),
        (["steer", str(bare), "--of", "7:3", "--along", "main1", "--out"], 2, ["run `productgan directions"]),
        (["steer", source, "--of", "7:3", "--along", "nosuch", "--out"], 2, ["'nosuch'", ", ".join(GREY_NAMES)]),
        (["steer", source, "--of", "7:3", "--along", "hue", "--out"], 2, ["'hue'"]),
        (["steer", source, "--of", "7:3", "--along", "main1", "--amounts", "1", "nan", "--out"], 2, ["nan"]),
        (["steer", source, "--of", "7:3", "--along", "main1", "--amounts", "1", "6", "--out"], 2, ["-5 and +5"]),
        (["steer", source, "--of", "7:3^size=9", "--along", "main1", "--out"], 2, ["size=9"]),
    ]
    for argv, code, words in cases:
        for suffix in ("x.png", "x.npy", "folder"):
            refused(capsys, [*argv, str(out / suffix)], code, *words)
    assert list(out.iterdir()) == []  # nothing written, not even a lock

    # an existing output is kept without --overwrite, and replaced with it
    strip = out / "s.png"
    strip.write_bytes(b"keep me")
    refused(capsys, ["steer", source, "--of", "7:3", "--along", "main1", "--out", str(strip)], 1, "already exists")
    assert strip.read_bytes() == b"keep me"
    refused(capsys, ["colourways", source, "--of", "7:3", "--colours", "black", "--out", str(strip)], 1, "--overwrite")
    assert strip.read_bytes() == b"keep me"
    assert main(["steer", source, "--of", "7:3", "--along", "main1", "--out", str(strip), "--overwrite"]) == 0
    assert strip.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in out.iterdir()) == ["s.png"]


def test_steer_amounts_may_begin_with_a_minus(run, tmp_path, capsys):
    """``--amounts -2 -1 0 1 2``, the default as its help writes it, is read as the amounts."""
    out = tmp_path / "s.npy"
    argv = [
        "steer",
        str(run),
        "--of",
        "7:3",
        "--along",
        "main1",
        "--amounts",
        "-2",
        "-1",
        "0",
        "1",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert main(["steer", str(run), "--of", "7:3", "--along", "main1", "--out", str(tmp_path / "d.npy")]) == 0
    assert np.array_equal(np.load(out), np.load(tmp_path / "d.npy"))


# --- the API -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(run):
    testclient = pytest.importorskip("fastapi.testclient")
    from productgan.serve import create_app

    return testclient.TestClient(create_app(run, max_images=16))


@pytest.fixture(scope="module")
def bare_client(bare):
    testclient = pytest.importorskip("fastapi.testclient")
    from productgan.serve import create_app

    return testclient.TestClient(create_app(bare, max_images=16))


def png_pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_directions_json_lists_the_measured_directions(client, bare_client, sampler):
    listed = client.get("/directions.json").json()
    assert listed["measured"] is True and listed["colour"] is False and listed["max_amount"] == MAX_AMOUNT
    assert [d["name"] for d in listed["directions"]] == GREY_NAMES
    lightness = listed["directions"][0]
    assert lightness["kind"] == "shift" and lightness["attribute"] == "lightness"
    assert lightness["effects"] == sampler.directions.directions["lightness"].effects
    assert listed["colour_names"]["navy"] == "#000080" and "size" in listed["attributes"]

    nothing = bare_client.get("/directions.json").json()
    assert nothing["measured"] is False and nothing["directions"] == [] and nothing["colour"] is False


def test_strip_png_is_the_bytes_steer_writes(run, client, tmp_path):
    for amounts in (None, "-1,0,0.5,2"):
        out = tmp_path / f"strip-{amounts is None}.png"
        argv = ["steer", str(run), "--of", "7:3:Bag", "--along", "main2", "--out", str(out)]
        assert main(argv + ([] if amounts is None else ["--amounts", *amounts.split(",")])) == 0
        params = {"of": "7:3:Bag", "along": "main2", **({} if amounts is None else {"amounts": amounts})}
        response = client.get("/strip.png", params=params)
        assert response.status_code == 200, response.text
        assert response.content == out.read_bytes(), amounts


def test_colourways_png_is_the_bytes_colourways_writes(run, client, sampler, tmp_path):
    out = tmp_path / "ways.png"
    assert main(["colourways", str(run), "--of", "7:3", "--colours", GREYS, "--out", str(out)]) == 0
    response = client.get("/colourways.png", params={"of": "7:3", "colours": GREYS})
    assert response.status_code == 200, response.text
    assert response.content == out.read_bytes()
    folder = tmp_path / "ways"
    assert main(["colourways", str(run), "--of", "7:3", "--colours", GREYS, "--out", str(folder)]) == 0
    listed = client.get("/colourways.json", params={"of": "7:3", "colours": GREYS}).json()
    written = json.loads((folder / "colourways.json").read_text())
    assert listed["of"] == "7:3" and listed["colourways"] == written["colourways"]
    for way in listed["colourways"]:  # each name is served as its image
        assert np.array_equal(
            png_pixels(client.get("/named.png", params={"name": way["name"]})), rendered(sampler, way["name"])[0]
        )


@pytest.mark.parametrize(
    "name",
    ["7:3^main2=1", "7:3^main1=1.5", "7:3:Bag@0.8^lightness=-2", "7:3~0.5/0#2~0.5/1#0^main1=2", "7:3~0.5/0#2^main1=2"],
)
def test_named_png_makes_an_edited_name(client, sampler, name):
    assert np.array_equal(png_pixels(client.get("/named.png", params={"name": name})), rendered(sampler, name)[0])


@pytest.mark.parametrize(
    "path, params, words",
    [
        ("/named.png", {"name": "7:3^nosuch=1"}, "'nosuch'"),
        ("/named.png", {"name": "7:3^size=9"}, "size=9"),
        ("/named.png", {"name": "7:3^size=1,size=2"}, "twice"),
        ("/named.png", {"name": "7:3^main1=1~0.5/0#2"}, "edits last"),
        ("/colourways.png", {"of": "7:3", "colours": "navy"}, "grey"),
        (
            "/colourways.json",
            {"of": "7:3", "colours": "black,nosuch"},
            "comma-separated colours: names (navy) or #RRGGBB, not 'black,nosuch'",
        ),
        (
            "/strip.png",
            {"of": "7:3", "along": "main1", "amounts": "1,nan"},
            "comma-separated numbers from -5 to 5, not '1,nan'",
        ),
        ("/strip.png", {"of": "7:3", "along": "nosuch"}, "'nosuch'"),
        ("/strip.png", {"of": "7:3^size=9", "along": "main1"}, "size=9"),
    ],
)
def test_bad_steering_requests_get_422_and_one_sentence(client, path, params, words):
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail and "\n" not in detail, detail


def test_a_server_without_directions_says_how_to_measure_them(bare_client):
    for path, params in [
        ("/strip.png", {"of": "7:3", "along": "main1"}),
        ("/colourways.png", {"of": "7:3", "colours": "black"}),
        ("/colourways.json", {"of": "7:3", "colours": "black"}),
        ("/named.png", {"name": "7:3^main1=1"}),
    ]:
        response = bare_client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert "run `productgan directions" in response.json()["detail"], (path, response.text)
    assert bare_client.get("/named.png", params={"name": "7:3"}).status_code == 200
