"""GAN objectives. Each loss computes, from D's logits, the discriminator's and the generator's
loss for one phase; the loop does the backward passes and optimizer steps.

Logits are cast to float32 before any loss so that mixed-precision runs keep full-precision
loss arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from productgan.config import LossConfig
from productgan.models.dcgan import pack_images


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


class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D pushes real logits above 1 and fake
    logits below -1; G raises D's score of its samples."""

    def discriminator(self, real_logits, fake_logits):
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()

    def generator(self, fake_logits):
        return -fake_logits.float().mean()


class WassersteinLoss(GANLoss):
    """Wasserstein loss (Arjovsky et al. 2017) for a critic kept 1-Lipschitz by the gradient
    penalty (Gulrajani et al. 2017), which the loop adds with ``gradient_penalty``."""

    def discriminator(self, real_logits, fake_logits):
        return fake_logits.float().mean() - real_logits.float().mean()

    def generator(self, fake_logits):
        return -fake_logits.float().mean()


def gradient_penalty(
    critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None, pack: int = 1
) -> torch.Tensor:
    """WGAN-GP: (||grad_x D(x_hat)|| - 1)^2 at random points between real and fake images. For
    a packing critic (PacGAN) the points and norms are per pack, its input being the pack."""
    n = real.shape[0]
    alpha = torch.rand(n // pack, 1, 1, 1, device=real.device, generator=generator).repeat(pack, 1, 1, 1)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed).float()
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (_per_sample(grad, pack).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(discriminator, real: torch.Tensor, pack: int = 1) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the squared gradient norm of D on real images (on packs of
    them for a packing D), which keeps D from growing steep around the data. Scaled by gamma / 2
    in the loop."""
    real = real.detach().requires_grad_(True)
    scores = discriminator(real).float()
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return _per_sample(grad, pack).pow(2).sum(dim=1).mean()


def mode_seeking(images: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The mode-seeking term (Mao et al. 2019) for G to minimise: the inverse of how far apart a
    batch's images lie for how far apart their latent vectors do, both as mean absolute
    differences over pairs. A conditional batch is paired within classes (sorted by class,
    neighbours paired) so that the term asks for variety inside a category, not between them.
    Nothing here reads a value back from the device."""
    if labels is None:
        order = torch.arange(images.shape[0], device=images.device)
    else:
        order = torch.argsort(labels, stable=True)
    pairs = order[: order.shape[0] // 2 * 2].view(-1, 2)  # an odd batch leaves its last image out
    first, second = pairs[:, 0], pairs[:, 1]
    image_gap = (images[first].float() - images[second].float()).abs().mean()
    z_gap = (z[first].float() - z[second].float()).abs().mean()
    return 1.0 / (image_gap / z_gap + 1e-5)


def _per_sample(grad: torch.Tensor, pack: int) -> torch.Tensor:
    """Input gradients (N x ...) flattened per D sample: per image, or per pack of ``pack``."""
    return (pack_images(grad, pack) if pack > 1 else grad).flatten(1)


LOSSES: dict[str, type[GANLoss]] = {
    "bce": CrossEntropyLoss,
    "lsgan": LeastSquaresLoss,
    "hinge": HingeLoss,
    "wgan-gp": WassersteinLoss,
}


def build_loss(config: LossConfig) -> GANLoss:
    return LOSSES[config.name](config)


def penalties(
    critic, real: torch.Tensor, fake: torch.Tensor, config: LossConfig, step: int, generator: torch.Generator, pack: int
) -> torch.Tensor | float:
    """The gradient penalties ``config`` asks for at ``step``, weighted: WGAN-GP's on every
    step, R1 on every ``r1_every``-th step scaled up to match (lazy regularisation)."""
    total: torch.Tensor | float = 0.0
    if config.name == "wgan-gp":
        total = total + config.gp_weight * gradient_penalty(critic, real, fake, generator, pack)
    if config.r1_gamma > 0 and step % config.r1_every == 0:
        total = total + 0.5 * config.r1_gamma * config.r1_every * r1_penalty(critic, real, pack)
    return total
