"""The run layer: the run folder's names, the recorded config, the dataset it names, the lock,
the export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from helpers import dead_pid, tiny_config
from safetensors.torch import load_file

from productgan.cli import main
from productgan.config import to_dict
from productgan.errors import ProductganError
from productgan.files import temp_prefix
from productgan.run import LOCK_FILE, export_run, load_run_config, locked, new_run_dir
from productgan.train import resume, train


def test_numbered_run_directories(tmp_path):
    first = new_run_dir(tmp_path, "fashion-mnist", 32)
    second = new_run_dir(tmp_path, "/data/My Shoes/", 64)
    assert first.name == "00000-fashion-mnist-32"
    assert second.name == "00001-my-shoes-64"


@pytest.mark.parametrize("text", ["", "hello", "[1, 2]", "steps: [unclosed"])
def test_a_damaged_config_yaml_is_one_sentence(fake_packed, tmp_path, text):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    (tmp_path / "run" / "config.yaml").write_text(text)
    with pytest.raises(ProductganError, match="config.yaml is damaged"):
        resume(tmp_path / "run", progress=False)
    with pytest.raises(ProductganError, match="config.yaml is damaged"):
        export_run(tmp_path / "run")


def test_a_relative_data_path_is_recorded_absolute(fake_packed, tmp_path, monkeypatch):
    monkeypatch.chdir(fake_packed.parent)
    train(tiny_config(fake_packed.name, tmp_path / "run", steps=2), progress=False)
    assert load_run_config(tmp_path / "run").data == str(fake_packed.resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resume(tmp_path / "run", steps=3, progress=False)["step"] == 3
    fake_packed.rename(tmp_path / "moved")
    with pytest.raises(ProductganError, match="The dataset this run trained on, .* is not there; put it back"):
        resume(tmp_path / "run", steps=4, progress=False)


def test_export_run_rebuilds_the_generator_from_the_checkpoint(fake_packed, tmp_path):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    before = (tmp_path / "run" / "generator" / "model.safetensors").read_bytes()
    (tmp_path / "run" / "generator" / "model.safetensors").unlink()
    export_run(tmp_path / "run")
    assert (tmp_path / "run" / "generator" / "model.safetensors").read_bytes() == before
    # the weight average is exported with BatchNorm statistics of its own, not the live generator's
    exported = load_file(tmp_path / "run" / "generator" / "model.safetensors")
    kept = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["G_ema"]
    means = [name for name in exported if name.endswith("running_mean")]
    assert means and not any(torch.allclose(exported[name], kept[name]) for name in means)
    with pytest.raises(ProductganError, match="it is kept only when training scores the validation split"):
        export_run(tmp_path / "run", "best")
    # An export cut short by a crash can leave the previous one parked; the next export clears it.
    parked = tmp_path / "run" / f"{temp_prefix(Path('generator'), 'old')}x".replace(str(os.getpid()), str(dead_pid()))
    parked.mkdir()
    (parked / "model.safetensors").write_bytes(b"old")
    export_run(tmp_path / "run")
    assert not parked.exists() and (tmp_path / "run" / "generator" / "model.safetensors").read_bytes() == before
    hidden = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("."))
    assert hidden == [LOCK_FILE]  # the lock stays (empty), no temporary does


def test_out_that_is_not_a_run_and_not_empty_is_refused_and_kept(fake_packed, tmp_path):
    mine = tmp_path / "u"
    (mine / "generator").mkdir(parents=True)
    (mine / "generator" / "notes.txt").write_text("keep")
    (mine / "metrics.jsonl").write_text('{"my":"log"}\n')
    with pytest.raises(ProductganError, match="already holds files and is not a productgan run"):
        train(tiny_config(fake_packed, mine, steps=2), progress=False)
    assert (mine / "generator" / "notes.txt").read_text() == "keep"
    assert (mine / "metrics.jsonl").read_text() == '{"my":"log"}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["generator", "metrics.jsonl"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert train(tiny_config(fake_packed, tmp_path / "empty", steps=2), progress=False)["step"] == 2


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"batch_size": "sixty"}, "batch_size"),
        ({"seed": 1.5}, "seed"),
        ({"model": 5}, "model: must hold its settings"),
        ({"loss": {"name": "foo"}}, "loss.name"),
        ({"optim": {"name": "rmsprop"}}, "optim.name"),
        ({"train": {"precision": "fp8"}}, "train.precision"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_the_recorded_config_is_checked_like_a_new_one(fake_packed, tmp_path, change, reason):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    values = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    for key, value in change.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(values))
    for command in (lambda: resume(tmp_path / "run", steps=3, progress=False), lambda: export_run(tmp_path / "run")):
        with pytest.raises(ProductganError, match=f"config.yaml is damaged \\(.*{reason}"):
            command()


def test_the_recorded_config_passes_the_checks_of_a_new_run(fake_packed, tmp_path):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    values = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    values["batch_size"] = -3
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(ProductganError, match="holds settings no run can have \\(--batch-size must be at least 1"):
        load_run_config(tmp_path / "run")


def test_the_recorded_config_reads_back_as_written(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path / "run", steps=2)
    train(config, progress=False)
    assert to_dict(load_run_config(tmp_path / "run")) == to_dict(config)


def test_a_second_writer_of_a_run_is_refused_while_the_first_holds_it(fake_packed, tmp_path):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    with locked(tmp_path / "run", "a test"):
        with pytest.raises(ProductganError, match="is in use by process .* \\(a test\\); wait until it ends"):
            resume(tmp_path / "run", steps=3, progress=False)
        with pytest.raises(ProductganError, match="is in use by process"):
            export_run(tmp_path / "run")
    assert resume(tmp_path / "run", steps=3, progress=False)["step"] == 3  # released on exit
    lines = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == sorted(set(lines))  # no line written twice


def test_the_lock_of_a_killed_process_is_taken_over(fake_packed, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(fake_packed, run, steps=2), progress=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from productgan.run import locked
            with locked(Path({str(run)!r}), "a holder"):
                print("held", flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProductganError, match=f"in use by process {holder.pid} \\(a holder\\)"):
            export_run(run)
    finally:
        holder.kill()
        holder.wait()
    assert export_run(run).name == "generator"
    assert (run / LOCK_FILE).read_text() == ""


def test_a_run_killed_while_writing_its_first_file_can_start_again(fake_packed, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = dead_pid()
    (run / LOCK_FILE).write_text(f"process {dead} (productgan train)")
    leftover = run / f"{temp_prefix(Path('config.yaml'))}x.yaml".replace(str(os.getpid()), str(dead))
    leftover.write_text("data: x\n")
    assert train(tiny_config(fake_packed, run, steps=2), progress=False)["step"] == 2
    assert not leftover.exists()


def test_a_restarted_process_resumes_its_run_and_never_trains_into_foreign_files(fake_packed, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(fake_packed, run, steps=4), progress=False)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun started this process again
    before = (run / "metrics.jsonl").read_text()
    assert train(tiny_config(fake_packed, run, steps=4), progress=False)["step"] == 4  # resumed, not from 0
    assert (run / "metrics.jsonl").read_text() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: settings\n")
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ProductganError, match="holds files no productgan run wrote"):
        train(tiny_config(fake_packed, mine, steps=2), progress=False)
    assert (mine / "config.yaml").read_text() == "my: settings\n"


def test_a_damaged_packed_dataset_chooses_no_recipe(tmp_path):
    from productgan.data.source_kind import preset_for

    for text in ("{not json", '{"shape": []}', '{"shape": [1, 1, 64, 64], "meta": [1]}'):
        (tmp_path / "dataset.json").write_text(text)
        (tmp_path / "images.npy").write_bytes(b"")
        assert preset_for(str(tmp_path)) is None  # opening it names the problem


def _hostile_config_yaml():
    alias_bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{name}: &{name} [{','.join(['*' + above] * 10)}]\n" for above, name in zip("abcdefgh", "bcdefghi")
    )
    return [
        (alias_bomb, "it uses the YAML anchor &a"),
        ("steps: " + "[" * 20_000 + "]" * 20_000 + "\n", "it nests values more than 20 levels deep"),
        ("train:\n  x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", "it nests values"),
    ]


@pytest.mark.parametrize("text, reason", _hostile_config_yaml())
def test_a_config_yaml_of_aliases_or_deep_nesting_is_refused_in_one_sentence(tmp_path, capsys, text, reason):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    with pytest.raises(ProductganError, match=f"config.yaml is damaged \\({reason}"):
        load_run_config(run)
    for command in (["train", "--resume", str(run)], ["evaluate", str(run), "--no-progress"]):
        assert main(command) == 1
        error = capsys.readouterr().err
        assert f"config.yaml is damaged ({reason}" in error and "Traceback" not in error, error
