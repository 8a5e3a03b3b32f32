"""End to end through the command line: prepare -> train -> generate -> export, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY_FLAGS
from PIL import Image

from productgan.cli import main
from productgan.generator.latents import noise
from productgan.generator.sampler import load_generator

TINY = ["--batch-size", "16", *TINY_FLAGS]


@pytest.fixture
def trained_run(tmp_path, fake_fmnist, capsys):
    packed = tmp_path / "packed"
    assert main(["prepare", str(fake_fmnist), "--out", str(packed), "--val-size", "20"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(packed), "--out", str(run), "--steps", "4", *TINY]) == 0
    out = capsys.readouterr().out
    assert "Sample grid:" in out and str(run / "samples" / "step-000004.png") in out
    return run


def test_prepare_train_generate_export(trained_run, tmp_path):
    meta = json.loads((tmp_path / "packed" / "dataset.json").read_text())
    assert meta["split_sizes"] == {"train": 180, "val": 20, "test": 50}

    assert main(["generate", str(trained_run), "--n", "5", "--seed", "3", "--out", str(tmp_path / "a.npy")]) == 0
    assert (
        main(["generate", str(trained_run / "generator"), "--n", "5", "--seed", "3", "--out", str(tmp_path / "b.npy")])
        == 0
    )
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.dtype == np.uint8 and a.shape == (5, 1, 28, 28)
    assert np.array_equal(a, b)

    assert (
        main(
            [
                "generate",
                str(trained_run),
                "--n",
                "5",
                "--seed",
                "3",
                "--temperature",
                "1.5",
                "--out",
                str(tmp_path / "hot.npy"),
            ]
        )
        == 0
    )
    sampler = load_generator(trained_run)
    assert np.array_equal(np.load(tmp_path / "hot.npy"), sampler.from_noise(noise(5, 8, 3) * 1.5).numpy())
    assert not np.array_equal(np.load(tmp_path / "hot.npy"), a)
    assert main(["generate", str(trained_run), "--n", "5", "--temperature", "0", "--out", str(tmp_path / "z.npy")]) == 2
    assert not (tmp_path / "z.npy").exists()

    assert main(["generate", str(trained_run), "--n", "3", "--size", "training", "--out", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape == (3, 1, 32, 32)
    assert main(["generate", str(trained_run), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 + 2 * 30, 2 + 2 * 30)
    assert main(["generate", str(trained_run), "--n", "3", "--out", str(tmp_path / "pngs")]) == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 3

    assert main(["export", str(trained_run)]) == 0
    assert (trained_run / "generator" / "model.safetensors").is_file()


def test_train_with_config_file_and_resume(tmp_path, fake_fmnist, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        "batch_size: 16\nsteps: 2\nmodel:\n  nz: 8\n  ngf: 4\n  ndf: 4\ntrain:\n  grid_size: 4\n"
        "  precision: fp32\n  log_every: 1\n"
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--data",
                str(fake_fmnist),
                "--train.val-size",
                "20",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "steps: 2" in (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "--steps", "3", "--no-progress"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_print_config_shows_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model.ngf", "12", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "ngf: 12" in printed and "d_steps_per_g_step: 1" in printed and "precision: auto" in printed


def test_missing_dataset_is_one_clear_sentence(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_fashion_mnist_says_where_to_get_it(tmp_path, capsys, monkeypatch):
    import productgan.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_FOLDER", tmp_path / "none")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PRODUCTGAN_DATA", raising=False)
    code = main(["train", "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code == 1
    assert "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err


def test_bad_flag_and_bad_value(capsys):
    assert main(["train", "--no-such-flag", "3"]) == 2
    err = capsys.readouterr().err
    assert "no_such_flag" in err and "productgan train --help" in err
    assert main(["train", "--loss.name", "softmax"]) == 2
    assert "loss.name" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_an_interrupted_run_exits_non_zero(fake_packed, tmp_path, monkeypatch, capsys):
    import signal

    from helpers import sigterm_after_step

    sigterm_after_step(monkeypatch, 2)
    run = tmp_path / "run"
    assert main(["train", "--data", str(fake_packed), "--out", str(run), "--steps", "6", *TINY]) == 128 + signal.SIGTERM
    assert f"Continue with:   productgan train --resume {run}" in capsys.readouterr().out


def test_unwritable_paths_and_bad_sources_are_one_sentence(fake_packed, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", "--data", str(fake_packed), "--out", str(blocker / "run"), "--steps", "2", *TINY]) == 1
    err = capsys.readouterr().err
    assert "Not a directory" in err and str(blocker) in err and "check the path" in err and "Traceback" not in err
    assert main(["prepare", str(tmp_path / "nosuch"), "--out", str(tmp_path / "d"), "--workers", "1"]) == 2
    assert "nosuch does not exist; prepare takes a folder of product photos" in capsys.readouterr().err


def test_no_conditional_switch(fake_packed, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "fmnist-32",
                "--no-conditional",
                "--data",
                str(fake_packed),
                "--out",
                str(run),
                "--steps",
                "1",
                *TINY,
            ]
        )
        == 0
    )
    assert "conditional: false" in (run / "config.yaml").read_text()


def test_resume_refuses_other_flags(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--model.ngf", "64"]) == 2
    assert "only --steps, --images and --minutes" in capsys.readouterr().err


def test_generate_never_overwrites_without_asking(trained_run, tmp_path, capsys):
    target = tmp_path / "x.npy"
    target.write_bytes(b"keep me")
    assert main(["generate", str(trained_run), "--n", "2", "--out", str(target)]) == 1
    assert target.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["generate", str(trained_run), "--n", "2", "--out", str(target), "--overwrite"]) == 0
    assert np.load(target).shape == (2, 1, 28, 28)


def test_generate_from_a_folder_without_export(tmp_path, capsys):
    assert main(["generate", str(tmp_path), "--n", "2", "--out", str(tmp_path / "x.npy")]) == 1
    assert "no exported generator" in capsys.readouterr().err


def test_preset_sets_its_values_and_every_flag_wins(fake_packed, tmp_path, capsys):
    import yaml

    run = tmp_path / "run"
    args = [
        "train",
        "--data",  # given before the preset, and still the data trained on
        str(fake_packed),
        "--preset",
        "fmnist-32",
        "--out",
        str(run),
        "--steps",
        "2",
        *TINY,
        "--train.grid-size",
        "10",
    ]
    assert main(args) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["preset"] == "fmnist-32" and config["model"]["conditional"] is True
    assert config["optim"]["lr_d"] == 8e-4  # from the preset
    assert config["optim"]["beta1"] == 0.5 and config["optim"]["beta2"] == 0.99  # preset over the loss's default
    # flags win over the preset, before it on the line or after
    assert config["data"] == str(fake_packed) and config["model"]["ngf"] == config["model"]["ndf"] == 4
    assert main(["train", "--preset", "fmnist-64x", "--steps", "1"]) == 2
    assert "Unknown preset 'fmnist-64x'" in capsys.readouterr().err


def test_optimiser_defaults_follow_the_loss(fake_packed, tmp_path):
    import yaml

    for loss, expected in (("bce", [2e-4, 2e-4, 0.5, 0.999]), ("hinge", [1e-4, 4e-4, 0.0, 0.9])):
        run = tmp_path / loss
        assert (
            main(["train", "--data", str(fake_packed), "--out", str(run), "--steps", "1", "--loss.name", loss, *TINY])
            == 0
        )
        optim = yaml.safe_load((run / "config.yaml").read_text())["optim"]
        assert [optim["lr_g"], optim["lr_d"], optim["beta1"], optim["beta2"]] == expected
    run = tmp_path / "given"
    assert (
        main(
            [
                "train",
                "--data",
                str(fake_packed),
                "--out",
                str(run),
                "--steps",
                "1",
                "--loss.name",
                "hinge",
                "--optim.lr-d",
                "3e-4",
                *TINY,
            ]
        )
        == 0
    )
    optim = yaml.safe_load((run / "config.yaml").read_text())["optim"]
    assert optim["lr_d"] == 3e-4 and optim["lr_g"] == 1e-4  # what is given wins; the rest follows the loss


@pytest.mark.parametrize("preset, size, augment", [("products-64", 64, "auto"), ("products-128", 128, "on")])
def test_products_preset_keeps_its_augmentation_unless_turned_off(fake_packed, tmp_path, preset, size, augment):
    import yaml

    from productgan.config import RunConfig, from_dict, preset_settings

    config = from_dict(RunConfig, preset_settings(preset))
    assert (config.image_size, config.model.conditional, config.train.augment) == (size, True, augment)
    run = tmp_path / "run"
    args = [
        "train",
        "--preset",
        preset,
        "--data",
        str(fake_packed),
        "--out",
        str(run),
        "--steps",
        "1",
        *TINY,
        "--image-size",
        "32",
        "--no-augment",
        "--train.grid-size",
        "10",
    ]
    assert main(args) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["augment"] == "off"


def test_the_data_chooses_the_recipe_unless_told_otherwise(fake_packed, tmp_path, capsys):
    import yaml

    tiny = [f for f in TINY if f not in ("--preset", "none")]
    run = tmp_path / "auto"
    assert main(["train", "--data", str(fake_packed), "--out", str(run), "--steps", "1", *tiny]) == 0
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["preset"] == "fmnist-32" and recorded["model"]["conditional"] is True
    assert recorded["batch_size"] == 16 and recorded["model"]["ngf"] == 4  # flags given still win
    assert "Recipe: preset fmnist-32" in capsys.readouterr().err
    plain = tmp_path / "plain"
    assert main(["train", "--data", str(fake_packed), "--out", str(plain), "--steps", "1", *TINY]) == 0
    recorded = yaml.safe_load((plain / "config.yaml").read_text())
    assert recorded["preset"] is None and recorded["model"]["conditional"] is False
    assert "Recipe:" not in capsys.readouterr().err


def test_which_recipe_fits_which_data(fake_packed, fake_fmnist, tmp_path):
    from PIL import Image

    from productgan.data.source_kind import preset_for

    assert preset_for("fashion-mnist") == "fmnist-32"
    assert preset_for(str(fake_fmnist)) == "fmnist-32"  # the idx files
    assert preset_for(str(fake_packed)) == "fmnist-32"  # a packed copy of them
    assert preset_for("fashion-mnist", "64") is None  # measured at 32x32 only
    photos = tmp_path / "photos" / "shoes"
    photos.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(photos / "a.png")
    assert preset_for(str(photos.parent)) == "products-64"
    assert preset_for(str(photos.parent), "128") == "products-128"
    assert preset_for(str(photos.parent), "32") is None
    assert preset_for(str(tmp_path / "nowhere")) is None


def test_call_forwards_options_by_parameter_name_and_drops_none():
    from jsonargparse import ArgumentParser

    from productgan.cli.common import call, parse

    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_argument("source", type=str)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--of", dest="ref", type=str, default=None)
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--unread", type=int, default=0)

    def library(source, ref, n=1, progress=True, label=None):
        return {"source": source, "ref": ref, "n": n, "progress": progress, "label": label}

    options = parse(parser, ["run", "--of", "7:3", "--no_progress"])
    assert call(library, options, label="Bag") == {
        "source": "run",
        "ref": "7:3",
        "n": 3,
        "progress": False,  # --no_progress gives progress = not no_progress
        "label": "Bag",  # what the command gives itself
    }
    assert call(library, options, n=5)["n"] == 5  # a given value wins over the option
    with pytest.raises(TypeError, match="colour"):
        call(library, options, colour="red")  # a value no parameter takes
    with pytest.raises(TypeError, match="missing"):
        call(lambda source, sheet: None, options)  # a parameter no option gives
    with pytest.raises(TypeError, match="unread"), options:
        call(library, options)  # an option that reached no parameter and that nothing read
    with parse(parser, ["run"]) as options:
        assert options.unread == 0 and call(library, options)["progress"] is True

    def takes_the_rest(source, **folder_options):
        return folder_options

    with parse(parser, ["run", "--no_progress"]) as options:  # **kwargs get every other option
        assert call(takes_the_rest, options) == {"n": 3, "ref": None, "progress": False, "unread": 0}


def test_the_preset_flag_and_the_python_preset_rule_give_the_same_config():
    from productgan.cli import training
    from productgan.config import RunConfig, from_dict, preset_settings

    for preset in ("fmnist-32", "products-64", "products-128"):
        args = ["--data", "shop", "--preset", preset, "--model.ngf", "16", "--train.augment", "false", "--steps", "9"]
        from_flags = training.run_config(training.read_train_options(args)[0])
        given = {"data": "shop", "model": {"ngf": 16}, "train": {"augment": False}, "steps": 9}
        assert from_flags == from_dict(RunConfig, preset_settings(preset, given))
        assert from_flags.preset == preset and from_flags.model.conditional is True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-step conditional run (helpers.train_tiny_run), shared by the tests of bad outputs."""
    from helpers import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("outputs"))


