"""How strongly D's images are augmented: every image (``--augment on``), none (``off``), a fixed
probability per image and transform (``--train.augment-p``), or a probability that adapts to how
much D overfits (``auto``, adaptive augmentation: Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data").

The overfitting signal is the mean sign of D's logits on real images, r = E[sign(D(x))]: near 0
while D cannot tell its training images from fakes, near 1 once it has learned them by heart.
Every ADJUST_EVERY steps r is measured over the steps since the last adjustment, and p moves
toward keeping r at ``target`` (0.6, the paper's) by at most the images of those steps over
RAMP_IMAGES, so that p can cross from 0 to 1 in RAMP_IMAGES images and no faster. p starts at 0.

p and the signs summed since the last adjustment are part of the training state (``state_dict``),
so a resumed run goes on exactly. Eagerly, p is a host number and an adjustment reads the sum
(on a CPU a read costs nothing; on a GPU it is one wait every ADJUST_EVERY steps), and while p is
0 no augmentation is computed at all. Under a CUDA graph p lives in a device tensor the graph
reads, and the graph always runs the transforms, each chosen per image with probability p.
"""

from __future__ import annotations

from typing import Any

import torch

from productgan.train import distributed
from productgan.train.distributed import SINGLE, Context

ADJUST_EVERY = 4  # steps between adjustments of p (the paper's interval)
RAMP_IMAGES = 500_000  # images over which p may go from 0 to 1 (the paper's speed)


class AugmentStrength:
    """The augmentation probability of one run. ``mode``: 'auto', 'on' or 'off'; ``fixed_p``: a
    probability that overrides the mode's (``--train.augment-p``)."""

    def __init__(
        self,
        mode: str | bool,
        fixed_p: float | None,
        target: float,
        images_per_step: int,
        logits_per_step: int,
        device: torch.device,
        context: Context = SINGLE,
    ):
        mode = {True: "on", False: "off"}.get(mode, mode)  # as older runs recorded it
        self.enabled = mode != "off"
        self.adaptive = mode == "auto" and fixed_p is None
        self.target, self.images_per_step, self.context = target, images_per_step, context
        self.logits_per_step = logits_per_step  # real logits a step's D updates give, per process
        # None: every image, as DiffAugment alone does (and as runs before adaptive augmentation did).
        self.p: float | None = fixed_p if fixed_p is not None else (0.0 if self.adaptive else None)
        self.signs = torch.zeros((), device=device)  # sum of sign(D(x)) since the last adjustment
        self.observed = 0  # real logits summed in ``signs``
        self.device_p: torch.Tensor | None = None  # set by ``use_device_p`` for a CUDA graph

    def use_device_p(self) -> None:
        """Keep p in a device tensor (for a CUDA graph, which must not bake it in)."""
        if self.p is not None:
            self.device_p = torch.tensor(self.p, device=self.signs.device)

    def probability(self) -> float | torch.Tensor | None:
        """What ``diff_augment`` gets as ``p``: the device tensor under a graph, else the number
        (None: every image)."""
        return self.device_p if self.device_p is not None else self.p

    @property
    def skips(self) -> bool:
        """True when no augmentation need be computed: eagerly at p = 0, or when off."""
        return not self.enabled or (self.device_p is None and self.p == 0.0)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Add a D update's real logits to the signal: on the device, no wait, nothing counted on
        the host (a CUDA graph replays this without running Python)."""
        if self.adaptive:
            self.signs += torch.sign(real_logits.detach().float()).sum()

    def after_step(self, step: int) -> None:
        """Count the step's logits; every ADJUST_EVERY steps adjust p from the signs observed
        since the last adjustment."""
        if not self.adaptive:
            return
        self.observed += self.logits_per_step
        if step % ADJUST_EVERY:
            return
        mean_sign = distributed.all_reduce_mean(self.signs / self.observed, self.context).item()
        change = ADJUST_EVERY * self.images_per_step / RAMP_IMAGES
        direction = (mean_sign > self.target) - (mean_sign < self.target)
        self.p = min(1.0, max(0.0, self.p + direction * change))
        self.signs.zero_()
        self.observed = 0
        if self.device_p is not None:
            self.device_p.fill_(self.p)

    def state_dict(self) -> dict[str, Any]:
        return {"augment_p": self.p, "augment_signs": float(self.signs), "augment_observed": self.observed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The strength a checkpoint holds; one written before adaptive augmentation holds none,
        and its run goes on with the mode's start."""
        if "augment_p" in state and self.adaptive:
            self.p = float(state["augment_p"])
            self.signs.fill_(float(state.get("augment_signs", 0.0)))
            self.observed = int(state.get("augment_observed", 0))
            if self.device_p is not None:
                self.device_p.fill_(self.p)
