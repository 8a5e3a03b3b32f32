"""--init-from: a new run starting from another run's weights (matched categories, a new category's
rows from the mean, grey to RGB), --freeze-d, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY_FLAGS, tiny_config

from productgan.cli import main
from productgan.config import resolve
from productgan.data import PackedDataset
from productgan.errors import ProductganError, UsageError
from productgan.models import eval_mode
from productgan.train import Trainer, train
from productgan.train.init_from import class_rows, describe_start, start_from
from productgan.train.networks import frozen_d_parameters

CONDITIONAL = {"conditional": True}


def conditional_config(data, out, **overrides):
    config = tiny_config(data, out, **overrides)
    config.model.conditional = True
    return config


def without_class(packed, out, dropped: int = 9):
    """The same data without one category (9 of the 10 left, names kept)."""
    full = PackedDataset.load(packed)
    keep = full.labels != dropped
    names = [n for i, n in enumerate(full.class_names) if i != dropped]
    labels = np.array([i - (i > dropped) for i in full.labels[keep]], dtype=full.labels.dtype)
    return PackedDataset(full.images[keep], labels, names, full.split[keep], dict(full.meta)).save(out)


def as_rgb(packed, out):
    full = PackedDataset.load(packed)
    return PackedDataset(
        full.images.repeat(3, axis=1), full.labels, full.class_names, full.split, dict(full.meta)
    ).save(out)


@pytest.fixture
def source_run(fake_packed, tmp_path):
    """A conditional run on nine of the ten categories, two steps."""
    nine = without_class(fake_packed, tmp_path / "nine")
    train(conditional_config(nine, tmp_path / "source", steps=2), progress=False)
    return tmp_path / "source"


def trainer_from(data, out, source, **train_settings):
    config = conditional_config(data, out, steps=2)
    config.train.init_from = str(source)
    for name, value in train_settings.items():
        setattr(config.train, name, value)
    dataset = PackedDataset.load(data)
    resolve(config, dataset)
    return config, dataset, Trainer(config, out, dataset)


def test_categories_are_matched_by_name_and_a_new_one_starts_from_the_mean(source_run, fake_packed, tmp_path):
    from productgan.checkpoint import load_checkpoint

    source = load_checkpoint(source_run / "checkpoints" / "last.pt")
    config, dataset, trainer = trainer_from(fake_packed, tmp_path / "new", source_run)
    record = start_from(trainer.nets, config, dataset)
    assert record["classes_added"] == [dataset.class_names[9]] and record["step"] == 2
    assert len(record["sha256"]) == 64 and config.train.init_source == record
    assert f"new categories from the mean of the others: {dataset.class_names[9]}" in describe_start(record)
    table = next(k for k in source["G"] if k.endswith("table.weight"))
    loaded, theirs = trainer.G.state_dict()[table], source["G"][table]
    assert torch.equal(loaded[:9], theirs) and torch.allclose(loaded[9], theirs.mean(dim=0))
    assert torch.equal(trainer.D.state_dict()["embed.weight"][:9], source["D"]["embed.weight"])
    same = next(k for k in source["G"] if not k.endswith("table.weight") and source["G"][k].dtype.is_floating_point)
    assert torch.equal(trainer.G.state_dict()[same], source["G"][same])
    ema = source["G_ema"][table]
    assert torch.equal(trainer.ema.model.state_dict()[table][:9], ema)


def test_a_grey_run_starts_an_rgb_one_with_the_same_pictures(source_run, fake_packed, tmp_path):
    """G's grey output is repeated into three channels; D answers a grey picture in RGB as before."""
    nine = tmp_path / "nine"  # the source's own data, in RGB
    rgb = as_rgb(nine, tmp_path / "rgb")
    config, dataset, trainer = trainer_from(rgb, tmp_path / "new", source_run)
    record = start_from(trainer.nets, config, dataset)
    assert record["channels"] == "1 -> 3" and record["classes_added"] == []
    grey_config, grey_data, grey = trainer_from(nine, tmp_path / "grey", source_run)
    start_from(grey.nets, grey_config, grey_data)
    z, labels = torch.randn(4, config.model.nz), torch.tensor([0, 1, 2, 3])
    with torch.no_grad(), eval_mode(trainer.G), eval_mode(grey.G), eval_mode(trainer.D), eval_mode(grey.D):
        grey_images = grey.G(z, labels)
        assert torch.allclose(trainer.G(z, labels), grey_images.repeat(1, 3, 1, 1), atol=1e-6)
        assert torch.allclose(trainer.D(grey_images.repeat(1, 3, 1, 1), labels), grey.D(grey_images, labels), atol=1e-5)


