"""The run folder: every path in it, the config recorded there, the dataset it names, the export.

```
runs/00003-fashion-mnist-32/
  config.yaml              the resolved configuration (config.resolve's result)
  reals.png                training images, written once
  samples/step-000400.png  fixed-noise grids over time
  metrics.jsonl            one JSON object per log interval
  checkpoints/last.pt      full training state; checkpoints/best.pt the best validated one
  generator/               the exported generator (model.safetensors + config.json + README.md)
  evaluation/              evaluate's reports
```

Everything that reads or writes a run folder goes through this module: no other module spells
these names or decides whether a folder is a run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from productgan import sampling
from productgan.checkpoint import load_checkpoint
from productgan.config import RunConfig, parse_config, resolve, to_dict
from productgan.data import FILES, PackedDataset, is_packed_dataset, open_dataset
from productgan.data.fashion_mnist import missing_files
from productgan.data.folder import looks_like_image_folder
from productgan.data.packed import INFO_FILE
from productgan.data.prepare import FASHION_MNIST
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import remove_stale_temporaries, write_text_atomic
from productgan.model_card import model_card, write_model_card
from productgan.models import Generator
from productgan.sampling import build_generator, export_generator

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
REALS_FILE = "reals.png"
SAMPLES_DIR = "samples"
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"
BEST_CHECKPOINT = Path("checkpoints") / "best.pt"
GENERATOR_DIR = "generator"
EVALUATION_DIR = "evaluation"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".productgan.lock"  # held by the one process that writes to the run

_NUMBERED = re.compile(r"^(\d{5})-")


def sample_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step-{step:06d}.png"


def require_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, or one sentence when it is not a folder a training run wrote."""
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise ProductganError(
            f"{run_dir} is not a productgan run directory (no {CONFIG_FILE}); pass the folder a training run wrote."
        )
    return path


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration recorded in ``run_dir``, or one sentence naming what is wrong with it."""
    path = require_run_dir(run_dir) / CONFIG_FILE
    try:
        config = parse_config(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        reason = first_line(error).strip("'\"")  # a KeyError's message comes quoted
        raise ProductganError(f"{path} is damaged ({reason}); restore it from a copy of the run, or start a new run.")
    try:
        return resolve(config)  # the checks a new run's settings pass
    except UsageError as error:
        raise ProductganError(
            f"{path} holds settings no run can have ({str(error).rstrip('.')}); restore it from a copy of the run, "
            f"or start a new run."
        )


def record_config(run_dir: Path, config: RunConfig) -> Path:
    return write_text_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))


def open_recorded_dataset(config: RunConfig, run_dir: str | Path | None = None) -> PackedDataset:
    """The dataset ``config`` names; for a run's recorded config (``run_dir`` given), one
    sentence when that dataset is no longer there."""
    if run_dir is not None and config.data != FASHION_MNIST and not Path(config.data).expanduser().exists():
        raise ProductganError(
            f"The dataset this run trained on, {config.data} (the data: line of "
            f"{Path(run_dir) / CONFIG_FILE}), is not there; put it back, or edit that line to where "
            f"it is now."
        )
    return open_dataset(
        config.data, image_size=config.image_size, val_size=config.train.val_size, seed=config.train.split_seed
    )


def open_new_dataset(config: RunConfig) -> PackedDataset:
    """Open the dataset of a new run and record in ``config.data`` what it really is, so that
    config.yaml alone rebuilds the run from any folder: the absolute path of a folder it was read
    from (a folder named fashion-mnist that holds neither a packed dataset nor the idx files
    leaves the name, which means the built-in source)."""
    dataset = open_recorded_dataset(config)
    path = Path(config.data).expanduser()
    read_from_path = path.is_dir() and (is_packed_dataset(path) or len(missing_files(path)) < len(FILES))
    if path.exists() and (config.data != FASHION_MNIST or read_from_path):
        config.data = str(path.resolve())
    return dataset


def preset_for(data: str, image_size: str | int | None = None) -> str | None:
    """The preset measured best for ``data`` at ``image_size`` (None: the data's own size), or
    None where none was measured: fmnist-32 for Fashion-MNIST at 32x32 (the built-in source, its
    idx files, or a packed copy of it), products-64 / products-128 for packed photo datasets and
    folders of photos of that size."""
    size = int(image_size) if str(image_size or "").isdigit() else None
    path = Path(data).expanduser()
    packed = is_packed_dataset(path) and path.is_dir()
    try:
        info = json.loads((path / INFO_FILE).read_text()) if packed else {}
        packed_size = int(info["shape"][2]) if packed else 0
        source = info.get("meta", {}).get("source")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None  # opening the dataset names what is wrong with it
    fashion = (
        data == FASHION_MNIST
        or (path.is_dir() and not packed and len(missing_files(path)) < len(FILES))
        or source == FASHION_MNIST
    )
    if fashion:
        return "fmnist-32" if (size or packed_size or 32) == 32 else None
    if packed:
        size = size or packed_size
    elif path.is_dir() and looks_like_image_folder(path):
        size = size or 64  # photos pack at 64x64 unless told otherwise
    else:
        return None
    return {64: "products-64", 128: "products-128"}.get(size)


def dataset_slug(data: str) -> str:
    name = Path(data.rstrip("/\\")).name or "data"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return slug or "data"


def new_run_dir(runs_root: str | Path, data: str, image_size: int) -> Path:
    """Create and return the next numbered run directory under ``runs_root``."""
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _NUMBERED.match(p.name))]
    number = max(taken, default=-1) + 1
    while True:
        path = root / f"{number:05d}-{dataset_slug(data)}-{image_size}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another run took the number first
            number += 1


# What a run writes in its folder: after a torchrun restart, the first attempt's own files.
RUN_NAMES = {
    CONFIG_FILE,
    METRICS_FILE,
    REALS_FILE,
    SAMPLES_DIR,
    "checkpoints",
    GENERATOR_DIR,
    TENSORBOARD_DIR,
    LOCK_FILE,
}


def check_new_run_dir(run_dir: Path, restarted: bool = False) -> None:
    """One sentence when ``--out`` already holds a run, finished or not, or anything else: a
    new run writes only into a new or empty folder, so it never replaces a user's files. A
    process that torchrun started again finds its first attempt's files there, and only those."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ProductganError(f"--out {run_dir} is a file; give a new or empty folder for the run.")
    if restarted:
        if run_dir.is_dir():
            remove_stale_temporaries(run_dir)
        if run_dir.is_dir() and any(entry.name not in RUN_NAMES for entry in run_dir.iterdir()):
            raise ProductganError(
                f"--out {run_dir} holds files no productgan run wrote; give a new or empty folder, so that training "
                f"replaces nothing of yours."
            )
        return
    if (run_dir / LAST_CHECKPOINT).exists():
        raise ProductganError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another --out."
        )
    if (run_dir / CONFIG_FILE).exists():
        raise ProductganError(
            f"{run_dir} holds a run that stopped before its first checkpoint (nothing to resume); pick another "
            f"--out, or delete {run_dir} to start there."
        )
    if run_dir.is_dir():
        remove_stale_temporaries(run_dir)  # a run killed while writing its first config.yaml leaves one
    if run_dir.is_dir() and any(entry.name != LOCK_FILE for entry in run_dir.iterdir()):
        raise ProductganError(
            f"--out {run_dir} already holds files and is not a productgan run; give a new or empty folder, so that "
            f"training replaces nothing of yours."
        )


