"""The run folder's names, its numbering, the lock and the metrics log.

```
runs/00003-fashion-mnist-32/
  config.yaml              the resolved configuration (config.resolve's result)
  reals.png                training images, written once
  samples/step-000400.png  fixed-noise grids over time
  metrics.jsonl            one JSON object per log interval and per validation
  checkpoints/last.pt      full training state; checkpoints/best.pt the best validated one
  generator/               the exported generator (model.safetensors + config.json + README.md)
  evaluation/              evaluate's reports
  tensorboard/             TensorBoard events, when asked for
  report/                  report's HTML page and its figures
  .productgan.lock         held by the one process writing to the run
```

No other module spells these names or decides whether a folder is a run. Who writes each, and
when (each file through ``files.write_atomic`` or a folder swap, except metrics.jsonl,
tensorboard/ and the lock):

    path (constant)              written by                          when
    ---------------------------  ----------------------------------  ---------------------------
    config.yaml (CONFIG_FILE)    records.record_config, via          the start of every session;
                                 records.open_run_dir                records.load_run_config
                                                                     reads it (parse_config,
                                                                     then resolve)
    reals.png (REALS_FILE)       train.samples.save_reals            once
    samples/step-NNNNNN.png      train.samples.SampleGrid.save       every sample_every steps
      (SAMPLES_DIR, sample_path)                                     and at the end
    metrics.jsonl (METRICS_FILE) train.logs.TrainingLog.write ->     each log interval and each
                                 append_metrics                      validation (below)
    checkpoints/last.pt          Trainer.save_checkpoint             every checkpoint_every
      (LAST_CHECKPOINT)                                              steps and at the end
    checkpoints/best.pt          Trainer.validate                    when a validation score
      (BEST_CHECKPOINT)                                              improves
    generator/ (GENERATOR_DIR)   export.export_final;                at the end of training;
                                 export.export_run                   `productgan export`
    evaluation/ (EVALUATION_DIR, reports.evaluation.write_report     `productgan evaluate`
      evaluation_report_path)
    tensorboard/                 train.logs.open_tensorboard         with --train.tensorboard
      (TENSORBOARD_DIR)
    report/ (REPORT_DIR)         reports.html.build_report           `productgan report`
    uplift/NAME.json (UPLIFT_DIR, explore.uplift.uplift              `productgan uplift`
      uplift_report_path)
    .productgan.lock (LOCK_FILE) locked                              while training (rank 0) or
                                                                     exporting

A metrics.jsonl line holds where the run is (``step``, ``images_seen``, ``epoch``,
``elapsed_s``) and either a log interval's means (``loss_d``, ``loss_g``, ``d_real``,
``d_fake``, ``images_per_s``) or a validation's scores (``val_fid_productgan``,
``val_precision``, ``val_recall``, ``val_rarest_class_share``, ``val_n``, ``best_val``). It is
appended line by line, not written atomically: a line cut short by a crash is dropped by
``trim_metrics`` on resume (which also drops the lines after the checkpoint, to be written
again) and skipped by ``reports.html.read_metrics``.

Run folders are numbered ``NNNNN-<data slug>-<image size>`` (``new_run_dir``, ``dataset_slug``).

The lock: ``locked`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on .productgan.lock, writes
``process PID (doing)`` into it, and clears the stale temporaries under the run
(``files.remove_stale_temporaries``). A second writer gets one sentence naming the holder; the
system releases the lock of a killed process, so the next command simply takes it over.
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

from productgan.errors import ProductganError
from productgan.files import remove_stale_temporaries, write_text_atomic
from productgan.generator.export import EXPORT_FOLDER

CONFIG_FILE = "config.yaml"


METRICS_FILE = "metrics.jsonl"


REALS_FILE = "reals.png"


SAMPLES_DIR = "samples"


LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


BEST_CHECKPOINT = Path("checkpoints") / "best.pt"


GENERATOR_DIR = EXPORT_FOLDER


EVALUATION_DIR = "evaluation"


TENSORBOARD_DIR = "tensorboard"


UPLIFT_DIR = "uplift"
REPORT_DIR = Path("report")  # report's page, index.html, and its figures


LOCK_FILE = ".productgan.lock"  # held by the one process that writes to the run


_NUMBERED = re.compile(r"^(\d{5})-")


def sample_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step-{step:06d}.png"


def evaluation_report_path(
    run_dir: str | Path, split: str, n: int, seed: int, temperature: float = 1.0, step: int | None = None
) -> Path:
    """Where ``evaluate`` writes its report by default. The name tells the protocol and the
    generator apart (``test-n10000-seed0-t0.8-step4000.json``), so no earlier report is replaced
    by one of another kind: the same name means the same scores."""
    at = "" if temperature == 1.0 else f"-t{temperature:g}"
    at += "" if step is None else f"-step{step}"
    return Path(run_dir) / EVALUATION_DIR / f"{split}-n{n}-seed{seed}{at}.json"


def uplift_report_path(run_dir: str | Path, synth_dir: str | Path) -> Path:
    """Where ``uplift`` writes its report by default: named after the synthetic set measured."""
    return Path(run_dir) / UPLIFT_DIR / f"{Path(synth_dir).resolve().name}.json"


def require_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, or one sentence when it is not a folder a training run wrote."""
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise ProductganError(
            f"{run_dir} is not a productgan run directory (no {CONFIG_FILE}); pass the folder a training run wrote."
        )
    return path


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
