"""Crash-safe writes: atomic files, folder swaps, and the leftovers of crashed writers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from productgan.files import remove_stale_temporaries, replace_dir, staging_dir, temp_prefix, write_atomic

from helpers import dead_pid


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
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
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
    stale = [leftover(tmp_path, "ds", dead), leftover(tmp_path, "generator", dead, "old", "x1"),
             leftover(tmp_path, "step-000500.png", dead, rest=".png")]
    live = [leftover(tmp_path, "ds", os.getpid()), leftover(tmp_path, "ds", 1)]  # this process; init
    other_host = tmp_path / f".ds.tmp-elsewhere-{dead}-abc"
    mine = [tmp_path / ".notes.tmp", tmp_path / "ds"]
    for path in stale[:2] + live[:1]:
        path.mkdir()
    for path in [stale[2], *live[1:], other_host, *mine]:
        path.write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted([*live, other_host, *mine])
