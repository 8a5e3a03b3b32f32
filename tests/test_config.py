"""The configuration: budgets, and config.resolve, which checks every setting and fills every
default once, before anything is built; parse_config, which reads a recorded one as strictly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from productgan.config import (
    LOSS_OPTIM_DEFAULTS,
    LossConfig,
    RunConfig,
    TrainConfig,
    parse_config,
    resolve,
    target_steps,
    to_dict,
)
from productgan.errors import UsageError


def dataset(train=180, val=10, image_size=32, split=None):
    """The facts resolve reads of a dataset."""
    return SimpleNamespace(
        image_size=image_size,
        meta={"split": split or {}},
        split_sizes=lambda: {"train": train, "val": val, "test": 10},
    )


def test_budgets():
    config = RunConfig(batch_size=10, steps=None, images=95)
    assert target_steps(config) == 10
    config.optim.d_steps_per_g_step = 2
    assert target_steps(config) == 5
    config.steps = 3
    assert target_steps(config) == 3
    assert target_steps(RunConfig(minutes=1.0)) is None


@pytest.mark.parametrize("loss", sorted(LOSS_OPTIM_DEFAULTS))
def test_resolve_fills_the_losss_optimiser_defaults_and_keeps_given_ones(loss):
    config = _wgan() if loss == "wgan-gp" else RunConfig(loss=LossConfig(name=loss))
    o = resolve(config).optim
    assert (o.lr_g, o.lr_d, o.beta1, o.beta2) == LOSS_OPTIM_DEFAULTS[loss]
    given = RunConfig(loss=LossConfig(name="hinge"))
    given.optim.lr_d = 1e-3
    assert resolve(given).optim.lr_d == 1e-3 and given.optim.lr_g == LOSS_OPTIM_DEFAULTS["hinge"][0]


def _wgan() -> RunConfig:
    config = RunConfig(loss=LossConfig(name="wgan-gp"))
    config.model.d_norm = "none"
    return config


def test_resolve_takes_what_the_dataset_decides_and_records_it():
    config = resolve(RunConfig(batch_size=16), dataset(train=180, image_size=64, split={"val_size": 7, "seed": 3}))
    assert config.image_size == 64 and config.train.augment is True  # 180 training images: below 500
    assert (config.train.val_size, config.train.split_seed) == (7, 3)
    assert resolve(RunConfig(batch_size=16), dataset(train=5000)).train.augment is False
    off = RunConfig(batch_size=16, train=TrainConfig(augment=False))
    assert resolve(off, dataset(train=20)).train.augment is False  # a choice given is kept


def test_resolve_is_idempotent():
    once = to_dict(resolve(RunConfig(batch_size=16), dataset()))
    assert to_dict(resolve(parse_config(once), dataset())) == once


@pytest.mark.parametrize(
    "config, facts, world, message",
    [
        (RunConfig(batch_size=10), None, 4, "--batch-size 10 is the global batch and must divide evenly among 4"),
        (RunConfig(batch_size=64), dataset(train=50), 1, "fewer than one batch of 64"),
        (RunConfig(train=TrainConfig(eval_every=5)), dataset(val=3), 1, "the val split holds 3 image"),
        (RunConfig(train=TrainConfig(augment_policy="zoom")), None, 1, "--train.augment-policy: unknown augmentation"),
        (RunConfig(loss=LossConfig(name="wgan-gp")), None, 1, "add --model.d-norm none"),
        (RunConfig(loss=LossConfig(mode_seeking=-1.0)), None, 1, "--loss.mode-seeking is a weight: 0"),
        (RunConfig(loss=LossConfig(r1_gamma=float("nan"))), None, 1, "--loss.r1-gamma is a weight"),
    ],
)
def test_resolve_refuses_what_no_run_can_have(config, facts, world, message):
    with pytest.raises(UsageError, match=message):
        resolve(config, facts, world)


def test_parse_config_reads_a_recorded_config_strictly():
    values = to_dict(resolve(RunConfig()))
    assert to_dict(parse_config(values)) == values
    for bad, named in (({"train": {**values["train"], "precision": "fp8"}}, "train.precision"), ({"x": 1}, "x")):
        with pytest.raises(ValueError, match=named):
            parse_config({**values, **bad})


@pytest.mark.parametrize(
    "change, message", [({"data": None}, "--data must name a dataset"), ({"image_size": 48}, "power of two")]
)
def test_a_recorded_value_of_the_wrong_kind_is_refused(change, message):
    values = {**to_dict(resolve(RunConfig())), **change}
    with pytest.raises(UsageError, match=message):
        resolve(parse_config(values))


def test_a_preset_lies_under_everything_given():
    from productgan.config import PRESETS, from_dict, preset_settings

    config = from_dict(RunConfig, preset_settings("fmnist-32", {"batch_size": 16, "optim": {"lr_d": 1e-3}}))
    assert config.preset == "fmnist-32" and config.model.conditional is True
    assert (config.batch_size, config.optim.lr_d, config.optim.lr_g) == (16, 1e-3, 8e-4)  # given wins, per field
    assert PRESETS["fmnist-32"]["optim"]["lr_d"] == 8e-4  # the preset itself is untouched
    assert preset_settings("none", {"seed": 3}) == preset_settings(None, {"seed": 3}) == {"seed": 3}
    with pytest.raises(UsageError, match="Unknown preset 'fmnist-64'; choose one of fmnist-32"):
        preset_settings("fmnist-64")


def test_the_measured_best_preset_per_kind_of_data():
    from productgan.config import MEASURED_BEST, PRESETS, measured_preset

    assert measured_preset("fashion-mnist", 32) == "fmnist-32"
    assert measured_preset("fashion-mnist", 64) is None  # measured at 32x32 only
    photos = [measured_preset("photos", size) for size in (32, 64, 128, 256)]
    assert photos == [None, "products-64", "products-128", None]
    assert set(MEASURED_BEST.values()) <= set(PRESETS)


def test_the_config_package_imports_nothing_of_productgan_but_its_errors():
    import ast
    from pathlib import Path

    import productgan.config

    for path in Path(productgan.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("productgan"):
                assert node.module == "productgan.errors" or node.module.startswith("productgan.config"), path
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("productgan") for alias in node.names), path