def check_resumable(run_dir: Path) -> None:
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ProductganError(
            f"{run_dir} has no {LAST_CHECKPOINT} to resume from (the run stopped before its first "
            f"checkpoint); start a new run instead."
        )


@contextmanager
def locked(run_dir: Path, doing: str) -> Iterator[None]:
    """Hold the run's lock while the block writes to it: a second process that would write to
    the same run (a second resume, an export during training) is refused in one sentence. The
    operating system releases the lock when its process ends in any way, so the lock of a
    process that was killed is simply taken over, and so are the temporaries its writes left."""
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _held(run_dir, doing):
            yield
    finally:
        # A command refused before it wrote anything leaves no folder that it made itself.
        if made and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(run_dir, ignore_errors=True)


@contextmanager
def _held(run_dir: Path, doing: str) -> Iterator[None]:
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ProductganError(
                f"{run_dir} is in use by {holder}; wait until it ends (or stop it), then run the command again."
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} ({doing})")
        handle.flush()
        remove_stale_temporaries(run_dir, recursive=True)
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_run_dir(run_dir: Path, config: RunConfig, step: int) -> None:
    """Ready ``run_dir`` for training from ``step``: the folder exists, config.yaml holds
    ``config``, and metrics.jsonl ends at ``step``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record_config(run_dir, config)
    trim_metrics(run_dir, step)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint: they will be written again."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by a crash
            continue
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def export_info(dataset: PackedDataset, seed: int, step: int, images_seen: int, ema: bool) -> dict[str, Any]:
    """What an export records beside the weights: the dataset facts a sampler needs to give
    images back at native size (classes, size, fitting), and where in training it was taken."""
    keys = ("native_size", "fit", "padded_size", "pad", "background")
    return {
        "class_names": list(dataset.class_names),
        **{k: dataset.meta[k] for k in keys if k in dataset.meta},
        "dataset": dataset.meta.get("source"),
        "split_sizes": dataset.split_sizes(),
        "licence": dataset.meta.get("licence"),
        "step": step,
        "images_seen": images_seen,
        "ema": ema,
        "seed": seed,
    }


def checkpoint_generator(state: dict[str, Any]) -> Generator:
    """The generator held in a checkpoint (the EMA one when kept), as the checkpoint holds it."""
    model = state["config"]["model"]
    classes = len(state["export_info"]["class_names"]) if model["conditional"] else 0
    description = {"model": model, "image_size": state["image_size"], "channels": state["channels"]}
    generator = build_generator({**description, "num_classes": classes})
    generator.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    return generator


def export_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """Export the generator held in a checkpoint (the EMA one when kept) to the run's generator/;
    a weight average with statistics measured as training's own export measures them."""
    generator = checkpoint_generator(state)
    if state.get("G_ema") is not None:
        sampling.measure_statistics(generator, state["config"]["seed"])
    return _export(generator, run_dir, state["export_info"])


