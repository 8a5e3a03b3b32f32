"""Training checkpoints: only tensors and plain values load, every field a run needs is checked,
and a failed write says why."""

from __future__ import annotations

import errno
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from productgan.checkpoint import load_checkpoint, save_checkpoint
from productgan.cli import describe_os_error
from productgan.errors import ProductganError

PAYLOAD_MARK = "the payload of a planted pickle ran"


class Payload:
    """An object whose unpickling calls a function: what a hostile file would hold."""

    def __reduce__(self):
        return (print, (PAYLOAD_MARK,))


def tiny_state() -> dict:
    """What a training checkpoint holds, at the smallest size."""
    optimiser = {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0]}]}
    return {
        "G": {"w": torch.ones(2)},
        "D": {"w": torch.zeros(2)},
        "G_ema": None,
        "opt_g": optimiser,
        "opt_d": optimiser,
        "scaler_g": {},
        "scaler_d": {},
        "step": 4,
        "images_seen": 64,
        "batches_drawn": 4,
        "elapsed_s": 1.5,
        "config": {"model": {"nz": 8}},
        "export_info": {"class_names": ["a", "b"]},
        "image_size": 32,
        "channels": 1,
    }


def test_a_whole_checkpoint_loads_as_it_was_saved(tmp_path):
    path = save_checkpoint(tiny_state(), tmp_path / "last.pt")
    state = load_checkpoint(path)
    assert state["step"] == 4 and state["config"] == {"model": {"nz": 8}}
    assert torch.equal(state["G"]["w"], torch.ones(2))


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("config", None, "lacks"),
        ("step", None, "lacks"),
        ("G", None, "lacks"),
        ("export_info", None, "lacks"),
        ("scaler_d", None, "lacks"),
        ("step", "4", "holds str"),
        ("config", [1], "holds list"),
        ("images_seen", True, "holds bool"),
        ("elapsed_s", "fast", "holds str"),
        ("G", {"w": [1.0]}, "holds"),
        ("channels", 1.0, "holds float"),
    ],
)
def test_a_checkpoint_missing_or_mistyping_a_field_names_the_file_and_the_field(tmp_path, field, value, words):
    state = tiny_state()
    if value is None:
        del state[field]
    else:
        state[field] = value
    path = save_checkpoint(state, tmp_path / "last.pt")
    with pytest.raises(ProductganError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert str(path) in message and f"'{field}'" in message and words in message, message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


@pytest.mark.parametrize("format", ["zip", "legacy pickle"])
def test_a_checkpoint_holding_other_objects_is_refused_and_never_run(tmp_path, capsys, format):
    path = tmp_path / "last.pt"
    if format == "zip":
        torch.save({"version": 1, **tiny_state(), "extra": Payload()}, path)
    else:  # torch's pickles of tensors name a global of their own, so this one holds plain values only
        path.write_bytes(pickle.dumps({"version": 1, "step": 4, "extra": Payload()}, protocol=2))
    with pytest.raises(ProductganError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert PAYLOAD_MARK not in capsys.readouterr().out  # refused, not executed
    assert str(path) in message and "refused" in message and "print" in message, message  # names the global
    assert "weights_only" not in message and "trust" not in message  # never advice to turn the guard off


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


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    path = save_checkpoint({"x": torch.ones(2), "step": 3}, tmp_path / "c" / "last.pt")
    assert torch.load(path, weights_only=True)["step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ProductganError, match="cannot be read"):
        load_checkpoint(path)


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_refused_pickle_of_any_protocol_never_quotes_torchs_advice_to_load_it_unsafely(tmp_path, capsys, protocol):
    path = tmp_path / "last.pt"
    with open(path, "wb") as file:
        pickle.dump({"x": Payload()}, file, protocol=protocol)  # torch's guard stops at FRAME, naming nothing
    with pytest.raises(ProductganError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert PAYLOAD_MARK not in capsys.readouterr().out
    assert "holds objects other than tensors and plain values (builtins.print)" in message, message
    assert "weights_only" not in message and "Weights only" not in message and "succeed" not in message
    assert message.count(". ") == 0


@pytest.mark.parametrize(
    "data, words",
    [
        (b"not a checkpoint", r"cannot be read \(its pickled data is damaged"),
        (pickle.dumps({"step": 4}, protocol=4), "is a pickle that torch.save did not write"),
    ],
)
def test_damaged_or_foreign_pickles_are_named_without_torchs_text(tmp_path, data, words):
    path = tmp_path / "last.pt"
    path.write_bytes(data)
    with pytest.raises(ProductganError, match=words) as raised:
        load_checkpoint(path)
    assert "weights_only" not in str(raised.value) and "Weights only" not in str(raised.value)


def test_inception_weights_refused_by_torch_never_quote_its_advice(tmp_path):
    from productgan.metrics.inception import load_inception

    for protocol in (2, 4):
        path = tmp_path / f"evil{protocol}.pth"
        path.write_bytes(pickle.dumps({"w": Payload()}, protocol=protocol))
        with pytest.raises(ProductganError) as raised:
            load_inception(path)
        assert "weights_only" not in str(raised.value) and "Weights only" not in str(raised.value)
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(ProductganError) as raised:
        load_inception(tmp_path / "junk.pth")
    assert "weights_only" not in str(raised.value) and "Weights only" not in str(raised.value)
