"""GAN objectives. Each loss computes, from D's logits, the discriminator's and the generator's
loss for one phase; the loop does the backward passes and optimizer steps.

Logits are cast to float32 before any loss so that mixed-precision runs keep full-precision
loss arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from productgan.config import LossConfig


class GANLoss:
    """Base class: ``discriminator(real_logits, fake_logits)`` and ``generator(fake_logits)``."""

    def __init__(self, config: LossConfig):
        self.config = config

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CrossEntropyLoss(GANLoss):
    """The standard GAN: D minimises binary cross-entropy; G uses the non-saturating loss
    -log D(G(z)), which keeps gradients alive when D wins early (Goodfellow et al. 2014)."""

    def discriminator(self, real_logits, fake_logits):
        real_target = torch.full_like(real_logits, self.config.label_smoothing, dtype=torch.float32)
        real = F.binary_cross_entropy_with_logits(real_logits.float(), real_target)
        fake = F.softplus(fake_logits.float()).mean()  # = BCE against 0
        return real + fake

    def generator(self, fake_logits):
        return F.softplus(-fake_logits.float()).mean()  # = BCE against 1


class LeastSquaresLoss(GANLoss):
    """LSGAN (Mao et al. 2017): mean squared error of D's raw output against 1 / 0 targets,
    the generator pulling its samples towards 1; halved, as in the paper's a-b-c = 0-1-1 form."""

    def discriminator(self, real_logits, fake_logits):
        real = (real_logits.float() - self.config.label_smoothing).pow(2).mean()
        fake = fake_logits.float().pow(2).mean()
        return 0.5 * (real + fake)

    def generator(self, fake_logits):
        return 0.5 * (fake_logits.float() - 1.0).pow(2).mean()


LOSSES: dict[str, type[GANLoss]] = {"bce": CrossEntropyLoss, "lsgan": LeastSquaresLoss}


def build_loss(config: LossConfig) -> GANLoss:
    return LOSSES[config.name](config)
