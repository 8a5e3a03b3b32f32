"""Synthetic images for a classifier: the stream of fresh images, the proxy classifier's recipes,
and ``productgan uplift`` end to end with its refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CLASSES, plain_generator, small_packed, varied_conditional_run

from productgan.cli import main
from productgan.data import PackedDataset
from productgan.errors import UsageError
from productgan.evaluator import class_probabilities
from productgan.evaluator.training import classification_loss
from productgan.explore import proxy
from productgan.explore.names import ImageName
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.proxy import RECIPES, Labelled, balancing_weights, one_hot, soft_targets, train_proxy
from productgan.explore.stream import SynthStream
from productgan.explore.synth import synth_run
from productgan.explore.uplift import chosen_recipe, recommendation, uplift, uplift_report, verdict
from productgan.generator.sampler import Sampler, load_generator
from productgan.reports.html import build_report
from productgan.run import UPLIFT_DIR


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny class-conditional run on noise images of ten categories, its generator, its
    evaluator, and a synth set of two images per category made from it."""
    root = tmp_path_factory.mktemp("uplift")
    varied_conditional_run(root)
    index = NeighbourIndex.from_run(root / "run")
    synth_run(root / "run", root / "synth", per_class=2, guardrails=False, progress=False, index=index)
    return root / "run", load_generator(root / "run"), index.net, root / "synth"


def test_a_stream_gives_fresh_named_images_the_evaluator_puts_in_their_category(setup):
    _, sampler, net, _ = setup
    stream = SynthStream(sampler, net, batch_size=24, seed=4, easiest=0.0)
    first, second = next(iter(stream)), stream.take(24)
    assert first.images.shape == (24, 1, 28, 28) and first.probabilities.shape == (24, 10)
    assert not set(first.names) & set(second.names)  # each latent vector used once
    assert np.allclose(first.probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(first.probabilities.argmax(axis=1), first.labels)  # off-category ones dropped
    # Every image is the one its name makes, and scored as the evaluator scores it.
    name = ImageName.parse(first.names[5])
    assert CLASSES.index(name.label) == first.labels[5]
    again = sampler(name.index + 1, seed=4, label=name.label)[-1].numpy()
    assert np.array_equal(first.images[5], again)
    assert np.allclose(class_probabilities(net, first.images).numpy(), first.probabilities, atol=1e-6)
    # The same seed, the same batches; the easiest share is dropped.
    assert SynthStream(sampler, net, batch_size=24, seed=4, easiest=0.0).take(24).names == first.names
    easy = SynthStream(sampler, net, seed=4, easiest=0.5)
    easy.take(40)
    assert easy.keep_rate < stream.keep_rate


def test_stream_weights_choose_the_categories(setup):
    _, sampler, net, _ = setup
    only = np.zeros(10)
    only[3] = 1.0
    batch = SynthStream(sampler, net, seed=1, easiest=0.0, weights=only).take(5)
    assert set(batch.labels.tolist()) <= {3}
    for bad in ([1.0] * 9, [-1.0] + [1.0] * 9, [0.0] * 10, [np.nan] * 10):
        with pytest.raises(UsageError, match="one weight per category"):
            SynthStream(sampler, net, weights=bad)
    for options, words in (({"easiest": 1.0}, "easiest"), ({"batch_size": 0}, "batch size")):
        with pytest.raises(UsageError, match=words):
            SynthStream(sampler, net, **options)


def test_balancing_weights_even_out_the_categories_of_a_batch():
    labels = np.repeat(np.arange(4), [10, 10, 10, 2])
    weights = balancing_weights(labels, 4, share=0.5)
    real = np.bincount(labels) / len(labels)
    assert weights.sum() == pytest.approx(1) and weights[3] > weights[0]
    assert np.allclose(0.5 * real + 0.5 * weights, 0.25)  # reachable here: every category evened out
    assert np.allclose(balancing_weights(np.repeat(np.arange(4), 5), 4, 0.5), 0.25)


def test_soft_targets_and_the_loss_they_train_with():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.5, 0.25, 0.25]], np.float32)
    softened = soft_targets(probabilities, temperature=2.0)
    expected = np.sqrt(np.clip(probabilities, 1e-12, 1))
    assert np.allclose(softened, expected / expected.sum(axis=1, keepdims=True))
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    # Smoothed one-hot targets train exactly as the hard labels with label smoothing do.
    soft = torch.from_numpy(one_hot(labels.numpy(), 3))
    assert torch.allclose(classification_loss(logits, soft), classification_loss(logits, labels), atol=1e-6)
    assert torch.allclose(classification_loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_train_proxy_is_seeded_and_each_recipe_mixes_as_it_says(monkeypatch):
    rng = np.random.default_rng(0)
    real = Labelled(rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8), np.arange(40) % 4)
    synthetic = Labelled(rng.integers(0, 256, (60, 1, 28, 28), dtype=np.uint8), np.arange(60) % 4)
    synthetic.images[:, :, 0, 0] = 7  # marks a synthetic image in a batch
    real.images[:, :, 0, 0] = 0
    seen = []
    original = proxy.fit_classifier

    def spy(net, batch, total_steps, lr, **kwargs):
        first = kwargs.get("first_step", 0)
        for step in range(first, first + total_steps):
            inputs, targets = batch(step)
            seen.append((float((inputs[:, 0, 0, 0] == 7).float().mean()), targets.dtype))
        return original(net, batch, total_steps, lr, **kwargs)

    monkeypatch.setattr(proxy, "fit_classifier", spy)
    one = train_proxy(real, 4, RECIPES["half"], 4, seed=1, synthetic=synthetic)
    assert all(share == 0.5 and dtype == torch.long for share, dtype in seen[:4])
    two = train_proxy(real, 4, RECIPES["half"], 4, seed=1, synthetic=synthetic)
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True))
    seen.clear()
    few = Labelled(synthetic.images[:20], synthetic.labels[:20])  # a third of all images: a third of each batch
    train_proxy(real, 4, RECIPES["half"], 2, seed=1, synthetic=few)
    assert [share for share, _ in seen] == [round(128 / 3) / 128] * 2
    seen.clear()
    train_proxy(real, 4, RECIPES["bridged"], 4, seed=1, synthetic=synthetic)
    assert [share for share, _ in seen[:8]] == [1.0, 1.0, 0.0, 0.0]
    seen.clear()
    taught = Labelled(synthetic.images, synthetic.labels, np.full((60, 4), 0.25, np.float32))
    train_proxy(real, 4, RECIPES["soft"], 2, seed=1, synthetic=taught)
    assert all(dtype == torch.float32 for _, dtype in seen)
    with pytest.raises(UsageError, match="needs synthetic images"):
        train_proxy(real, 4, RECIPES["soft"], 2, seed=1)
    with pytest.raises(UsageError, match="probabilities"):
        train_proxy(real, 4, RECIPES["soft"], 2, seed=1, synthetic=synthetic)


