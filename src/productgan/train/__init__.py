"""Training: the ``train`` and ``resume`` commands over the run layer and the ``Trainer``.

The loop and its parts live in the modules beside this one: ``loop`` (the Trainer), ``batches``,
``networks``, ``precision``, ``budget``, ``grids``, ``logs``, ``validation``, ``signals``, ``ema``
and ``distributed``.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from productgan import run
from productgan.config import RunConfig, resolve
from productgan.errors import UsageError
from productgan.train import distributed
from productgan.train.calibration import choose_precision, describe_choice
from productgan.train.device import setup_device
from productgan.train.loop import Trainer

__all__ = ["train", "resume", "Trainer"]


def train(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Start a new run described by ``config``; returns the loop's summary.

    Under torchrun (WORLD_SIZE > 1) every rank calls this. A restart by torchrun's
    ``--max-restarts`` finds the checkpoint in ``--out`` and resumes from it.
    """
    context = distributed.from_environment()
    resolve(config, world_size=context.world_size)
    if context.restarted and config.out and (Path(config.out) / run.LAST_CHECKPOINT).is_file():
        return resume(config.out, config.steps, config.images, config.minutes, progress=progress)
    if context.enabled and not config.out:
        raise UsageError(
            "Under torchrun, give the run directory with --out, so every process and every restart uses the same one."
        )
    dataset = run.open_new_dataset(config)
    resolve(config, dataset, context.world_size)
    if config.out:
        run_dir = Path(config.out)
        if context.is_main:
            run.check_new_run_dir(run_dir, restarted=context.restarted)
    else:
        run_dir = run.new_run_dir(config.runs_root, config.data, dataset.image_size)
    return _fit(config, run_dir, dataset, context, progress, resume=False, doing="productgan train")


def resume(run_dir: str | Path, steps=None, images=None, minutes=None, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` in place; a budget given here is the new total. The number
    of processes may differ from the run's start: the data position and noise do not depend on it."""
    context = distributed.from_environment()
    run_dir = Path(run_dir)
    config = run.load_run_config(run_dir)
    run.check_resumable(run_dir)
    if steps is not None or images is not None or minutes is not None:
        config.steps, config.images, config.minutes = steps, images, minutes
    dataset = run.open_recorded_dataset(config, run_dir)
    resolve(config, dataset, context.world_size)
    return _fit(config, run_dir, dataset, context, progress, resume=True, doing="productgan train --resume")


def _fit(config: RunConfig, run_dir: Path, dataset, context, progress: bool, resume: bool, doing: str) -> dict:
    try:
        device = setup_device(config.train, context)
        if config.train.precision == "auto":
            record = choose_precision(config, dataset, device, context)
            if context.is_main and progress:
                print(describe_choice(record), file=sys.stderr)
        # Rank 0 alone writes, so it alone holds the run's lock, and reads the checkpoint under
        # it; a new run looks at its folder again there, in case another process started in it.
        with run.locked(run_dir, doing) if context.is_main else nullcontext():
            if context.is_main and not resume:
                run.check_new_run_dir(run_dir, restarted=context.restarted)
            trainer = Trainer(config, run_dir, dataset, resume=resume, context=context, device=device)
            return trainer.fit(progress=progress)
    finally:
        distributed.shutdown()