def export_run(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """Export the generator of ``run_dir``'s last (or best) checkpoint, the EMA one when kept."""
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # one sentence when this is not a run, or its config.yaml is damaged
    if checkpoint not in ("last", "best"):
        raise UsageError(f"--checkpoint must be last or best, not {checkpoint!r}.")
    path = run_dir / (LAST_CHECKPOINT if checkpoint == "last" else BEST_CHECKPOINT)
    if checkpoint == "best" and not path.is_file():
        raise ProductganError(
            f"{run_dir} has no {BEST_CHECKPOINT}: it is kept only when training scores the validation "
            f"split (--train.eval-every K); export the last checkpoint instead."
        )
    with locked(run_dir, "productgan export"):
        return export_checkpoint(load_checkpoint(path), run_dir)


def export_final(run_dir: Path, generator: Generator, info: dict[str, Any], best_val: float | None) -> Path:
    """Export a run's generator at the end of training: the best validated one when validation
    kept one (``best_val`` set), else ``generator`` as it is now."""
    best = run_dir / BEST_CHECKPOINT
    if best_val is not None and best.is_file():
        return export_checkpoint(load_checkpoint(best), run_dir)
    return _export(generator, run_dir, info)


def _export(generator: Generator, run_dir: Path, info: dict[str, Any]) -> Path:
    """Write the run's generator/ with its model card."""
    recorded, reports = _card_sources(run_dir)
    return export_generator(
        generator, run_dir / GENERATOR_DIR, info, lambda export: model_card(export, recorded, reports)
    )


def refresh_model_card(run_dir: str | Path) -> Path | None:
    """Write the model card of the run's export again (after an evaluation, or once model.onnx is
    written beside it); None when the run has no export."""
    run_dir = Path(run_dir)
    if not (run_dir / GENERATOR_DIR / sampling.CONFIG_FILE).is_file():
        return None
    return write_model_card(run_dir / GENERATOR_DIR, *_card_sources(run_dir))


def evaluation_reports(run_dir: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, report) of every readable JSON report in the run's evaluation/ folder."""
    reports = []
    for path in sorted((Path(run_dir) / EVALUATION_DIR).glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):  # a report damaged by hand is left out of the card
            continue
        if isinstance(report, dict):
            reports.append((path.name, report))
    return reports


def _card_sources(run_dir: Path) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """What the model card reads from the run: its recorded configuration (None when it cannot
    be read: the card says "not recorded", and the export goes ahead) and its reports."""
    try:
        recorded = to_dict(load_run_config(run_dir))
    except ProductganError:
        recorded = None
    return recorded, evaluation_reports(run_dir)


def final_export_is_current(run_dir: Path, step: int, best_val: float | None) -> bool:
    """True when generator/ holds what ``export_final`` would write for a run at ``step`` (a
    crash between the final checkpoint and the export leaves an older export, or none)."""
    best = run_dir / BEST_CHECKPOINT
    source = load_checkpoint(best)["step"] if best_val is not None and best.is_file() else step
    return export_step(run_dir) == source


def export_step(run_dir: Path) -> int | None:
    """The training step of the generator exported in ``run_dir`` (None when there is none)."""
    try:
        return int(json.loads((run_dir / GENERATOR_DIR / sampling.CONFIG_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
