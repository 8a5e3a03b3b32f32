"""Training checkpoints: a failed write says why."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from productgan.checkpoint import load_checkpoint, save_checkpoint
from productgan.cli import describe_os_error


def tiny_state() -> dict:
    """What a training checkpoint holds, at the smallest size."""
    optimiser = {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0]}]}
    return {
        "G": {"w": torch.ones(2)},
        "D": {"w": torch.zeros(2)},
        "G_ema": None,
        "opt_g": optimiser,
        "opt_d": optimiser,
        "step": 4,
        "images_seen": 64,
        "batches_drawn": 4,
        "elapsed_s": 1.5,
        "config": {"model": {"nz": 8}},
        "export_info": {"class_names": ["a", "b"]},
        "image_size": 32,
        "channels": 1,
    }


def test_a_full_disk_while_writing_a_checkpoint_is_said_so(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(tiny_state(), path)

    def short_write(obj, f, *args, **kwargs):  # what torch's zip writer raises when a write comes up short
        Path(f).write_bytes(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4160 vs 4096")

    monkeypatch.setattr(torch, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(total=10**9, used=10**9, free=0))
    with pytest.raises(OSError) as raised:
        save_checkpoint(tiny_state(), path)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert "free some space" in describe_os_error(raised.value)
    assert load_checkpoint(path)["step"] == 4 and [p.name for p in path.parent.iterdir()] == ["last.pt"]

    # With room to spare the same failure is not blamed on the disk.
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(total=10**12, used=0, free=10**12))
    with pytest.raises(OSError) as raised:
        save_checkpoint(tiny_state(), path)
    assert raised.value.errno == errno.EIO and "unexpected pos" in str(raised.value)
