"""Crash-safe writes: atomic files, folder swaps, and the leftovers of crashed writers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import dead_pid

from productgan.files import (
    current_umask,
    remove_stale_temporaries,
    replace_dir,
    save_tensors,
    staging_dir,
    temp_prefix,
    write_atomic,
)


def leftover(folder: Path, target: str, pid: int, kind: str = "tmp", rest: str = "abc") -> Path:
    return folder / (temp_prefix(Path(target), kind).replace(f"-{os.getpid()}-", f"-{pid}-") + rest)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as raised:
        write_atomic(target, fail)
    assert raised.value.filename == str(target)  # the error names the file it was writing
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("exchange", [True, False], ids=["one-step-swap", "park-then-rename"])
def test_replace_dir_swaps_whole_folders(tmp_path, monkeypatch, exchange):
    from productgan import files

    if not exchange:  # systems without renameat2's exchange
        monkeypatch.setattr(files.atomic, "_exchange", lambda a, b: False)
    out = tmp_path / "images"
    out.mkdir()
    (out / "old.png").write_text("old")
    staging = staging_dir(out)
    (staging / "new.png").write_text("new")
    replace_dir(staging, out)
    assert [p.name for p in out.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # nothing parked or staged is left


def test_only_dead_writers_leftovers_are_removed(tmp_path):
    dead = dead_pid()
    stale = [
        leftover(tmp_path, "ds", dead),
        leftover(tmp_path, "generator", dead, "old", "x1"),
        leftover(tmp_path, "step-000500.png", dead, rest=".png"),
    ]
    live = [leftover(tmp_path, "ds", os.getpid()), leftover(tmp_path, "ds", 1)]  # this process; init
    other_host = tmp_path / f".ds.tmp-elsewhere-{dead}-abc"
    mine = [tmp_path / ".notes.tmp", tmp_path / "ds", tmp_path / "generator"]
    for path in stale[:2] + live[:1]:
        path.mkdir()
    for path in [stale[2], *live[1:], other_host, *mine]:
        path.write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted([*live, other_host, *mine])


def test_a_parked_folder_whose_original_is_gone_is_put_back(tmp_path):
    """A crash between the two renames of a folder swap leaves the old folder parked and none in
    its place; the next clean-up restores it rather than deleting the only copy."""
    parked = leftover(tmp_path, "shop-64", dead_pid(), "old", "q7")
    parked.mkdir()
    (parked / "dataset.json").write_text("{}")
    assert remove_stale_temporaries(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["shop-64"] and (tmp_path / "shop-64" / "dataset.json").is_file()


def test_a_number_that_is_no_process_id_is_left_alone(tmp_path):
    odd = leftover(tmp_path, "a", 10**20)
    odd.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [] and odd.exists()


def test_a_failed_tensor_write_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    import torch

    class SafetensorError(Exception):  # the library's own type, not an OSError
        pass

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    save_tensors({"w": torch.ones(2)}, tmp_path / "ok.safetensors")
    assert (tmp_path / "ok.safetensors").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    monkeypatch.setattr("productgan.files.atomic.save_file", full_disk)
    with pytest.raises(OSError, match="No space left on device") as raised:
        save_tensors({"w": torch.ones(2)}, tmp_path / "model.safetensors")
    assert raised.value.filename == str(tmp_path / "model.safetensors")


def test_a_symlink_planted_at_the_temporary_name_is_never_followed(tmp_path):
    """In a folder others may write to, a link planted where the temporary file would go must
    neither redirect the write nor end up as the result."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "run"
    folder.mkdir()
    target = folder / "metrics.json"
    planted = folder / f"{temp_prefix(target)}{target.suffix}"  # the name a writer of this process once used
    planted.symlink_to(outside)
    used = []

    def write(tmp):
        used.append(tmp)
        tmp.write_text("new")

    write_atomic(target, write)
    assert outside.read_text() == "precious"
    assert target.read_text() == "new" and not target.is_symlink()
    assert used[0] != planted and used[0].name.startswith(temp_prefix(target)) and used[0].suffix == ".json"
    # A crashed writer's temporary under the new names is still recognised as a leftover.
    crashed = folder / used[0].name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-")
    crashed.write_text("half")
    assert remove_stale_temporaries(folder) == [crashed]


