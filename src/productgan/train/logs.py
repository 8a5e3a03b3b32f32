"""What the loop reports: running step statistics, metrics.jsonl lines, TensorBoard, warnings."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from productgan import run
from productgan.errors import ProductganError, UsageError
from productgan.train import distributed
from productgan.train.distributed import SINGLE, Context


class TrainingStopped(ProductganError):
    """Training ended early for a reason the user must see (a non-finite loss)."""


def check_finite(values: dict[str, float], step: int, checkpoint: Path) -> None:
    """TrainingStopped when a loss of the interval is NaN or infinite (``checkpoint`` is kept)."""
    bad = [k for k in ("loss_d", "loss_g") if not math.isfinite(values[k])]
    if bad:
        raise TrainingStopped(
            f"Training stopped at step {step}: {' and '.join(bad)} became non-finite; the last good "
            f"checkpoint is kept in {checkpoint} (lower the learning rates or use "
            f"--train.precision fp32, then --resume)."
        )


def progress_bar(total: int | None, initial: int, enabled: bool) -> tqdm:
    """Steps done against the budget; refreshed every second on a terminal, every 30 s in a log."""
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


@dataclass
class StepStats:
    """Running sums kept on the device; read (one host sync) once per log interval."""

    sums: torch.Tensor
    count: int = 0
    names = ("loss_d", "loss_g", "d_real", "d_fake")

    @classmethod
    def zeros(cls, device: torch.device) -> StepStats:
        return cls(torch.zeros(len(cls.names), device=device))

    def add_values(self, values: torch.Tensor) -> None:
        """One step's statistics, already stacked in the order of ``names``."""
        self.sums += values
        self.count += 1

    def means(self, context: Context = SINGLE) -> dict[str, float]:
        values = distributed.all_reduce_mean(self.sums / max(self.count, 1), context).tolist()
        return dict(zip(self.names, values))


class TrainingLog:
    """metrics.jsonl (and TensorBoard when asked for) of one run, written by rank 0 only."""

    def __init__(self, run_dir: Path, step: int, tensorboard: bool):
        self.run_dir = run_dir
        self.tensorboard = open_tensorboard(run_dir, step) if tensorboard else None

    def write(self, where: dict[str, float], values: dict[str, float]) -> None:
        """One line: where the run is (step, images_seen, ...) and the values measured there."""
        run.append_metrics(self.run_dir, {**where, **{k: round(v, 6) for k, v in values.items()}})
        if self.tensorboard is not None:
            for key, value in values.items():
                if value is not None:
                    self.tensorboard.add_scalar(key, value, where["step"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def open_tensorboard(run_dir: Path, step: int):
    """A TensorBoard writer for RUN_DIR/tensorboard that drops events after ``step`` (a resume)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "--tensorboard needs the tensorboard package; install it with "
            "`pip install 'productgan[tensorboard]'`, or train without the flag."
        )
    return SummaryWriter(str(run_dir / run.TENSORBOARD_DIR), purge_step=step if step else None)


def discriminator_won(values: dict[str, float], loss: str, augment: str | bool | None) -> str | None:
    """A sentence when D's mean outputs over a log interval say it tells every real image from
    every generated one (sigmoid of its logits above 0.99 on real, below 0.01 on generated), else
    None. Not judged for wgan-gp, whose critic values have no fixed scale."""
    if loss == "wgan-gp" or values["d_real"] <= 0.99 or values["d_fake"] >= 0.01:
        return None
    advice = (
        "turn on DiffAugment (--augment auto) and start again"
        if augment in (None, False, "off")
        else "lower the discriminator's learning rate (--optim.lr-d) or add an R1 penalty (--loss.r1-gamma)"
    )
    return (
        f"the discriminator separates real from generated images almost perfectly (D(x) {values['d_real']:.4f}, "
        f"D(G(z)) {values['d_fake']:.4f}), so the generator learns little from it; if this persists, {advice}."
    )
