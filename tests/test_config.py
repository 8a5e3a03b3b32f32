"""The configuration: budgets, and config.resolve, which checks every setting and fills every
default once, before anything is built; parse_config, which reads a recorded one as strictly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from productgan.config import (
    LOSS_OPTIM_DEFAULTS,
    ConfigRefused,
    LossConfig,
    RunConfig,
    TrainConfig,
    load_config_yaml,
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
    assert config.image_size == 64 and config.train.augment == "auto"  # adaptive unless set
    assert (config.train.val_size, config.train.split_seed) == (7, 3)
    assert resolve(RunConfig(batch_size=16), dataset(train=5000)).train.augment == "auto"
    off = RunConfig(batch_size=16, train=TrainConfig(augment=False))
    assert resolve(off, dataset(train=20)).train.augment == "off"  # a choice given is kept, as a mode
    assert resolve(RunConfig(batch_size=16, train=TrainConfig(augment=True)), dataset()).train.augment == "on"


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


# --- hostile YAML (issue 34) ---------------------------------------------------------------

# 332 bytes that expand to 10**9 strings: each line ten aliases of the one above.
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{name}: &{name} [{','.join(['*' + above] * 10)}]\n" for above, name in zip("abcdefgh", "bcdefghi")
)
DEEP = "steps: " + "[" * 20_000 + "]" * 20_000 + "\n"


@pytest.mark.parametrize(
    "text, words",
    [
        (ALIAS_BOMB, "uses the YAML anchor &a"),
        ("a: 1\nb: *a\n", "uses the YAML alias"),
        (DEEP, "nests values more than 20 levels deep"),
        ("a:\n" + "".join(" " * depth + "- \n" for depth in range(1, 40)), "nests values"),
        ("x" * 300_000, "characters"),
    ],
)
def test_config_yaml_with_aliases_deep_nesting_or_no_end_is_refused_before_parsing(text, words):
    def never(text):
        raise AssertionError("parsed")

    with pytest.raises(ConfigRefused, match=words):
        load_config_yaml(text, loader=never)
    assert len(ALIAS_BOMB.encode()) == 332


def test_a_recorded_config_holding_yaml_in_a_string_value_is_refused():
    # jsonargparse reads a string given for a number as YAML again, with aliases
    values = to_dict(RunConfig())
    values["model"]["nz"] = "{" + ", ".join(ALIAS_BOMB.splitlines()) + "}"
    with pytest.raises(ValueError, match="model.nz|anchor &a"):
        parse_config(values)
    values["model"]["nz"] = "[" * 30 + "]" * 30
    with pytest.raises(ValueError, match="nests values"):
        parse_config(values)


@pytest.mark.parametrize("option", ["--config", "--model", "--train"])
def test_train_refuses_an_alias_bomb_or_deep_config_file_naming_it(tmp_path, capsys, option):
    from productgan.cli import main

    for name, text, words in (("bomb.yaml", ALIAS_BOMB, "anchor &a"), ("deep.yaml", DEEP, "nests values")):
        path = tmp_path / name
        path.write_text(text)
        assert main(["train", option, str(path), "--steps", "1", "--out", str(tmp_path / "run")]) == 2
        error = capsys.readouterr().err
        assert f"The file {path} given to {option} is refused: it " in error and words in error, error
        assert error.count(". ") == 0 and not (tmp_path / "run").exists()
    nested = tmp_path / "nested.yaml"  # a --config inside a --config: the parser's own loader refuses it
    nested.write_text(f"config: {tmp_path / 'bomb.yaml'}\n")
    assert main(["train", "--config", str(nested), "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    assert "anchor &a" in capsys.readouterr().err


def test_train_refuses_yaml_aliases_in_a_value_on_the_command_line(tmp_path, capsys):
    from productgan.cli import main

    bomb = "{" + ", ".join(ALIAS_BOMB.splitlines()) + "}"
    assert main(["train", "--train.precision_measured", bomb, "--out", str(tmp_path / "run")]) == 2
    assert "A value on the command line is refused: it uses the YAML anchor &a" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["", "  "])
def test_train_refuses_an_empty_out(tmp_path, capsys, monkeypatch, out):
    from productgan.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", out, "--steps", "1", "--data", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"--out {out!r} names no folder" in error and error.count(". ") == 0
    assert not (tmp_path / "runs").exists()
