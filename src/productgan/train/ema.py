"""Exponential moving average of the generator's weights (Karras et al. 2018; ramp-up as in
StyleGAN2-ADA): samples and exports come from the average, which is smoother than any one step."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``self.model``, a frozen copy of ``source`` whose weights trail it."""

    def __init__(self, source: nn.Module, half_life_images: int, warmup: float):
        self.model = copy.deepcopy(source).eval().requires_grad_(False)
        self.half_life_images = half_life_images
        self.warmup = warmup

    def decay(self, batch_size: int, images_seen: int) -> float:
        half_life = float(self.half_life_images)
        if self.warmup > 0:
            # Early on the average would be dominated by the random initial weights.
            half_life = min(half_life, images_seen * self.warmup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    def weight(self, batch_size: int, images_seen: int) -> float:
        """How far the average moves towards the live weights after ``batch_size`` more images."""
        return 1.0 - self.decay(batch_size, images_seen)

    def update(self, source: nn.Module, batch_size: int, images_seen: int) -> None:
        self.blend(source, self.weight(batch_size, images_seen))

    @torch.no_grad()
    def blend(self, source: nn.Module, weight: float | torch.Tensor) -> None:
        """Move the average ``weight`` of the way to ``source``'s weights. A tensor weight (a
        device scalar) is read when the kernels run, as a CUDA graph's replay needs."""
        ema_params = list(self.model.parameters())
        src_params = [p.detach() for p in source.parameters()]
        if isinstance(weight, torch.Tensor):
            for average, live in zip(ema_params, src_params):
                average.lerp_(live, weight)
        else:
            torch._foreach_lerp_(ema_params, src_params, weight)
        # BatchNorm running statistics are not averaged: they follow the live generator.
        for ema_buffer, buffer in zip(self.model.buffers(), source.buffers()):
            ema_buffer.copy_(buffer)