def test_an_empty_out_is_refused_in_one_sentence_by_every_command(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # '' must never come to mean this folder
    (tmp_path / "photo.png").write_bytes((tiny_run / "reals.png").read_bytes())
    run = str(tiny_run)
    for command, flag in (
        (["generate", run, "--n", "2", "--overwrite"], "--out"),
        (["interpolate", run, "--from", "1:1", "--to", "1:2"], "--out"),
        (["variants", run, "--of", "7:3", "--n", "2"], "--out"),
        (["variants", run, "--of", "7:3", "--n", "2", "--out", "v.png", "--save-latents"], "--save-latents"),
        (["project", run, "photo.png", "--no-progress"], "--out"),
        (["neighbours", run, "--no-progress"], "--out"),
        (["synth", run, "--n", "4", "--no-progress"], "--out"),
        (["evaluate", run, "--n", "10", "--no-progress"], "--out"),
        (["report", run], "--out"),
    ):
        line = [*command, ""] if flag == "--save-latents" else [*command, "--out", ""]
        assert main(line) == 2, command
        err = capsys.readouterr().err
        assert f"{flag} is empty" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_generate_overwrite_never_deletes_a_folder_of_someone_elses_pngs(tiny_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.png").write_bytes(b"mine")
    args = ["generate", str(tiny_run), "--n", "2", "--out", str(folder)]
    assert main([*args, "--overwrite"]) == 1
    assert "(holiday.png), files productgan generate did not write" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["holiday.png"]


def test_yaml_anchors_in_any_commands_value_are_refused_before_jsonargparse_reads_them(tmp_path, capsys):
    """jsonargparse reads a string given for a number as YAML: an alias bomb there would never end."""
    bomb = "{a: &a [x, x], b: [*a, *a]}"
    code = main(["generate", str(tmp_path), "--n", bomb, "--out", str(tmp_path / "x.png")])
    assert code == 2 and "A value on the command line is refused: it uses the YAML anchor &a" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
