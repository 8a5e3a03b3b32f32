"""GAN objectives checked against formulas written out by hand in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from productgan.config import LossConfig
from productgan.losses import CrossEntropyLoss, LeastSquaresLoss, build_loss

REAL = [2.0, -1.0, 0.5, 30.0]
FAKE = [-3.0, 0.0, 1.5, -30.0]


def logits(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def log_sigmoid(x: float) -> float:
    # Stable by hand: log(1 / (1 + e^-x)).
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def bce_by_hand(logit_values, target: float) -> float:
    """mean of -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))."""
    return mean(-(target * log_sigmoid(x) + (1 - target) * log_sigmoid(-x)) for x in logit_values)


def test_cross_entropy_discriminator_matches_bce_against_one_and_zero():
    loss = CrossEntropyLoss(LossConfig(name="bce"))
    got = loss.discriminator(logits(REAL), logits(FAKE))
    expected = bce_by_hand(REAL, 1.0) + bce_by_hand(FAKE, 0.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The same thing through torch's own BCE with explicit 1 / 0 targets.
    torch_bce = F.binary_cross_entropy_with_logits(logits(REAL), torch.ones(4)) + F.binary_cross_entropy_with_logits(
        logits(FAKE), torch.zeros(4)
    )
    assert_close(got, torch_bce)
    assert got.shape == ()


def test_cross_entropy_generator_is_non_saturating():
    loss = CrossEntropyLoss(LossConfig(name="bce"))
    got = loss.generator(logits(FAKE))
    expected = mean(-log_sigmoid(x) for x in FAKE)  # -log D(G(z))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Not the saturating log(1 - D(G(z))) form, which is negative and flat when D wins.
    saturating = mean(log_sigmoid(-x) for x in FAKE)
    assert got.item() != pytest.approx(saturating, rel=1e-2)
    assert got.item() > 0


def test_label_smoothing_changes_only_the_real_target():
    plain = CrossEntropyLoss(LossConfig(name="bce", label_smoothing=1.0))
    smooth = CrossEntropyLoss(LossConfig(name="bce", label_smoothing=0.9))
    got = smooth.discriminator(logits(REAL), logits(FAKE))
    expected = bce_by_hand(REAL, 0.9) + bce_by_hand(FAKE, 0.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() != pytest.approx(plain.discriminator(logits(REAL), logits(FAKE)).item(), rel=1e-3)
    # The generator's loss does not use the smoothed target.
    assert smooth.generator(logits(FAKE)).item() == plain.generator(logits(FAKE)).item()


def test_least_squares_discriminator_and_generator():
    loss = LeastSquaresLoss(LossConfig(name="lsgan"))
    real, fake = [2.0, -1.0, 0.5, 1.0], [-3.0, 0.0, 1.5, 0.25]
    got_d = loss.discriminator(logits(real), logits(fake))
    expected_d = 0.5 * (mean((r - 1) ** 2 for r in real) + mean(f**2 for f in fake))
    assert got_d.item() == pytest.approx(expected_d, rel=1e-6)
    assert got_d.item() == pytest.approx(2.0703125, rel=1e-6)  # 0.5 * (5.25 / 4 + 11.3125 / 4)
    got_g = loss.generator(logits(fake))
    expected_g = 0.5 * mean((f - 1) ** 2 for f in fake)
    assert got_g.item() == pytest.approx(expected_g, rel=1e-6)
    assert got_g.item() == pytest.approx(2.2265625, rel=1e-6)  # 0.5 * 17.8125 / 4


def test_least_squares_label_smoothing_moves_the_real_target():
    loss = LeastSquaresLoss(LossConfig(name="lsgan", label_smoothing=0.9))
    real, fake = [2.0, -1.0], [0.5, -0.5]
    expected = 0.5 * (mean((r - 0.9) ** 2 for r in real) + mean(f**2 for f in fake))
    assert loss.discriminator(logits(real), logits(fake)).item() == pytest.approx(expected, rel=1e-6)


def test_perfect_least_squares_discriminator_has_zero_loss():
    loss = LeastSquaresLoss(LossConfig(name="lsgan"))
    assert loss.discriminator(torch.ones(3), torch.zeros(3)).item() == 0.0
    assert loss.generator(torch.ones(3)).item() == 0.0


@pytest.mark.parametrize("loss_class", [CrossEntropyLoss, LeastSquaresLoss])
def test_gradients_flow_back_to_the_logits(loss_class):
    loss = loss_class(LossConfig())
    real_values, fake_values = logits([2.0, -1.0, 0.5]), logits([-3.0, 0.7, 1.5])
    real = real_values.clone().requires_grad_()
    fake = fake_values.clone().requires_grad_()
    loss.discriminator(real, fake).backward()
    fake_for_g = fake_values.clone().requires_grad_()
    loss.generator(fake_for_g).backward()

    n = 3
    if loss_class is CrossEntropyLoss:
        expected_real = (torch.sigmoid(real_values) - 1) / n  # d/dx softplus(-x) = sigmoid(x) - 1
        expected_fake = torch.sigmoid(fake_values) / n  # d/dx softplus(x) = sigmoid(x)
        expected_g = -torch.sigmoid(-fake_values) / n
    else:
        expected_real = (real_values - 1) / n  # d/dx 0.5 * (x - 1)^2 = x - 1
        expected_fake = fake_values / n
        expected_g = (fake_values - 1) / n
    assert_close(real.grad, expected_real)
    assert_close(fake.grad, expected_fake)
    assert_close(fake_for_g.grad, expected_g)


def test_non_saturating_gradient_stays_alive_when_discriminator_wins():
    """At a confidently rejected fake (logit -30) the gradient is still about -1/n, not ~0."""
    fake = logits([-30.0]).requires_grad_()
    CrossEntropyLoss(LossConfig()).generator(fake).backward()
    assert fake.grad.item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("loss_class", [CrossEntropyLoss, LeastSquaresLoss])
def test_bfloat16_logits_give_float32_losses(loss_class):
    loss = loss_class(LossConfig(label_smoothing=0.9))
    real = logits(REAL).to(torch.bfloat16)
    fake = logits(FAKE).to(torch.bfloat16)
    d_loss, g_loss = loss.discriminator(real, fake), loss.generator(fake)
    assert d_loss.dtype == torch.float32 and g_loss.dtype == torch.float32
    # Same values as float32 logits holding the same (bf16-representable) numbers.
    assert_close(d_loss, loss.discriminator(real.float(), fake.float()))
    assert_close(g_loss, loss.generator(fake.float()))


def test_build_loss_picks_by_name():
    bce = build_loss(LossConfig(name="bce", label_smoothing=0.8))
    lsgan = build_loss(LossConfig(name="lsgan"))
    assert type(bce) is CrossEntropyLoss and bce.config.label_smoothing == 0.8
    assert type(lsgan) is LeastSquaresLoss
    assert type(build_loss(LossConfig())) is CrossEntropyLoss  # the default
    with pytest.raises(KeyError):
        build_loss(LossConfig(name="wasserstein"))


def test_hinge_and_wasserstein_values():
    from productgan.losses import HingeLoss, WassersteinLoss

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    hinge = HingeLoss(LossConfig(name="hinge"))
    assert hinge.discriminator(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.0) / 2)
    assert hinge.generator(fake).item() == pytest.approx(1.0)
    wgan = WassersteinLoss(LossConfig(name="wgan-gp"))
    assert wgan.discriminator(real, fake).item() == pytest.approx(-1.0 - 1.25)
    assert wgan.generator(fake).item() == pytest.approx(1.0)


def test_gradient_penalties_of_a_linear_critic():
    from productgan.losses import gradient_penalty, r1_penalty

    # D(x) = sum(w * x): its input gradient is w everywhere, so both penalties are known exactly.
    weight = torch.full((1, 1, 2, 2), 0.25)  # ||w|| = 0.5

    def critic(x):
        return (x * weight).flatten(1).sum(1)

    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((0.5 - 1.0) ** 2)
    assert r1_penalty(critic, real).item() == pytest.approx(0.25)


def test_penalties_of_a_packing_critic_are_per_pack():
    """A packing D is penalised as the plain D on the stacked packs would be: one interpolation
    point and one gradient norm per pack, not per image."""
    from productgan.config import ModelConfig
    from productgan.losses import gradient_penalty, r1_penalty
    from productgan.models import Discriminator, init_weights
    from productgan.models.dcgan import pack_images

    torch.manual_seed(0)
    packed = Discriminator(ModelConfig(ndf=4, d_norm="none", d_pack=2), 32, 1)
    init_weights(packed)
    plain = Discriminator(ModelConfig(ndf=4, d_norm="none"), 32, 2)
    plain.load_state_dict(packed.state_dict())
    real, fake = torch.randn(8, 1, 32, 32), torch.randn(8, 1, 32, 32)
    expected_gp = gradient_penalty(plain, pack_images(real, 2), pack_images(fake, 2), torch.Generator().manual_seed(3))
    actual_gp = gradient_penalty(packed, real, fake, torch.Generator().manual_seed(3), pack=2)
    assert actual_gp.item() == pytest.approx(expected_gp.item(), rel=1e-5)
    expected_r1 = r1_penalty(plain, pack_images(real, 2))
    assert r1_penalty(packed, real, pack=2).item() == pytest.approx(expected_r1.item(), rel=1e-5)
    # Per image, R1 would be half as large: the same squared gradients averaged over twice the samples.
    assert r1_penalty(packed, real).item() == pytest.approx(expected_r1.item() / 2, rel=1e-5)


def test_mode_seeking_term_is_the_inverse_ratio_of_image_to_latent_gaps():
    from productgan.losses import mode_seeking

    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, -1.0]])  # pairs (0, 1), (2, 3): |dz| = 1 on average
    images = torch.zeros(4, 1, 2, 2)
    images[1] += 0.5
    images[3] -= 0.5  # |dx| = 0.5 in both pairs
    assert mode_seeking(images, z, None).item() == pytest.approx(1 / (0.5 + 1e-5))
    # Images closer together score worse, and a gradient step on the term moves them apart.
    close = (images * 0.2).requires_grad_(True)
    term = mode_seeking(close, z, None)
    assert term.item() > mode_seeking(images, z, None).item()
    (grad,) = torch.autograd.grad(term, close)
    moved = close.detach() - 0.01 * grad
    assert (moved[1] - moved[0]).abs().mean() > (close[1] - close[0]).abs().mean()


def test_mode_seeking_pairs_a_conditional_batch_within_classes():
    """Each class draws one image whatever z is: within a class the images do not vary, so the
    term is at its largest, though neighbours in the batch (of different classes) differ."""
    from productgan.losses import mode_seeking

    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    images = labels.float().view(6, 1, 1, 1).expand(6, 1, 4, 4)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    assert mode_seeking(images, z, labels).item() > 1e4
    assert mode_seeking(images, z, None).item() < 10