def test_uplift_measures_a_synth_set_and_the_report_shows_it(setup, capsys):
    run_dir, _, _, synth_dir = setup
    args = ["uplift", str(run_dir), "--synth", str(synth_dir), "--seeds", "2", "--steps", "10", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    path = run_dir / UPLIFT_DIR / "synth.json"
    report = json.loads(path.read_text())
    assert str(path) in printed and "Ankle boot" in printed and "accuracy" in printed
    assert report["recipe"] == "soft" and report["seeds"] == 2 and report["steps"] == 10
    assert set(report["categories"]) == set(CLASSES)
    row = report["categories"]["Dress"]
    assert row["synthetic_images"] == 2 and row["real_images"] == 14
    assert row["difference"]["mean"] == pytest.approx(
        row["recall_with_synthetic"]["mean"] - row["recall_real"]["mean"], abs=1e-9
    )
    assert {r["verdict"] for r in report["categories"].values()} <= {"helps", "hurts", "unclear"}
    assert report["recommendation"] and report["accuracy"]["verdict"] in {"helps", "hurts", "unclear"}
    # The same request gives the same figures; an earlier report is kept without --overwrite.
    again = uplift(run_dir, synth_dir, out=run_dir / "again.json", seeds=2, steps=10, progress=False)
    assert again["categories"] == report["categories"]
    before = path.read_bytes()
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err and path.read_bytes() == before
    page = build_report(run_dir)
    text = page.read_text()
    assert "Does synthetic data help?" in text and "Ankle boot" in text


def test_uplift_refuses_what_it_cannot_measure(setup, tmp_path, capsys):
    run_dir, _, _, synth_dir = setup
    base = ["uplift", str(run_dir), "--steps", "10", "--no-progress", "--out", str(tmp_path / "r.json")]

    def refused(args, words):
        assert main(args) == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / "r.json").exists()

    refused([*base, "--synth", str(tmp_path)], "not a folder productgan synth wrote")
    refused([*base, "--synth", str(synth_dir), "--seeds", "1"], "between 2 and 10")
    other = tmp_path / "other"
    shutil.copytree(synth_dir, other)
    summary = json.loads((other / "synth.json").read_text())
    (other / "synth.json").write_text(json.dumps({**summary, "run": str(tmp_path / "elsewhere")}))
    refused([*base, "--synth", str(other)], "made from the generator of")
    (other / "synth.json").write_text(json.dumps(summary))
    manifest = (other / "manifest.csv").read_text()
    (other / "manifest.csv").write_text(manifest.replace(",Dress,", ",Scarf,"))
    refused([*base, "--synth", str(other)], "'Scarf', which this run does not have")
    (other / "manifest.csv").write_text(manifest)
    damaged = sorted(other.glob("*/*.png"))[0]
    damaged.write_bytes(b"not a png")
    refused([*base, "--synth", str(other)], "cannot be read as an image")
    for png in other.glob("*/*.png"):
        png.unlink()
    refused([*base, "--synth", str(other)], "holds no synthetic images")
    (other / "synth.json").write_text(json.dumps({**summary, "images": {"crop": "product", "background": "keep"}}))
    refused([*base, "--synth", str(other)], "cropped or transparent")


