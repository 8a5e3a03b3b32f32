"""Training: the loop, checkpoints, EMA and run directories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from productgan.config import RunConfig, check_pack, check_seed
from productgan.data import FILES, is_packed_dataset, open_dataset
from productgan.data.fashion_mnist import missing_files
from productgan.data.prepare import FASHION_MNIST
from productgan.errors import ProductganError, UsageError
from productgan.train import distributed
from productgan.train.loop import CONFIG_FILE, LAST_CHECKPOINT, Trainer, load_run_config
from productgan.train.rundir import new_run_dir

__all__ = ["train", "resume", "Trainer", "load_run_config"]


def open_recorded_dataset(config: RunConfig, run_dir: str | Path | None = None):
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


def _open(config: RunConfig, run_dir: str | Path | None = None):
    dataset = open_recorded_dataset(config, run_dir)
    # Record what the data really is, so config.yaml alone rebuilds the run, from any folder: the
    # absolute path of a folder it was read from (a folder named fashion-mnist that holds neither
    # a packed dataset nor the idx files leaves the name, which means the built-in source).
    path = Path(config.data).expanduser()
    read_from_path = path.is_dir() and (is_packed_dataset(path) or len(missing_files(path)) < len(FILES))
    if path.exists() and (config.data != FASHION_MNIST or read_from_path):
        config.data = str(path.resolve())
    config.image_size = dataset.image_size
    split = dataset.meta.get("split", {})
    config.train.val_size = split.get("val_size", config.train.val_size)
    config.train.split_seed = split.get("seed", config.train.split_seed)
    if config.train.eval_every:
        from productgan.evaluate import check_reference

        check_reference(dataset, "val", "--train.eval-every")
    return dataset


def check_budget(config: RunConfig, world_size: int = 1) -> None:
    for name in ("steps", "images", "minutes"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name} must be positive, not {value}.")
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {config.batch_size}.")
    for name in ("d_steps_per_g_step", "g_steps_per_d_step"):
        if getattr(config.optim, name) < 1:
            raise UsageError(f"--optim.{name} must be at least 1.")
    if config.loss.name == "wgan-gp" and config.model.d_norm == "batch":
        raise UsageError(
            "--loss.name wgan-gp penalises per-image gradients, which BatchNorm in the "
            "discriminator mixes across the batch; add --model.d-norm none (or spectral)."
        )
    check_pack(config.model.d_pack, config.batch_size // world_size)
    if config.loss.r1_every < 1:
        raise UsageError("--loss.r1-every must be at least 1.")
    for name in ("log_every", "sample_every", "checkpoint_every", "grid_size"):
        if getattr(config.train, name) < 1:
            raise UsageError(f"--train.{name.replace('_', '-')} must be at least 1.")
    for name in ("nz", "ngf", "ndf"):
        if getattr(config.model, name) < 1:
            raise UsageError(f"--model.{name} must be at least 1, not {getattr(config.model, name)}.")
    check_seed(config.seed)
    if config.train.split_seed is not None:
        check_seed(config.train.split_seed, "--train.split-seed")
    for name in ("lr_g", "lr_d"):
        lr = getattr(config.optim, name)  # None: the loss's default
        if lr is not None and not lr > 0:
            raise UsageError(f"--optim.{name.replace('_', '-')} must be a positive learning rate, not {lr}.")
    t = config.train
    if t.eval_every < 0 or t.early_stop_patience < 0:
        raise UsageError("--train.eval-every and --train.early-stop-patience must be 0 (off) or more.")
    from productgan.evaluate import MIN_GENERATED

    if t.eval_every and t.eval_n < max(MIN_GENERATED, world_size):
        raise UsageError(
            f"--train.eval-n must be at least {max(MIN_GENERATED, world_size)} (and one image per "
            f"process) for a validation score, not {t.eval_n}."
        )


def train(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Start a new run described by ``config``; returns the loop's summary.

    Under torchrun (WORLD_SIZE > 1) every rank calls this. A restart by torchrun's
    ``--max-restarts`` finds the checkpoint in ``--out`` and resumes from it.
    """
    context = distributed.from_environment()
    check_budget(config, context.world_size)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if context.enabled:
        distributed.local_batch_size(config.batch_size, context)
        if restarted and config.out and (Path(config.out) / LAST_CHECKPOINT).is_file():
            return resume(config.out, config.steps, config.images, config.minutes, progress=progress)
        if not config.out:
            raise UsageError(
                "Under torchrun, give the run directory with --out, so every process and every "
                "restart uses the same one."
            )
    dataset = _open(config)
    if config.out:
        run_dir = Path(config.out)
        if context.is_main and not restarted and (run_dir / LAST_CHECKPOINT).exists():
            raise ProductganError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another --out."
            )
        if context.is_main and not restarted and (run_dir / CONFIG_FILE).exists():
            raise ProductganError(
                f"{run_dir} holds a run that stopped before its first checkpoint (nothing to resume); pick another "
                f"--out, or delete {run_dir} to start there."
            )
    else:
        run_dir = new_run_dir(config.runs_root, config.data, dataset.image_size)
    try:
        return Trainer(config, run_dir, dataset, context=context).fit(progress=progress)
    finally:
        distributed.shutdown()


def resume(run_dir: str | Path, steps=None, images=None, minutes=None, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` in place; a budget given here is the new total. The number
    of processes may differ from the run's start: the data position and noise do not depend on it."""
    context = distributed.from_environment()
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ProductganError(
            f"{run_dir} has no {LAST_CHECKPOINT} to resume from (the run stopped before its first "
            f"checkpoint); start a new run instead."
        )
    if steps is not None or images is not None or minutes is not None:
        config.steps, config.images, config.minutes = steps, images, minutes
    check_budget(config, context.world_size)
    dataset = _open(config, run_dir)
    try:
        return Trainer(config, run_dir, dataset, resume=True, context=context).fit(progress=progress)
    finally:
        distributed.shutdown()


def export_run(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """Export the generator of ``run_dir``'s last (or best) checkpoint, the EMA one when kept."""
    from productgan.train.checkpoint import load_checkpoint
    from productgan.train.loop import BEST_CHECKPOINT, export_checkpoint

    run_dir = Path(run_dir)
    load_run_config(run_dir)  # a clear error when this is not a run directory
    path = run_dir / (LAST_CHECKPOINT if checkpoint == "last" else BEST_CHECKPOINT)
    if checkpoint == "best" and not path.is_file():
        raise ProductganError(
            f"{run_dir} has no {BEST_CHECKPOINT}: it is kept only when training scores the validation "
            f"split (--train.eval-every K); export the last checkpoint instead."
        )
    return export_checkpoint(load_checkpoint(path), run_dir / "generator")
