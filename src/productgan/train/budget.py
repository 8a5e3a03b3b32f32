"""The run's budget (steps, images, minutes) and the learning-rate decay that follows it."""

from __future__ import annotations

import torch

from productgan.config import RunConfig, target_steps


class Budget:
    """Where a run ends: a step (from --steps or --images) and / or a wall-clock total."""

    def __init__(self, config: RunConfig):
        self.end_step = target_steps(config)
        self.seconds = config.minutes * 60.0 if config.minutes is not None else None

    def steps_done(self, step: int) -> bool:
        return self.end_step is not None and step >= self.end_step

    def time_up(self, elapsed_s: float) -> bool:
        return self.seconds is not None and elapsed_s >= self.seconds

    def spent(self, step: int, elapsed_s: float) -> bool:
        return self.steps_done(step) or self.time_up(elapsed_s)

    def time_share(self, elapsed_s: float) -> float:
        """Share of the minutes budget used (0 without one)."""
        return elapsed_s / self.seconds if self.seconds else 0.0

    def share_used(self, step: int, time_share: float) -> float:
        """The larger of the step share and the time share: the decay follows whichever ends first."""
        return max(time_share, step / self.end_step if self.end_step else 0.0)


def decay_learning_rates(pairs: list[tuple[torch.optim.Optimizer, float]], spent: float) -> None:
    """Each optimiser's learning rate at (1 - spent) of its configured value, ``spent`` being the
    share of the budget used (linear decay; it needs no state of its own to resume)."""
    scale = max(0.0, 1.0 - spent)
    for opt, lr in pairs:
        for group in opt.param_groups:
            group["lr"] = lr * scale