def test_freeze_d_keeps_the_first_blocks_and_trains_the_rest(source_run, fake_packed, tmp_path):
    from productgan.checkpoint import load_checkpoint

    config = conditional_config(fake_packed, tmp_path / "tuned", steps=3)
    config.train.init_from, config.train.freeze_d = str(source_run), 2
    train(config, progress=False)
    source = load_checkpoint(source_run / "checkpoints" / "last.pt")["D"]
    tuned = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")["D"]
    D = Trainer(config, tmp_path / "y", PackedDataset.load(fake_packed)).D
    frozen = {id(p) for p in frozen_d_parameters(D, 2)}
    frozen_names = {n for n, p in D.named_parameters() if id(p) in frozen}
    assert frozen_names == {"main.0.weight", "main.0.bias", "main.2.weight", "main.3.weight", "main.3.bias"}
    for name in frozen_names:
        assert torch.equal(tuned[name], source[name]), name
    assert not torch.equal(tuned["main.5.weight"], source["main.5.weight"])  # the third block learned
    recorded = yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())["train"]
    assert recorded["freeze_d"] == 2 and recorded["init_source"]["run"] == str(source_run.resolve())


def test_class_rows_match_names_in_any_case():
    assert class_rows(["Shirt", "Bag"], ["bag", "Hat", "SHIRT"]) == [1, None, 0]


def test_mismatches_and_bad_sources_are_refused_in_one_sentence(source_run, fake_packed, tmp_path, capsys):
    wider = conditional_config(fake_packed, tmp_path / "wider", steps=2)
    wider.model.ndf = 8
    wider.train.init_from = str(source_run)
    with pytest.raises(UsageError, match="--model.ndf 4 and this run 8; the architecture must match"):
        train(wider, progress=False)
    assert not (tmp_path / "wider").exists()
    with pytest.raises(UsageError, match="is not a productgan run directory"):
        trainer = trainer_from(fake_packed, tmp_path / "a", tmp_path)
        start_from(trainer[2].nets, trainer[0], trainer[1])
    with pytest.raises(UsageError, match="has no checkpoints/best.pt"):
        trainer = trainer_from(fake_packed, tmp_path / "b", f"{source_run}:best")
        start_from(trainer[2].nets, trainer[0], trainer[1])
    (source_run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ProductganError, match="last.pt"):
        trainer = trainer_from(fake_packed, tmp_path / "c", source_run)
        start_from(trainer[2].nets, trainer[0], trainer[1])
    for freeze, says in ((-1, "must be 0"), (3, "would freeze all 3 blocks")):
        config = conditional_config(fake_packed, tmp_path / "d", steps=2)
        config.train.freeze_d = freeze
        with pytest.raises(UsageError, match=says):
            resolve(config, PackedDataset.load(fake_packed))


def test_train_init_from_on_the_command_line(source_run, fake_packed, tmp_path, capsys):
    base = ["train", "--conditional", "--data", str(fake_packed), "--steps", "2", "--batch-size", "16", *TINY_FLAGS]
    assert main([*base, "--out", str(tmp_path / "run"), "--init-from", str(source_run), "--freeze-d", "1"]) == 0
    capsys.readouterr()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert recorded["init_source"]["classes_added"] == ["Ankle boot"] and recorded["freeze_d"] == 1
    card = (tmp_path / "run" / "generator" / "README.md").read_text()  # the model card names the source
    (line,) = [line for line in card.splitlines() if line.startswith("| started from |")]
    step = recorded["init_source"]["step"]
    assert f"{source_run.resolve()} ({recorded['init_source']['checkpoint']}.pt at step {step:,})" in line
    assert "categories added: Ankle boot" in line and "first 1 blocks kept fixed" in line
    assert main([*base, "--out", str(tmp_path / "nope"), "--init-from", str(tmp_path / "nowhere")]) == 2
    assert "is not a productgan run directory" in capsys.readouterr().err and not (tmp_path / "nope").exists()
    assert main(["train", "--resume", str(tmp_path / "run"), "--data", str(fake_packed)]) == 2  # the data changed
    assert "only --steps, --images and --minutes" in capsys.readouterr().err
