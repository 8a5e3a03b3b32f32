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

    @torch.no_grad()
    def update(self, source: nn.Module, batch_size: int, images_seen: int) -> None:
        beta = self.decay(batch_size, images_seen)
        ema_params = list(self.model.parameters())
        src_params = [p.detach() for p in source.parameters()]
        torch._foreach_lerp_(ema_params, src_params, 1.0 - beta)
        # BatchNorm running statistics are not averaged: they follow the live generator.
        for ema_buffer, buffer in zip(self.model.buffers(), source.buffers()):
            ema_buffer.copy_(buffer)