def test_check_writable_finds_an_unwritable_output_before_the_work(tmp_path):
    from productgan import files

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(OSError) as raised:
        files.check_writable(a_file / "report.json")  # its folder is a file
    assert raised.value.filename == str(a_file)
    with pytest.raises(OSError) as raised:
        files.check_writable(tmp_path)  # a folder where a file should go
    assert raised.value.errno == errno.EISDIR
    assert (
        files.check_writable(tmp_path / "new" / "deeper" / "report.json") == tmp_path / "new" / "deeper" / "report.json"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created, nothing left


def test_evaluate_finds_an_unwritable_out_before_evaluating(tmp_path, monkeypatch, capsys):
    from productgan import cli
    from productgan.cli import reports

    def evaluate_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output was checked")

    monkeypatch.setattr(reports, "evaluate_run", evaluate_run)
    (tmp_path / "notes.txt").write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: x\n")
    assert cli.main(["evaluate", str(run), "--out", str(tmp_path / "notes.txt" / "report.json")]) == 1
    assert "notes.txt" in capsys.readouterr().err
    (run / "evaluation").write_text("a file where the reports' folder goes")
    assert cli.main(["evaluate", str(run)]) == 1
    assert str(run / "evaluation") in capsys.readouterr().err


# --- Outputs: the one rule for folders, claims before the work, all or nothing (issue 34) ----------


def test_a_folder_is_replaced_only_when_every_file_in_it_is_the_commands_own(tmp_path):
    from productgan.errors import ProductganError, UsageError
    from productgan.files import FolderKind, Outputs

    kind = FolderKind("pictures", r"pic-\d+\.png")
    out = tmp_path / "pics"
    out.mkdir()
    (out / "pic-1.png").write_text("old")
    with pytest.raises(ProductganError, match="already exists; choose another --out or pass --overwrite"):
        Outputs("draw").claim(out, overwrite=False, kind=kind)
    with Outputs("draw") as outputs:  # only its own files: replaced with --overwrite
        outputs.claim(out, overwrite=True, kind=kind)
        outputs.write({out: lambda tmp: (tmp / "pic-2.png").write_text("new")})
    assert [p.name for p in out.iterdir()] == ["pic-2.png"]
    (out / "thesis.tex").write_text("mine")
    (out / "notes").mkdir()
    (out / "notes" / "a.txt").write_text("mine")
    (out / "empty").mkdir()
    with pytest.raises(ProductganError) as refused:
        Outputs("draw").claim(out, overwrite=True, kind=kind)
    message = str(refused.value)
    assert "holds more than pictures (empty, notes/a.txt, thesis.tex)" in message and "productgan draw" in message
    assert (out / "thesis.tex").read_text() == "mine" and (out / "notes" / "a.txt").exists()
    with pytest.raises(UsageError, match="is a file"):
        Outputs("draw").claim(out / "thesis.tex", overwrite=True, kind=kind)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]  # no lock file left


def test_outputs_are_written_all_or_nothing_and_a_full_disk_names_the_output(tmp_path):
    from productgan.files import FolderKind, Outputs

    first, folder = tmp_path / "a.npy", tmp_path / "made" / "deeper" / "frames"

    def full_disk(tmp: Path) -> None:
        (tmp / "frame-1.png").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised, Outputs("draw") as outputs:
        outputs.claim(first)
        outputs.claim(folder, kind=FolderKind("frames", r"frame-\d+\.png"))
        outputs.write({first: lambda tmp: tmp.write_bytes(b"whole"), folder: full_disk})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no a.npy, no folders made for it, no temporaries


def test_a_second_writer_of_the_same_output_is_refused_at_once(tmp_path):
    from productgan.errors import ProductganError
    from productgan.files import Outputs

    out = tmp_path / "set"
    with Outputs("synth") as first:
        first.claim(out)
        with pytest.raises(ProductganError, match=rf"is being written by process {os.getpid()} \(productgan synth\)"):
            Outputs("synth").claim(out)
    with Outputs("synth") as second:  # free again once the first has ended
        second.claim(out)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_out_and_overlapping_outputs_are_refused(tmp_path):
    from productgan.errors import UsageError
    from productgan.files import Outputs

    with pytest.raises(UsageError, match="--out is empty"):
        Outputs("draw").claim("")
    with pytest.raises(UsageError, match="--save-latents is empty"), Outputs("draw") as outputs:
        outputs.claim(tmp_path / "grid.png")
        outputs.claim("  ", flag="--save-latents")
    with pytest.raises(UsageError, match="which draw also writes"), Outputs("draw") as outputs:
        outputs.claim(tmp_path / "pics", kind=None)
        outputs.claim(tmp_path / "pics" / "latents.npy", flag="--save-latents")
    assert list(tmp_path.iterdir()) == []
