"""The training loop: steps until the budget is spent or a stop is agreed, with the logging,
sample grids, validation and checkpoints due along the way, then the final checkpoint, grid and
export. The ``Trainer`` (train/trainer.py) owns the state and the step; this module only decides
when each happens, handing every decision to its owner (``Budget.steps_done``,
``Validator.due``, ``StopSignal``, ``TrainingLog.write``). The life of a run and of a step, and
what keeps a resumed run bit-exact: the docstring of ``train/__init__.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from productgan import run
from productgan.errors import UsageError
from productgan.train import distributed
from productgan.train.budget import Budget, decay_learning_rates
from productgan.train.logs import StepStats, TrainingLog, check_finite, progress_bar
from productgan.train.samples import save_reals
from productgan.train.signals import StopSignal

if TYPE_CHECKING:
    from productgan.train.trainer import Trainer


def fit(trainer: Trainer, progress: bool = True) -> dict[str, Any]:
    """Train until the budget is spent or a stop signal arrives; returns a short summary.

    Under torchrun every rank runs this loop; rank 0 alone writes files, and the decisions to
    stop (budget, signal, non-finite loss) are taken together so that no rank waits forever.
    """
    budget, ctx = Budget(trainer.config), trainer.context
    spent = trainer.step and budget.spent(trainer.step, trainer.elapsed_s)
    if (
        spent
        and not ctx.restarted
        and run.final_export_is_current(trainer.run_dir, trainer.step, trainer.validator.best)
    ):
        # Checked before config.yaml is rewritten, so the run keeps the budget it was trained with.
        # A run whose export a crash cut short is finished instead: no step, then the export.
        raise UsageError(
            f"The run in {trainer.run_dir} is at step {trainer.step} ({trainer.images_seen:,} images, "
            f"{trainer.elapsed_s / 60:.1f} min) already, past the budget given; give a larger total "
            f"(--steps, --images or --minutes), or `productgan export {trainer.run_dir}` to export "
            f"its generator again."
        )
    log = open_log(trainer)
    stop = StopSignal()
    bar = progress_bar(budget.end_step, trainer.step, progress and ctx.is_main)
    with stop:
        reason, stats = run_steps(trainer, budget, stop, log, bar)
    bar.close()
    if trainer.step == 0 and reason == "budget":
        raise UsageError(
            f"--minutes {trainer.config.minutes:g} ran out before the first training step, so nothing was trained or "
            f"exported; give the run at least a few seconds."
        )
    trainer.save_checkpoint(stats)
    samples = trainer.save_samples() if ctx.is_main else None
    export = trainer.export() if ctx.is_main else None
    if log is not None:
        log.close()
    distributed.barrier(ctx)
    return {
        "step": trainer.step,
        "images_seen": trainer.images_seen,
        "elapsed_s": trainer.elapsed_s,
        "stopped_by": reason,
        "signal": stop.received or None,
        "samples": samples,
        "export": export,
        "run_dir": trainer.run_dir,
        "is_main": ctx.is_main,
    }


def open_log(trainer: Trainer) -> TrainingLog | None:
    """Rank 0 readies the run folder and opens its log; other ranks write nothing."""
    if not trainer.context.is_main:
        return None
    run.open_run_dir(trainer.run_dir, trainer.config, trainer.step)
    if not (trainer.run_dir / run.REALS_FILE).exists():
        save_reals(trainer.run_dir, trainer.dataset, trainer.config.train.grid_size, trainer.config.seed)
    return TrainingLog(trainer.run_dir, trainer.step, trainer.config.train.tensorboard)


def run_steps(
    trainer: Trainer, budget: Budget, stop: StopSignal, log: TrainingLog | None, bar: tqdm
) -> tuple[str, StepStats]:
    """Steps until the budget ends or a stop is agreed; returns why it stopped, and the
    statistics of the steps not yet logged. Each decision
    is handed to the part that owns it: the budget, the stop signal, the log, the validator."""
    t, ctx, decay = trainer.config.train, trainer.context, trainer.config.optim.lr_decay != "none"
    stats = StepStats.zeros(trainer.device)
    last_log_time, last_log_images = time.perf_counter(), trainer.images_seen
    session_start, elapsed_at_start = time.perf_counter(), trainer.elapsed_s
    # Share of the minutes budget used (the same on every rank after a resume), refreshed
    # where the ranks agree.
    time_share = budget.time_share(elapsed_at_start)
    trainer.G.train()
    trainer.D.train()
    while not budget.steps_done(trainer.step):
        trainer.elapsed_s = elapsed_at_start + time.perf_counter() - session_start
        # A collective per step would stall GPUs, so ranks agree on stops once per log interval.
        if not ctx.enabled or trainer.step % t.log_every == 0:
            # One collective for all three; the signal's number travels to the ranks that got none.
            time_up, early, signum = distributed.max_over_ranks(
                [float(budget.time_up(trainer.elapsed_s)), float(stop.early), float(stop.received)], trainer.device, ctx
            )
            if time_up or early or signum:
                stop.received = int(signum)
                return ("budget" if time_up else "early stop" if early else "signal"), stats
            if decay and budget.seconds is not None:
                # Rank 0's clock, so that every rank steps with the same learning rate.
                time_share = distributed.broadcast_float(budget.time_share(trainer.elapsed_s), trainer.device, ctx)
        if decay:
            o = trainer.config.optim
            decay_learning_rates(
                [(trainer.opt_g, o.lr_g), (trainer.opt_d, o.lr_d)], budget.share_used(trainer.step, time_share)
            )
        trainer.train_step(stats)
        bar.update(1)
        trainer.elapsed_s = elapsed_at_start + time.perf_counter() - session_start
        if trainer.step % t.log_every == 0 or budget.steps_done(trainer.step):
            now = time.perf_counter()
            values = stats.means(ctx)
            check_finite(values, trainer.step, trainer.run_dir / run.LAST_CHECKPOINT)
            values["images_per_s"] = (trainer.images_seen - last_log_images) / max(now - last_log_time, 1e-9)
            if trainer.augment.p is not None:
                values["augment_p"] = trainer.augment.p
            if log is not None:
                trainer.check_balance(values)
                log.write(where(trainer), values)
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
            stats = StepStats.zeros(trainer.device)
            last_log_time, last_log_images = now, trainer.images_seen
        if trainer.step % t.sample_every == 0 and log is not None:
            trainer.save_samples()
        if trainer.validator.due(trainer.step):
            scores = trainer.validate()
            if log is not None:
                log.write(where(trainer), {**scores, "best_val": trainer.validator.best})
            # Rank 0's decision, shared at the next agreement.
            stop.early = stop.early or trainer.validator.patience_spent
        if trainer.step % t.checkpoint_every == 0:
            trainer.save_checkpoint(stats)
    return "budget", stats


def where(trainer: Trainer) -> dict[str, float]:
    return {
        "step": trainer.step,
        "images_seen": trainer.images_seen,
        "epoch": trainer.batches.batches_drawn / trainer.batches.batches_per_epoch,
        "elapsed_s": round(trainer.elapsed_s, 3),
    }
