"""Training checkpoints: tensors and plain values only, written atomically.

``save_checkpoint`` writes ``{"version": CHECKPOINT_VERSION, **Trainer.state_dict()}`` with
``torch.save``, through ``files.write_atomic``:

    G, D, G_ema          the networks' state dicts (G_ema None without an EMA)
    opt_g, opt_d         the optimisers' state dicts
    scaler_g, scaler_d   the loss scalers' state (pass-through unless float16)
    step, images_seen,   the run's position (train/trainer.py: everything random is a function of
    batches_drawn,       these counters, so no random-number state is saved)
    elapsed_s
    best_val,            the validator's state
    evals_without_gain
    config               the resolved config as a dict (config.to_dict)
    export_info          what an export records beside the weights (run.export_info)
    image_size, channels the generator's image shape

``load_checkpoint`` loads with ``weights_only=True`` (a file holding other objects is refused,
never run), checks the version, then ``REQUIRED_FIELDS`` (each with its plain type) and that
``WEIGHT_FIELDS`` map names to tensors (G_ema only when kept). Every failure is one sentence
naming the file. A generator is rebuilt from a checkpoint alone (``run.checkpoint_generator``:
``config["model"]``, ``image_size``, ``channels`` and ``export_info["class_names"]``), so
``productgan export`` needs nothing else. A field added to the state must be added to
``Trainer.load_state_dict`` too, and to ``REQUIRED_FIELDS`` when every checkpoint must hold it.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from productgan.errors import ProductganError, first_line
from productgan.files import write_atomic, write_error

CHECKPOINT_VERSION = 1


# What every checkpoint holds, and the plain type of each: a file missing one, or holding
# another type, was not written by this version's training, however it loaded.
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "G": (dict,),
    "D": (dict,),
    "opt_g": (dict,),
    "opt_d": (dict,),
    "scaler_g": (dict,),
    "scaler_d": (dict,),
    "step": (int,),
    "images_seen": (int,),
    "batches_drawn": (int,),
    "elapsed_s": (int, float),
    "config": (dict,),
    "export_info": (dict,),
    "image_size": (int,),
    "channels": (int,),
}
WEIGHT_FIELDS = ("G", "D", "G_ema")  # state dicts: names to tensors
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash mid-write never
    damages the previous checkpoint."""

    def write(tmp: Path) -> None:
        try:
            torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
        except RuntimeError as error:  # torch's writer reports a short write (a full disk) as "unexpected pos"
            raise write_error(error, path, tmp) from None

    return write_atomic(path, write)


def refused_for_safety(error: BaseException, path: str | os.PathLike | None = None) -> str | None:
    """When ``torch.load(..., weights_only=True)`` refused the file at ``path``: a clause saying
    so, to put in a sentence about that file; else None (the file is damaged, or the error is
    another). Torch's own message advises loading with weights_only=False, which would run
    whatever the file holds, so no line of it is ever quoted: the object is named from torch's
    message (``GLOBAL module.name``) or, for pickle protocols whose instructions torch's guard
    stops at before naming anything, from the pickle itself, read without running it. Without a
    ``path`` a refusal that names nothing cannot be told from damage, and the clause says both."""
    if not _is_weights_only_failure(error):
        return None
    found = _GLOBAL.search(str(error))
    if found:
        names = [found[1]]
    elif path is None:
        return "it is damaged or holds objects other than tensors and plain values, so it was not loaded"
    else:
        names = _pickled_globals(path)
        if names is None:
            return None  # no whole pickle: damaged bytes, which fail in the same unpickler
    if not names:  # a pickle of plain values, in instructions the guard does not take
        return "it is a pickle that torch.save did not write, so it was refused for safety"
    shown = ", ".join(names[:3])
    return f"it holds objects other than tensors and plain values ({shown}), so it was refused for safety"


def load_failure(error: BaseException) -> str:
    """The reason torch.load gave for not loading a file, to quote in a sentence: its first line,
    except for the guard of weights_only, whose text advises turning the guard off."""
    if _is_weights_only_failure(error):
        return "its pickled data is damaged or not what torch.save writes"
    return first_line(error)


def _is_weights_only_failure(error: BaseException) -> bool:
    return isinstance(error, pickle.UnpicklingError) and "weights only load failed" in str(error).lower()


# What torch.save itself pickles beside tensors: not objects a refusal names.
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict")


def _pickled_globals(path: str | os.PathLike) -> list[str] | None:
    """The importable names a pickled file refers to (other than torch's own), read by
    ``pickletools`` without building or running anything: the legacy format is a pickle, the zip
    format holds one as ``*/data.pkl``. None when no whole pickle is there (damaged bytes)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if name is None:
                    return None
                stream = io.BytesIO(archive.read(name))
        else:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
        with stream:
            names, strings = [], []
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    names.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    names.append(".".join(strings[-2:]) if len(strings) >= 2 else "an object")
                elif isinstance(argument, str):
                    strings.append(argument)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError):
        return None
    return [name for name in dict.fromkeys(names) if not name.startswith(_TORCH_GLOBALS)]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The training state saved at ``path``, or one sentence naming the file and what is wrong:
    unreadable, holding objects other than tensors and plain values (never run), or lacking a
    field training needs."""
    path = Path(path)
    if not path.is_file():
        raise ProductganError(f"There is no checkpoint at {path}; check the run directory.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        refused = refused_for_safety(error, path)
        if refused:
            raise ProductganError(
                f"The checkpoint {path} was not loaded: {refused}; use a checkpoint productgan wrote, or start a "
                f"new run."
            )
        raise ProductganError(
            f"The checkpoint {path} cannot be read ({load_failure(error)}); it may be damaged or not a productgan "
            "checkpoint."
        )
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ProductganError(f"{path} is not a productgan checkpoint of version {CHECKPOINT_VERSION}.")
    problem = _field_problem(state)
    if problem:
        raise ProductganError(
            f"The checkpoint {path} {problem}, so it is damaged or was not written by this productgan; "
            f"resume from a copy of the run, or start a new run."
        )
    return state


def _field_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a loaded checkpoint (a phrase), or None."""
    for field, types in REQUIRED_FIELDS.items():
        if field not in state:
            return f"lacks the field {field!r}"
        value = state[field]
        if isinstance(value, bool) or not isinstance(value, types):  # True is an int to Python, not a count
            wanted = " or ".join(t.__name__ for t in types)
            return f"holds {type(value).__name__} in the field {field!r}, where {wanted} belongs"
    for field in WEIGHT_FIELDS:
        weights = state.get(field)
        if field == "G_ema" and weights is None:  # kept only when training keeps an EMA generator
            continue
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            return f"holds something other than named tensors in the field {field!r}"
    return None
