"""A mixed-label training set: prepare's unlabelled/ folder, and a conditional GAN that learns from
every image while only some have a category."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSES, resumed_run_matches, small_packed, tiny_config
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.data import UNLABELLED, PackedDataset
from productgan.data.folder import prepare_folder
from productgan.errors import ProductganError
from productgan.evaluator import labelled_images
from productgan.models import Discriminator
from productgan.train import train
from productgan.train.batches import LABELLED_SHARE, BatchSource, describe_mixed, generator_classes, mixed_labels

CONDITIONAL = ModelConfig(nz=8, ngf=4, ndf=4, conditional=True)


def photo_folder(root: Path, folders: dict[str, int]) -> Path:
    """Plain coloured squares, ``count`` in each named sub-folder, every image different."""
    for f, (name, count) in enumerate(folders.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (20, 20), (10 * i, 60 * f, 200 - 10 * i)).save(root / name / f"{i}.png")
    return root


def test_prepare_keeps_the_unlabelled_folder_out_of_the_categories_and_in_train(tmp_path):
    src = photo_folder(tmp_path / "photos", {"bags": 10, "shoes": 10, "Unlabelled": 7})
    out = prepare_folder(src, tmp_path / "packed", size=32, progress=False, workers=1)
    dataset = PackedDataset.load(out)
    assert dataset.class_names == ["bags", "shoes"]
    unlabelled = dataset.labels == UNLABELLED
    assert unlabelled.sum() == dataset.unlabelled_count == 7
    assert (dataset.split[unlabelled] == 0).all()  # val and test are for images with a category
    for name in ("val", "test"):
        assert len(dataset.indices(name)) == 2 and (dataset.labels[dataset.indices(name)] >= 0).all()
    info = json.loads((out / "dataset.json").read_text())
    assert info["meta"]["unlabelled_images"] == 7 and "unlabelled" in info["meta"]["labels"]
    assert info["meta"]["empty_class_folders"] == []
    images, labels = labelled_images(dataset, "train")
    assert len(images) == len(labels) == 16 and (labels >= 0).all()


def test_prepare_refuses_a_folder_whose_images_are_all_unlabelled(tmp_path, capsys):
    src = photo_folder(tmp_path / "photos", {"unlabeled": 5})
    assert main(["prepare", str(src), "--out", str(tmp_path / "packed"), "--size", "32", "--no-progress"]) == 2
    assert "no category to learn" in capsys.readouterr().err
    assert not (tmp_path / "packed").exists()


def test_a_packed_dataset_refuses_unlabelled_images_outside_train(tmp_path):
    dataset = PackedDataset.load(small_packed(tmp_path / "small"))
    labels = dataset.labels.copy()
    labels[dataset.indices("test")[0]] = UNLABELLED
    with pytest.raises(ProductganError, match="unlabelled images in its validation or test split"):
        PackedDataset(dataset.images, labels, dataset.class_names, dataset.split, dataset.meta)
    labels[dataset.indices("test")[0]] = -2
    with pytest.raises(ProductganError, match="labels from -2"):
        PackedDataset(dataset.images, labels, dataset.class_names, dataset.split, dataset.meta)


def test_mixed_labels_draw_a_category_for_each_unlabelled_image_and_the_labelled_ones_more_often():
    labels = np.full(2000, UNLABELLED)
    labels[:100] = np.repeat([0, 1, 2, 2], 25)  # 100 labelled (5%): classes 0, 1, 2 in 1:1:2
    encoded, pool = mixed_labels(labels, seed=3)
    assert np.array_equal(encoded[:100], labels[:100])
    drawn = -1 - encoded[100:]
    assert (encoded[100:] < 0).all() and set(np.unique(drawn)) == {0, 1, 2}
    assert abs((drawn == 2).mean() - 0.5) < 0.05 and abs((drawn == 0).mean() - 0.25) < 0.05
    assert np.array_equal(generator_classes(torch.from_numpy(encoded)).numpy()[100:], drawn)
    share = np.isin(pool, np.arange(100)).mean()
    assert abs(share - LABELLED_SHARE) < 0.02 and np.isin(np.arange(2000), pool).all()
    again, same_pool = mixed_labels(labels, seed=3)
    assert np.array_equal(again, encoded) and np.array_equal(pool, same_pool)
    assert not np.array_equal(mixed_labels(labels, seed=4)[0], encoded)
    every = np.repeat([0, 1], 10)
    assert mixed_labels(every, seed=0)[1] is None and mixed_labels(every, seed=0)[0] is every
    with pytest.raises(ProductganError, match="No training image has a category"):
        mixed_labels(np.full(5, UNLABELLED), seed=0)


def test_a_batch_source_goes_through_its_pool_an_epoch_at_a_time():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    pool = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])
    source = BatchSource(images, torch.arange(10), 4, seed=0, pool=pool)
    epoch = torch.cat([source.next()[1] for _ in range(3)])
    assert source.batches_per_epoch == 3 and sorted(epoch.tolist()) == sorted(pool.tolist())
    labels, pool = mixed_labels(np.array([0, 1] + [UNLABELLED] * 30), seed=0)
    mixed = BatchSource(
        torch.zeros(32, 1, 1, 1, dtype=torch.uint8), torch.from_numpy(labels), 4, 0, pool=torch.from_numpy(pool)
    )
    assert describe_mixed(mixed) == (
        "30 of the 32 training images have no category: D judges them (and their fakes) without the "
        "category; each of the 2 labelled ones is drawn 5 times an epoch."
    )
    assert describe_mixed(BatchSource(torch.zeros(4, 1, 1, 1), torch.arange(4), 2, 0)) is None


@pytest.mark.parametrize("pack", [1, 2])
def test_the_discriminator_judges_an_unlabelled_image_without_its_projection_term(pack):
    torch.manual_seed(0)
    critic = Discriminator(ModelConfig(nz=8, ngf=4, ndf=4, conditional=True, d_pack=pack), 32, 1, 4).eval()
    bare = Discriminator(ModelConfig(nz=8, ngf=4, ndf=4, d_pack=pack), 32, 1, 0).eval()
    bare.main.load_state_dict(critic.main.state_dict())
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(critic(x, torch.tensor([-1, -2, -4, -1])), bare(x))
        labelled = critic(x, torch.tensor([1, 3, 0, 2]))
        assert not torch.equal(labelled, bare(x))
        if pack == 1:  # one unlabelled image leaves the others' logits as they were
            mixed = critic(x, torch.tensor([1, -3, 0, 2]))
            assert torch.equal(mixed[[0, 2, 3]], labelled[[0, 2, 3]]) and torch.equal(mixed[1], bare(x)[1])


def mixed_packed(folder: Path, unlabelled_share: float = 0.75) -> Path:
    """``small_packed`` with most of its train split's labels taken away."""
    dataset = PackedDataset.load(small_packed(folder / "small"))
    train_rows = dataset.indices("train")
    gone = np.random.default_rng(0).choice(train_rows, round(unlabelled_share * len(train_rows)), replace=False)
    labels = dataset.labels.copy()
    labels[gone] = UNLABELLED
    mixed = PackedDataset(dataset.images, labels, dataset.class_names, dataset.split, dataset.meta)
    return mixed.save(folder / "mixed")


