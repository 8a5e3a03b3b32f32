"""synth: counts per category, the manifest, names that make the same pixels again, each
guardrail dropping what it should, the packed output, and what is refused."""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSES, export_varied, plain_generator, small_packed, varied_conditional_run
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.data import PackedDataset
from productgan.errors import ProductganError
from productgan.evaluator import class_probabilities, native_images
from productgan.explore import guardrails, synth
from productgan.explore.guardrails import guardrails_for, synthesize
from productgan.explore.names import ImageName
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.synth import synth_run
from productgan.generator.sampler import Sampler, load_generator
from productgan.models import Generator, init_weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny class-conditional run on ``small_packed`` (see ``export_varied``), its generator and
    its neighbour index."""
    run_dir = varied_conditional_run(tmp_path_factory.mktemp("synth"))
    return run_dir, load_generator(run_dir), NeighbourIndex.from_run(run_dir)


def manifest(out: Path) -> list[dict]:
    with open(out / synth.MANIFEST_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def without_category_check(index, sampler, enabled: bool = True):
    """The run's guardrails without the category check: the stand-in generator is untrained, so
    the evaluator's verdict on its images' categories is noise, which tests of the other checks
    must not depend on."""
    return replace(guardrails_for(index, sampler, enabled), check_category=False)


def replacing_rows(sampler, monkeypatch, rows: dict[int, np.ndarray]):
    """Make every batch of ``sampler`` show the given images at the given rows."""
    original = sampler.from_noise

    def from_noise(z, size="native", batch_size=256, labels=None):
        images = original(z, size, batch_size, labels)
        for row, image in rows.items():
            if row < len(images):
                images[row] = torch.from_numpy(image)
        return images

    monkeypatch.setattr(sampler, "from_noise", from_noise)


def test_synth_writes_every_category_a_manifest_and_names_that_make_the_same_pixels(setup, tmp_path):
    run_dir, sampler, index = setup
    out = tmp_path / "synthetic"
    summary = synth_run(run_dir, out, per_class=3, seed=5, temperature=0.8, packed=True, progress=False, index=index)
    assert summary["kept"] == 30 and summary["guardrails"]["enabled"] is True
    on_disk = json.loads((out / synth.SUMMARY_FILE).read_text())
    assert on_disk["categories"]["Ankle boot"]["kept"] == 3 and on_disk["temperature"] == 0.8
    assert on_disk["guardrails"]["near-copy"]["threshold"] == pytest.approx(index.threshold)
    assert on_disk["guardrails"]["near-copy"]["thumbnail_threshold"] == pytest.approx(index.pixel_threshold)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert "T-shirt_top" in folders and len(folders) == 11  # ten categories and packed/
    assert all(len(list((out / f).glob("*.png"))) == 3 for f in folders if f != "packed")

    rows = manifest(out)
    assert len(rows) == on_disk["candidates"] >= 30
    kept = [r for r in rows if r["status"] == "kept"]
    assert sorted(r["file"] for r in kept) == sorted(str(p.relative_to(out)) for p in out.glob("*/*.png"))
    jsonl = [json.loads(line) for line in (out / synth.MANIFEST_JSONL).read_text().splitlines()]
    assert [r["name"] for r in jsonl] == [r["name"] for r in rows]
    for row in kept:
        name = ImageName.parse(row["name"])
        assert (name.seed, name.label, name.temperature) == (5, row["category"], 0.8)
        pixels = np.asarray(Image.open(out / row["file"]))[None]
        assert np.array_equal(pixels, sampler(name.index + 1, seed=5, label=name.label, temperature=0.8)[-1].numpy())
    assert len({int(r["index"]) for r in rows}) == len(rows)  # every latent vector used once

    packed = PackedDataset.load(out / synth.PACKED_DIR)
    dataset = index.dataset
    assert packed.class_names == CLASSES
    assert packed.split_sizes() == {"train": 30, "val": 20, "test": 30}
    assert np.bincount(packed.labels[packed.indices("train")]).tolist() == [3] * 10
    assert np.array_equal(packed.subset("test")[0], dataset.subset("test")[0])
    # The same images at training size, each with its category.
    tree = {np.asarray(Image.open(out / r["file"])).tobytes(): r["category"] for r in kept}
    natives = native_images(packed, "train")
    train_labels = packed.labels[packed.indices("train")]
    assert {image.tobytes(): CLASSES[label] for image, label in zip(natives, train_labels, strict=True)} == tree


def test_synth_writes_the_evaluators_probabilities_as_soft_labels(setup, tmp_path):
    run_dir, _, index = setup
    out = tmp_path / "synthetic"
    synth_run(run_dir, out, per_class=2, seed=3, packed=True, progress=False, index=index)
    kept = [r for r in manifest(out) if r["status"] == "kept"]
    pictures = np.stack([np.asarray(Image.open(out / r["file"]))[None] for r in kept])
    expected = class_probabilities(index.net, pictures).numpy()
    written = np.array([[float(p) for p in r["probabilities"].split(";")] for r in kept])
    assert written.shape == (20, 10) and np.allclose(written, expected, atol=1e-6)
    assert [CLASSES[i] for i in written.argmax(axis=1)] == [r["predicted"] for r in kept]
    jsonl = [json.loads(line) for line in (out / synth.MANIFEST_JSONL).read_text().splitlines()]
    assert [r["probabilities"] for r in jsonl if r["status"] == "kept"] == [r["probabilities"] for r in kept]

    packed = PackedDataset.load(out / synth.PACKED_DIR)
    soft = packed.soft_labels
    assert soft.dtype == np.float32 and soft.shape == (len(packed), 10)
    train = packed.indices("train")
    by_image = {image.tobytes(): row for image, row in zip(pictures, written, strict=True)}
    for image, row in zip(native_images(packed, "train"), soft[train], strict=True):
        assert np.allclose(row, by_image[image.tobytes()], atol=1e-5)
    held_out = np.concatenate([packed.indices("val"), packed.indices("test")])
    assert np.array_equal(soft[held_out], np.eye(10, dtype=np.float32)[packed.labels[held_out]])
    # The file is synth's own: --overwrite replaces the output it is part of.
    assert synth_run(run_dir, out, per_class=1, seed=4, packed=True, overwrite=True, progress=False, index=index)


def test_a_packed_dataset_refuses_soft_labels_that_are_not_probabilities(tmp_path):
    data = PackedDataset.load(small_packed(tmp_path / "packed"))
    good = np.full((len(data), 10), 0.1, np.float32)
    PackedDataset(data.images, data.labels, data.class_names, data.split, data.meta, soft_labels=good).save(
        tmp_path / "soft"
    )
    assert np.array_equal(PackedDataset.load(tmp_path / "soft").soft_labels, good)
    for bad in (good[:, :9], good * 2, good.astype(np.float64), np.where(good > 0, np.nan, good)):
        with pytest.raises(ProductganError, match="soft labels"):
            PackedDataset(data.images, data.labels, data.class_names, data.split, data.meta, soft_labels=bad)


def test_balance_tops_every_category_up_to_the_largest(setup, tmp_path):
    run_dir, _, index = setup
    summary = synth_run(run_dir, tmp_path / "out", balance=True, seed=1, progress=False, index=index)
    assert {name: c["kept"] for name, c in summary["categories"].items()} == {"Ankle boot": 5}
    assert len(list((tmp_path / "out" / "Ankle_boot").glob("*.png"))) == 5


def test_a_copy_of_a_training_image_is_dropped_and_replaced(setup, tmp_path, monkeypatch):
    _, sampler, index = setup
    position = int(index.dataset.indices("train")[3])
    copy = native_images(index.dataset, "train")[3]
    replacing_rows(sampler, monkeypatch, {0: copy})
    result = synthesize(sampler, index, {0: 3, 1: 3}, seed=2, guardrails=without_category_check(index, sampler))
    dropped = [r for r in result.records if r["status"] == "dropped"]
    assert dropped and all(r["reason"] == "near-copy" for r in dropped)
    assert dropped[0]["nearest_train_index"] == position
    assert dropped[0]["nearest_train_distance"] == pytest.approx(0, abs=1e-6)
    assert dropped[0]["nearest_train_thumbnail_distance"] == 0
    assert result.stats["kept"] == {"T-shirt/top": 3, "Trouser": 3}
    assert not any(np.array_equal(image, copy) for image in result.images)
    # Without guardrails the copy is kept, flagged in the manifest only.
    loose = synthesize(sampler, index, {0: 3, 1: 3}, seed=2, guardrails=without_category_check(index, sampler, False))
    assert all(r["status"] == "kept" for r in loose.records) and "near-copy" in loose.records[0]["flags"]
    assert any(np.array_equal(image, copy) for image in loose.images)


def test_an_image_of_another_category_is_dropped(setup, monkeypatch):
    _, sampler, index = setup
    original = guardrails.features_and_probabilities

    def sure_of_the_next_category(net, images):  # the evaluator is sure row 0 shows class 4
        features, probabilities = original(net, images)
        probabilities[0] = torch.nn.functional.one_hot(torch.tensor(4), 10).double()
        return features, probabilities

    rails = guardrails_for(index, sampler)
    # The evaluator of noise images is never 0.9 sure: the bar is its median probability of the
    # right category on the val images it classifies correctly.
    confidence, predicted = class_probabilities(index.net, native_images(index.dataset, "val")).max(dim=1)
    right = predicted.numpy() == index.dataset.labels[index.dataset.indices("val")]
    assert rails.min_confidence == pytest.approx(np.median(confidence.numpy()[right]))
    assert rails.min_confidence < guardrails.MIN_CONFIDENCE
    monkeypatch.setattr(guardrails, "features_and_probabilities", sure_of_the_next_category)
    result = synthesize(sampler, index, {3: 4}, seed=0, guardrails=rails)
    first = result.records[0]
    assert (first["status"], first["reason"], first["predicted"], first["confidence"]) == (
        "dropped",
        "off-category",
        "Coat",
        1.0,
    )
    assert result.stats["kept"] == {"Dress": 4}
    for record in result.records:
        if record["status"] == "kept":
            assert record["predicted"] == "Dress" or record["confidence"] < rails.min_confidence


def test_near_duplicates_within_a_batch_and_across_batches_are_dropped(setup, monkeypatch):
    _, sampler, index = setup
    twin = sampler(1, seed=99, label=0)[0].numpy()
    replacing_rows(sampler, monkeypatch, {0: twin, 1: twin})
    result = synthesize(sampler, index, {0: 6}, seed=0, guardrails=without_category_check(index, sampler), batch_size=4)
    first = result.records[0]["name"]
    assert result.records[0]["status"] == "kept"
    duplicates = [r for r in result.records if r["reason"] == "near-duplicate"]
    assert len(duplicates) >= 3  # row 1 of the first batch, rows 0 and 1 of each later one
    assert all(r["nearest_generated"] == first for r in duplicates)
    assert all(r["nearest_generated_distance"] == pytest.approx(0, abs=1e-6) for r in duplicates)
    assert sum(np.array_equal(image, twin) for image in result.images) == 1
    assert result.stats["kept"] == {"T-shirt/top": 6}


def test_a_category_that_cannot_be_filled_is_named_with_what_was_dropped(setup, monkeypatch):
    _, sampler, index = setup
    replacing_rows(sampler, monkeypatch, {0: native_images(index.dataset, "train")[0]})
    with pytest.raises(ProductganError, match=r"Category 'Pullover' could not be filled: 2 of 3 .* near-copy 1"):
        synthesize(sampler, index, {2: 3}, seed=0, guardrails=without_category_check(index, sampler), max_attempts=1)


def test_the_same_seed_gives_the_same_set(setup):
    _, sampler, index = setup
    one, two = (synthesize(sampler, index, {5: 4, 7: 2}, seed=3) for _ in range(2))
    assert one.records == two.records and np.array_equal(one.images, two.images)
    assert sorted(one.names) == sorted(r["name"] for r in one.records if r["status"] == "kept")
    assert one.labels.tolist() == [5, 5, 5, 5, 7, 7]  # grouped by category
    other = synthesize(sampler, index, {5: 4, 7: 2}, seed=4)
    assert not np.array_equal(one.images, other.images)


def test_synth_cli_refuses_to_replace_and_a_failed_write_keeps_the_old_output(setup, tmp_path, monkeypatch, capsys):
    run_dir = str(setup[0])
    out = tmp_path / "synthetic"
    args = ["synth", run_dir, "--out", str(out), "--n", "10", "--no-progress"]
    assert main(args) == 0
    assert "Kept 10 of" in capsys.readouterr().out
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*args, "--seed", "1"]) == 1
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err

    calls = []

    def failing_png(picture):  # the disk fills up at the fifth image
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return original(picture)

    original = synth.to_pil
    monkeypatch.setattr(synth, "to_pil", failing_png)
    assert main([*args, "--seed", "1", "--overwrite"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no staging folder left behind
    monkeypatch.undo()
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "synth.json").read_text())["seed"] == 1

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["synth", run_dir, "--out", str(mine), "--n", "10", "--no-progress", "--overwrite"]) == 1
    assert "(notes.txt), files productgan synth did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "flags, words",
    [
        ([], "exactly one of --per-class N"),
        (["--n", "5", "--balance"], "exactly one of --per-class N"),
        (["--per-class", "0"], "--per-class must be between 1"),
        (["--n", "5", "--temperature", "0.123456789"], "more digits than an image name keeps"),
        (["--n", "5", "--max-attempts", "0"], "--max-attempts must be a whole number of 1 or more"),
    ],
)
def test_synth_cli_refuses_bad_requests_in_one_sentence(setup, tmp_path, capsys, flags, words):
    assert main(["synth", str(setup[0]), "--out", str(tmp_path / "out"), "--no-progress", *flags]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unconditional_generator_makes_n_images_and_refuses_categories(setup, tmp_path, capsys):
    run_dir = tmp_path / "plain"  # the conditional run's config and data, with an unconditional generator
    run_dir.mkdir()
    shutil.copy(setup[0] / "config.yaml", run_dir / "config.yaml")
    torch.manual_seed(0)
    generator = Generator(ModelConfig(nz=8, ngf=4, ndf=4), 32, 1)
    init_weights(generator)
    export_varied(generator, run_dir, setup[1].info)
    for flags in (["--per-class", "3"], ["--balance"]):
        assert main(["synth", str(run_dir), "--out", str(tmp_path / "out"), "--no-progress", *flags]) == 2
        assert "this generator is not class-conditional; ask for --n N" in capsys.readouterr().err
    summary = synth_run(run_dir, tmp_path / "out", n=4, seed=2, progress=False)
    rows = manifest(tmp_path / "out")
    assert summary["kept"] == 4 and {r["category"] for r in rows} == {""}
    sampler = load_generator(run_dir)
    for row in rows:
        name = ImageName.parse(row["name"])
        assert name.label is None and row["file"].startswith("unlabelled/")
        pixels = np.asarray(Image.open(tmp_path / "out" / row["file"]))[None]
        assert np.array_equal(pixels, sampler(name.index + 1, seed=2)[-1].numpy())


def test_synth_overwrite_never_deletes_files_a_user_added_to_its_output(setup, tmp_path, capsys):
    run_dir = str(setup[0])
    out = tmp_path / "synthetic"
    args = ["synth", run_dir, "--out", str(out), "--n", "10", "--no-progress"]
    assert main(args) == 0
    (out / "my_labels_checked.csv").write_text("file,label\n")
    kept = next(p for p in out.iterdir() if p.is_dir())
    (kept / "my_photo.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main([*args, "--seed", "1", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "my_labels_checked.csv" in err and f"{kept.name}/my_photo.png" in err and "synth did not write" in err
    assert (out / "my_labels_checked.csv").read_text() == "file,label\n" and (kept / "my_photo.png").exists()
    assert json.loads((out / "synth.json").read_text())["seed"] == 0  # the earlier set is untouched
    (out / "my_labels_checked.csv").unlink()
    (kept / "my_photo.png").unlink()
    assert main([*args, "--seed", "1", "--overwrite", "--packed"]) == 0  # its own files only: replaced
    assert main([*args, "--seed", "2", "--overwrite"]) == 0  # packed/ was its own too
    assert json.loads((out / "synth.json").read_text())["seed"] == 2


def test_a_second_synth_into_the_same_folder_is_refused_before_any_work(setup, tmp_path, monkeypatch, capsys):
    from productgan.files import Outputs

    def no_work(*args, **kwargs):
        raise AssertionError("the generator was loaded before the output was claimed")

    monkeypatch.setattr(synth, "load_generator", no_work)
    out = tmp_path / "synthetic"
    with Outputs("synth") as running:
        running.claim(out, kind=synth.SYNTH_OUTPUT)
        assert main(["synth", str(setup[0]), "--out", str(out), "--n", "10", "--no-progress"]) == 1
    assert "is being written by process" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_synth_on_a_full_disk_names_the_file_it_could_not_write(setup, tmp_path, monkeypatch, capsys):
    def full_disk(picture):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synth, "to_pil", full_disk)
    out = tmp_path / "synthetic"
    assert main(["synth", str(setup[0]), "--out", str(out), "--n", "10", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"No space left on device ({out}{os.sep}" in err and ".png); free some space" in err
    assert list(tmp_path.iterdir()) == []


def test_synth_crops_and_clears_the_pngs_and_packs_the_images_whole(setup, tmp_path):
    run_dir = tmp_path / "plain"  # the run's config and data, with a generator of squares on black
    run_dir.mkdir()
    shutil.copy(setup[0] / "config.yaml", run_dir / "config.yaml")
    Sampler(plain_generator(), setup[1].info).save_pretrained(run_dir / "generator")
    out = tmp_path / "synthetic"
    summary = synth_run(
        run_dir, out, per_class=1, guardrails=False, packed=True, progress=False, index=setup[2],
        crop="product", background="transparent",
    )  # fmt: skip
    assert summary["images"] == {"crop": "product", "background": "transparent"}
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 10
    for png in pngs:
        image = Image.open(png)
        pixels = np.asarray(image)
        assert image.mode == "LA" and pixels.shape == (24, 24, 2)  # the 20 x 20 square and a margin of 2
        assert pixels[0, 0, 1] == 0 and pixels[12, 12, 1] == 255
    train = PackedDataset.load(out / synth.PACKED_DIR).subset("train")[0]
    assert train.shape == (10, 1, 32, 32) and set(np.unique(train)) == {0, 255}  # whole, opaque


def test_synth_refuses_a_transparent_background_on_noise_before_any_work(setup, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the training images were indexed before the background was checked")

    monkeypatch.setattr(NeighbourIndex, "from_run", no_work)
    out = tmp_path / "synthetic"
    flags = ["--n", "10", "--no-progress", "--background", "transparent"]
    assert main(["synth", str(setup[0]), "--out", str(out), *flags]) == 2
    assert "transparent background needs a plain one" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
