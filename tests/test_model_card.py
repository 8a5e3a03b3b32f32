"""The model card (generator/README.md): written with every export, in Hugging Face's layout, with
the data, the training, and after evaluate the figures; prepare --licence records what it shows."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import tiny_config
from PIL import Image

from productgan.cli import main
from productgan.generator.card import WEIGHTS_LICENCE_NAME, model_card
from productgan.generator.card_sections import licence_id
from productgan.run import export_run
from productgan.train import train

CLASSES = ["Shirt", "Sneaker", "Bag"]
EXPORT = {
    "format": "productgan-generator",
    "version": 1,
    "model": {"nz": 100, "ngf": 32, "g_norm": "batch", "g_output": "tanh", "conditional": True},
    "image_size": 64,
    "channels": 3,
    "num_classes": 3,
    "pixel_range": [-1.0, 1.0],
    "class_names": CLASSES,
    "native_size": [64, 64],
    "fit": "pad",
    "dataset": "folder",
    "split_sizes": {"train": 800, "val": 100, "test": 100},
    "licence": "CC BY 4.0",
    "step": 3000,
    "images_seen": 192000,
    "ema": True,
    "seed": 0,
}
RUN = {
    "data": "/data/shop-64",
    "preset": "products-64",
    "batch_size": 64,
    "seed": 0,
    "loss": {"name": "bce"},
    "optim": {"name": "adam", "lr_g": 0.0002, "lr_d": 0.0002},
    "train": {
        "precision": "bf16",
        "precision_measured": {"images_per_s": {"fp32": 410.0, "bf16": 655.0}, "device": "Test CPU (2 threads)"},
    },
}


def report(step: int, split: str = "test", shirt: float = 0.01) -> dict:
    return {
        "metrics": {
            "fid_productgan": 1.2345,
            "fid_productgan_ci95": [1.1, 1.4],
            "kid_productgan_mean": 0.0123,
            "kid_productgan_std": 0.001,
            "precision": 0.71,
            "class_shares": {"Shirt": shirt, "Sneaker": 0.49, "Bag": 0.5},
            "rarest_class_share": shirt,
            "memorisation_share": 0.42,
        },
        "real_data_floor": {
            "fid_productgan": 0.05,
            "class_shares": {"Shirt": 0.3, "Sneaker": 0.35, "Bag": 0.35},
            "memorisation_share": 0.35,
        },
        "protocol": {
            "reference_split": split,
            "num_generated": 1000,
            "num_reference": 100,
            "seed": 0,
            "latent_temperature": 1.0,
            "image_size": "native 64x64",
            "extractor": "productgan evaluator: a test extractor",
            "generator_step": step,
            "real_data_floor": "1000 real train images against the same test split",
        },
    }


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_card_holds_the_data_training_and_figures_of_this_export():
    reports = [("test-n1000-seed0-step3000.json", report(3000)), ("val-n1000-seed0-step1000.json", report(1000))]
    card = model_card(EXPORT, RUN, reports)
    header = front_matter(card)
    assert header["license"] == "other" and header["library_name"] == "productgan"
    assert "class-conditional" in header["tags"] and "datasets" not in header  # a local folder has no hub id
    assert header["pipeline_tag"] == "unconditional-image-generation"  # the hub has no class-conditional task
    assert "| dataset | a folder of product photos packed by `productgan prepare` (shop-64) |" in card
    assert "| images per split | train 800 / val 100 / test 100 |" in card
    assert "| categories | 3: Shirt, Sneaker, Bag |" in card
    assert "| licence of the data | CC BY 4.0 (the hub's id: `cc-by-4.0`) |" in card
    assert "| steps | 3,000 |" in card and "| images seen | 192,000 |" in card and "| preset | products-64 |" in card
    assert "| precision | bf16 (chosen by timing the run's own step: images/s fp32 410, bf16 655) |" in card
    assert "| hardware | Test CPU (2 threads) |" in card
    # Only the report of the exported step, with its protocol, figures, spread and floor.
    assert "`evaluation/test-n1000-seed0-step3000.json`" in card and "step1000" not in card
    assert "holds 1 other report(s)" in card
    assert "| `fid_productgan` | 1.234 (95% CI 1.1 to 1.4) | 0.05 |" in card
    assert "| `kid_productgan_mean` | 0.0123 | - |" in card and "kid_productgan_std" not in card
    assert "against 100 images of the test split; seed 0" in card
    assert "Not evaluated yet" not in card
    assert "`memorisation_share` 0.420 of generated images" in card and "held-out real images: 0.350" in card
    assert "Shirt (0.010 of generated images against 0.300)" in card and "Sneaker (" not in card
    assert 'sampler(n=16, seed=7, label="Bag")' in card and "--format onnx` writes `model.onnx`" in card


def test_a_card_without_evaluations_or_run_says_what_is_not_known():
    export = {**EXPORT, "num_classes": 0, "licence": None, "split_sizes": None, "step": 5}
    card = model_card(export, None, [("test-n1000-seed0-step3000.json", report(3000))], onnx=True)
    header = front_matter(card)
    assert header["license"] == "other" and header["pipeline_tag"] == "unconditional-image-generation"
    assert "onnx" in header["tags"]
    assert "| licence of the data | not recorded (`productgan prepare --licence TEXT` records it) |" in card
    assert "| images per split | not recorded |" in card and "| preset | not recorded |" in card
    assert "Not evaluated yet: run `productgan evaluate RUN_DIR`" in card and "holds 1 other report(s)" in card
    assert "Memorisation (whether it reproduces training images) and the categories" in card
    assert "Inputs: `z` (float32, N x nz, standard normal); output: `images`, uint8 N x C x H x W" in card
    assert "(or, for a file exported with `--onnx-output float`, float32" in card  # the file did not say which
    assert "sampler(n=16, seed=7)  # uint8" in card


def test_balanced_categories_are_not_named_and_no_class_figures_are_said_to_be_missing():
    balanced = model_card(EXPORT, RUN, [("r.json", report(3000, shirt=0.2))])
    assert "Categories rendered poorly: none" in balanced
    unlabelled = report(3000)
    del unlabelled["metrics"]["class_shares"]
    assert "holds no per-category figures" in model_card(EXPORT, RUN, [("r.json", unlabelled)])


@pytest.mark.parametrize(
    "recorded, expected",
    [("MIT", "mit"), ("CC BY 4.0", "cc-by-4.0"), ("apache-2.0", "apache-2.0"), ("proprietary, ACME Ltd", "other")],
)
def test_a_recorded_licence_becomes_the_hubs_identifier_or_other(recorded, expected):
    assert licence_id(recorded) == expected
    card = model_card({**EXPORT, "licence": recorded})
    assert front_matter(card)["license"] == "other"  # the data's licence is not the weights'
    shown = f"| licence of the data | {recorded} |" if expected == "other" else f"(the hub's id: `{expected}`) |"
    assert shown in card


def test_the_weights_licence_is_the_owners_and_the_datas_licence_is_the_datas():
    card = model_card({**EXPORT, "dataset": "fashion-mnist", "licence": "MIT"}, RUN)
    header = front_matter(card)
    assert header["license"] == "other" and header["license_name"] == WEIGHTS_LICENCE_NAME
    assert "mit" not in yaml.safe_dump(header).lower().split("datasets")[0]  # nowhere in the model's fields
    assert header["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert "# license: the licence of these weights, which is their owner's to choose" in card
    assert (
        "That is the licence of the training data" in card and "The licence of these weights is their owner's" in card
    )


@pytest.mark.parametrize("output", ["uint8", "float"])
def test_the_onnx_section_reproduces_a_seed_and_names_its_output(output):
    card = model_card(EXPORT, RUN, onnx=output)
    assert "z = numpy.random.default_rng(seed).standard_normal((n, nz), dtype=numpy.float32)" in card
    assert "n, nz, seed = 16, 100, 7" in card and "class_index = numpy.arange(n, dtype=numpy.int64) % 3" in card
    assert "numpy.full(n, 2, dtype=numpy.int64)  (Bag)" in card
    if output == "uint8":
        assert "output: `images`, uint8 N x C x H x W at the native size (64x64)" in card and "float32 N" not in card
    else:
        assert "output: `images`, float32 N x C x S x S at the training size (64x64)" in card
        assert "`(images - -1) * 127.5` on 0..255" in card and "uint8 N" not in card
    assert "docs/serving.md" not in card and "productgan.sampling" not in card
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["pipeline_tag"] == "unconditional-image-generation" and "onnx" in header["tags"]
    assert "# pipeline_tag: the hub has no class-conditional task" in card


def test_text_from_the_data_cannot_break_the_front_matter_or_a_table():
    export = {**EXPORT, "licence": "---\nlicense: mit", "class_names": ["a|b", "c\nd", "e"]}
    card = model_card(export, RUN)
    assert front_matter(card)["license"] == "other"
    assert "| categories | 3: a\\|b, c d, e |" in card


def test_training_writes_the_card_and_evaluate_puts_its_figures_on_it(fake_packed, tmp_path, capsys):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    run = tmp_path / "run"
    card = (run / "generator" / "README.md").read_text()
    header = front_matter(card)
    assert header["license"] == "other" and header["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert "Fashion-MNIST (Zalando Research, https://github.com/zalandoresearch/fashion-mnist)" in card
    assert "| images per split | train 180 / val 20 / test 50 |" in card
    assert "| licence of the data | MIT (the hub's id: `mit`) |" in card
    assert "| steps | 2 |" in card and "| images seen | 32 |" in card and "| precision | fp32 |" in card
    assert "Not evaluated yet" in card

    assert main(["evaluate", str(run), "--split", "val", "--n", "20", "--no-progress"]) == 0
    capsys.readouterr()
    figures = json.loads((run / "evaluation" / "val-n20-seed0-step2.json").read_text())
    card = (run / "generator" / "README.md").read_text()
    assert "Not evaluated yet" not in card and "`evaluation/val-n20-seed0-step2.json`" in card
    assert f"| `fid_productgan` | {figures['metrics']['fid_productgan']:.4g} (95% CI" in card
    assert f"`memorisation_share` {figures['metrics']['memorisation_share']:.3f}" in card
    front_matter(card)
    # A new export of the same step keeps the figures: the card is written from the run's reports.
    export_run(run)
    assert (run / "generator" / "README.md").read_text() == card


def photo_folder(root):
    for index, name in enumerate(("bags", "shoes")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (12, 10), (40 * i, 100 * index, 30)).save(root / name / f"{i}.png")
    return root


def test_prepare_records_the_licence_it_is_given_and_refuses_a_bad_one(tmp_path, fake_packed, capsys):
    photos = photo_folder(tmp_path / "photos")
    common = ["--size", "32", "--split", "0.6,0.2,0.2", "--workers", "1", "--no-progress"]
    assert main(["prepare", str(photos), "--out", str(tmp_path / "a"), "--licence", " CC BY 4.0 ", *common]) == 0
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["meta"]["licence"] == "CC BY 4.0"
    assert main(["prepare", str(photos), "--out", str(tmp_path / "b"), *common]) == 0
    assert json.loads((tmp_path / "b" / "dataset.json").read_text())["meta"]["licence"] is None
    capsys.readouterr()
    assert main(["prepare", str(photos), "--out", str(tmp_path / "c"), "--licence", "one\ntwo", *common]) == 2
    assert "--licence must be one line" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(["prepare", "fashion-mnist", "--out", str(tmp_path / "d"), "--licence", "MIT"]) == 2
    assert "--licence apply to folders of images, not to Fashion-MNIST" in capsys.readouterr().err
    assert json.loads((fake_packed / "dataset.json").read_text())["meta"]["licence"] == "MIT"