def test_a_conditional_gan_trains_on_a_mixed_label_split_and_resumes_bit_for_bit(tmp_path):
    full = resumed_run_matches(mixed_packed(tmp_path), tmp_path, CONDITIONAL)
    tables = [t for name, t in full["G"].items() if name.endswith("table.weight")]
    assert tables and all(t.shape[0] == len(CLASSES) for t in tables)  # every category, none for "unlabelled"


def test_a_mixed_label_run_evaluates_synthesizes_and_measures_with_its_labelled_images(tmp_path, capsys):
    data = mixed_packed(tmp_path)
    run = tmp_path / "run"
    train(tiny_config(data, run, steps=4, model=CONDITIONAL), progress=False)
    assert main(["evaluate", str(run), "--split", "val", "--n", "40", "--cas", "--no-progress"]) == 0
    report = json.loads(next((run / "evaluation").glob("*.json")).read_text())
    assert report["protocol"]["cas"]["num_real_train"] == 135 - 101  # the labelled train images only
    evaluator = json.loads((data / "evaluator" / "evaluator.json").read_text())
    assert evaluator["task"] == "classes" and evaluator["train_split_size"] == 135 - 101
    out = tmp_path / "synth"
    assert main(["synth", str(run), "--balance", "--out", str(out), "--no-guardrails", "--no-progress"]) == 0
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert len(manifest) > 1
    card = (run / "generator" / "README.md").read_text()
    assert "101 of the train images without a category" in card