def test_uplift_needs_a_validation_split_and_categories(setup, tmp_path):
    run_dir, _, _, synth_dir = setup
    data = PackedDataset.load(small_packed(tmp_path / "packed"))
    no_val = PackedDataset(
        data.images, data.labels, data.class_names, np.where(data.split == 1, 0, data.split), data.meta
    )
    no_val.save(tmp_path / "no-val")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns(UPLIFT_DIR))
    config = (run / "config.yaml").read_text()
    recorded = next(line for line in config.splitlines() if line.startswith("data:"))
    (run / "config.yaml").write_text(config.replace(recorded, f"data: {tmp_path / 'no-val'}"))
    summary = json.loads((synth_dir / "synth.json").read_text())
    copied = tmp_path / "synth"
    shutil.copytree(synth_dir, copied)
    (copied / "synth.json").write_text(json.dumps({**summary, "run": str(run.resolve())}))
    with pytest.raises(UsageError, match="no validation split"):
        uplift(run, copied, seeds=2, steps=10, progress=False)
    plain = tmp_path / "plain"  # the conditional run's config and data, with an unconditional generator
    plain.mkdir()
    shutil.copy(run_dir / "config.yaml", plain / "config.yaml")
    Sampler(plain_generator(conditional=False), load_generator(run_dir).info).save_pretrained(plain / "generator")
    (copied / "synth.json").write_text(json.dumps({**summary, "run": str(plain.resolve())}))
    with pytest.raises(UsageError, match="not --conditional"):
        uplift(plain, copied, seeds=2, steps=10, progress=False)
    assert not (run / UPLIFT_DIR).exists() and not (plain / UPLIFT_DIR).exists()


def test_the_recommendation_says_what_to_top_up_and_what_to_leave_alone():
    def row(synthetic, mean, ci):
        return {"synthetic_images": synthetic, "difference": {"mean": mean, "ci95": ci}}

    categories = {
        "Shirt": row(250, 0.20, 0.05),
        "Coat": row(250, -0.10, 0.02),
        "Bag": row(250, 0.01, 0.05),
        "T-shirt/top": row(0, -0.06, 0.01),
    }
    for value in categories.values():
        value["verdict"] = verdict(value["difference"])
    accuracy = {"difference": {"mean": 0.004, "ci95": 0.01}}
    accuracy["verdict"] = verdict(accuracy["difference"])
    assert [c["verdict"] for c in categories.values()] == ["helps", "hurts", "unclear", "hurts"]
    assert recommendation(accuracy, categories) == [
        "Top up Shirt with its 250 synthetic images: their recall rose.",
        "Leave out the synthetic images of Coat: their recall fell.",
        "No clear effect on Bag: leave them out, or measure again with more --seeds.",
        "Without synthetic images of their own, the recall of T-shirt/top fell.",
        "Overall accuracy did not clearly change with the synthetic set: +0.4 points ± 1.0.",
    ]
    assert verdict({"mean": 0.5, "ci95": None}) == "unclear"


def test_auto_chooses_soft_labels_for_even_categories_and_hard_ones_for_uneven():
    even = np.repeat(np.arange(3), [10, 9, 8])
    uneven = np.repeat(np.arange(3), [10, 10, 4])
    assert chosen_recipe("auto", even, 3)[0] == "soft"
    name, why = chosen_recipe("auto", uneven, 3)
    assert name == "half" and "4 training images against 10" in why
    assert chosen_recipe("bridged", uneven, 3) == ("bridged", "asked for")


def test_a_category_without_validation_images_is_reported_unmeasured():
    held_out = Labelled(np.zeros((4, 1, 28, 28), np.uint8), np.array([0, 0, 1, 1]))
    real = Labelled(np.zeros((6, 1, 28, 28), np.uint8), np.array([0, 0, 1, 1, 2, 2]))
    synthetic = Labelled(np.zeros((3, 1, 28, 28), np.uint8), np.array([0, 1, 2]))
    runs = [
        {
            "real": {"accuracy": 0.5 + seed / 10, "recall": [0.5, 0.5 + seed / 10, None]},
            "synthetic": {"accuracy": 0.6 + seed / 10, "recall": [1.0, 0.5, None]},
        }
        for seed in range(2)
    ]
    report = uplift_report(runs, ["Bag", "Coat", "Dress"], real, synthetic, held_out)
    assert report["categories"]["Dress"]["verdict"] == "unmeasured"
    assert report["categories"]["Dress"]["difference"] is None
    assert report["categories"]["Bag"]["difference"]["mean"] == pytest.approx(0.5)
    assert "The validation split has no images of Dress, so their effect is unmeasured." in report["recommendation"]
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN where a category could not be scored
