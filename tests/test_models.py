"""DCGAN generator and discriminator: shapes, layers chosen by the config, initialisation."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close
from torch import nn
from torch.nn.utils import parametrize

from productgan.config import ModelConfig
from productgan.models import Discriminator, Generator, check_image_size, init_weights
from productgan.models.dcgan import LatentProjection

SIZES = [32, 64, 128, 256]
NZ = 16  # a short z keeps the 256-pixel models quick; the width pattern does not depend on it


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"nz": NZ, "ngf": 4, "ndf": 4, **overrides})


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def modules_of(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", SIZES)
def test_generator_output_shape(image_size, channels):
    torch.manual_seed(0)
    generator = Generator(tiny(), image_size, channels).eval()
    with torch.no_grad():
        images = generator(torch.randn(2, NZ))
    assert images.shape == (2, channels, image_size, image_size)
    assert images.dtype == torch.float32


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", SIZES)
def test_discriminator_gives_one_logit_per_image(image_size, channels):
    torch.manual_seed(0)
    discriminator = Discriminator(tiny(), image_size, channels).eval()
    with torch.no_grad():
        logits = discriminator(torch.randn(2, channels, image_size, image_size))
        single = discriminator(torch.randn(1, channels, image_size, image_size))
    assert logits.shape == (2,)
    assert single.shape == (1,)


def test_generator_accepts_z_as_a_column_image():
    """z may come as N x nz or N x nz x 1 x 1 (the paper's layout); both give the same images."""
    torch.manual_seed(0)
    generator = Generator(tiny(), 32, 1).eval()
    z = torch.randn(2, NZ)
    with torch.no_grad():
        assert torch.equal(generator(z), generator(z.view(2, NZ, 1, 1)))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_latent_projection_is_the_transposed_convolution_it_replaces(bias, channels_last):
    torch.manual_seed(0)
    layer = LatentProjection(NZ, 8, 4, 1, 0, bias=bias)
    nn.init.normal_(layer.weight)
    if bias:
        nn.init.normal_(layer.bias)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
    z = torch.randn(5, NZ, 1, 1, requires_grad=True)
    out = layer(z)
    expected = nn.functional.conv_transpose2d(z, layer.weight, layer.bias)
    assert out.shape == (5, 8, 4, 4)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert_close(out, expected, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [z, layer.weight])
    expected_grads = torch.autograd.grad(expected.square().sum(), [z, layer.weight])
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, atol=1e-4)


@pytest.mark.parametrize("image_size", SIZES)
def test_widths_double_per_halving_and_stop_at_eight_times(image_size):
    config = tiny(ngf=4, ndf=4)
    stages = {32: [4, 2, 1], 64: [8, 4, 2, 1], 128: [8, 8, 4, 2, 1], 256: [8, 8, 8, 4, 2, 1]}
    mults = stages[image_size]
    g_widths = [m.out_channels for m in modules_of(Generator(config, image_size, 3), nn.ConvTranspose2d)]
    d_widths = [m.out_channels for m in modules_of(Discriminator(config, image_size, 3), nn.Conv2d)]
    assert g_widths == [4 * m for m in mults] + [3]
    assert d_widths == [4 * m for m in reversed(mults)] + [1]


def _saturate_last_layer(generator: Generator) -> None:
    """Scale the final convolution so its pre-activations reach far outside [-1, 1]."""
    last_conv = modules_of(generator, nn.ConvTranspose2d)[-1]
    with torch.no_grad():
        last_conv.weight.mul_(1000.0)


def test_tanh_output_stays_in_minus_one_to_one():
    torch.manual_seed(0)
    generator = Generator(tiny(g_output="tanh"), 32, 1).eval()
    _saturate_last_layer(generator)
    with torch.no_grad():
        images = generator(torch.randn(4, NZ))
    assert isinstance(generator.main[-1], nn.Tanh)
    assert images.min() >= -1.0 and images.max() <= 1.0
    # The weights really do overshoot: without the tanh some values would lie outside.
    assert images.min() < -0.99 and images.max() > 0.99


def test_sigmoid_output_stays_in_zero_to_one():
    torch.manual_seed(0)
    generator = Generator(tiny(g_output="sigmoid"), 32, 1).eval()
    _saturate_last_layer(generator)
    with torch.no_grad():
        images = generator(torch.randn(4, NZ))
    assert isinstance(generator.main[-1], nn.Sigmoid)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.min() < 0.01 and images.max() > 0.99


def test_generator_batch_norm_by_default_and_none_when_asked():
    with_bn = Generator(tiny(), 64, 1)
    without = Generator(tiny(g_norm="none"), 64, 1)
    assert len(modules_of(with_bn, nn.BatchNorm2d)) == 4  # one per hidden stage
    assert modules_of(without, nn.BatchNorm2d) == []
    # Without a norm to absorb it, every convolution needs its bias.
    assert all(c.bias is not None for c in modules_of(without, nn.ConvTranspose2d))
    hidden = modules_of(with_bn, nn.ConvTranspose2d)[:-1]
    assert all(c.bias is None for c in hidden)


def test_discriminator_first_stage_has_no_batch_norm():
    discriminator = Discriminator(tiny(d_norm="batch"), 64, 1)
    main = list(discriminator.main)
    assert isinstance(main[0], nn.Conv2d) and main[0].bias is not None
    assert isinstance(main[1], nn.LeakyReLU)
    # Stages 2..4 are conv -> BN -> activation; 64 px has four stages, so three BatchNorms.
    assert len(modules_of(discriminator, nn.BatchNorm2d)) == 3
    for index, layer in enumerate(main[2:-1], start=2):
        if isinstance(layer, nn.Conv2d):
            assert isinstance(main[index + 1], nn.BatchNorm2d)
            assert layer.bias is None


def test_discriminator_without_norm_has_no_batch_norm_and_plain_convs():
    discriminator = Discriminator(tiny(d_norm="none"), 32, 1)
    assert modules_of(discriminator, nn.BatchNorm2d) == []
    convs = modules_of(discriminator, nn.Conv2d)
    assert not any(parametrize.is_parametrized(c) for c in convs)


def test_discriminator_spectral_norm_wraps_every_conv_and_drops_batch_norm():
    torch.manual_seed(0)
    discriminator = Discriminator(tiny(d_norm="spectral"), 32, 1)
    init_weights(discriminator)
    assert modules_of(discriminator, nn.BatchNorm2d) == []
    convs = modules_of(discriminator, nn.Conv2d)
    assert len(convs) == 4
    for conv in convs:
        assert parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    # init_weights draws the originals with spectral norms far below one; the power iteration
    # run on each training-mode forward rescales each effective weight (by one scalar) towards
    # a largest singular value of one.
    originals = [conv.parametrizations.weight.original.detach().flatten(1) for conv in convs]
    assert all(torch.linalg.matrix_norm(w, ord=2).item() < 0.5 for w in originals)
    discriminator.train()
    with torch.no_grad():
        for _ in range(3):
            discriminator(torch.randn(2, 1, 32, 32))
    discriminator.eval()
    for conv, original in zip(convs, originals):
        effective = conv.weight.detach().flatten(1)
        ratio = effective / original
        assert_close(ratio, ratio.flatten()[0].expand_as(ratio))
        sigma = torch.linalg.matrix_norm(effective, ord=2).item()
        assert 0.99 < sigma < 1.2


def test_init_weights_follows_the_paper():
    torch.manual_seed(0)
    config = ModelConfig(nz=100, ngf=8, ndf=8)
    generator = Generator(config, 32, 1)
    discriminator = Discriminator(config, 32, 1)
    # ConvTranspose2d(100, 32, 4): 51,200 weights, enough for a tight estimate of the spread.
    wide_g = modules_of(generator, nn.ConvTranspose2d)[0]
    # Conv2d(16, 32, 4): 8,192 weights.
    wide_d = modules_of(discriminator, nn.Conv2d)[2]
    assert wide_g.weight.numel() == 51_200 and wide_d.weight.numel() == 8_192
    # PyTorch's default init is not already N(0, 0.02), so this test can fail.
    assert abs(wide_g.weight.std().item() - 0.02) > 0.005

    init_weights(generator)
    init_weights(discriminator)

    assert wide_g.weight.std().item() == pytest.approx(0.02, abs=5e-4)
    assert wide_g.weight.mean().item() == pytest.approx(0.0, abs=5e-4)
    assert wide_d.weight.std().item() == pytest.approx(0.02, abs=1e-3)
    for module in (generator, discriminator):
        norms = modules_of(module, nn.BatchNorm2d)
        assert norms
        scales = torch.cat([bn.weight.detach() for bn in norms])
        assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
        assert (scales - 1.0).abs().max().item() < 0.1  # N(1, 0.02): 5 sigma
        assert all(torch.count_nonzero(bn.bias) == 0 for bn in norms)
        for conv in modules_of(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if conv.bias is not None:
                assert torch.count_nonzero(conv.bias) == 0


def test_init_weights_reaches_spectral_norm_originals():
    torch.manual_seed(0)
    discriminator = Discriminator(ModelConfig(ndf=8, d_norm="spectral"), 32, 1)
    init_weights(discriminator)
    original = modules_of(discriminator, nn.Conv2d)[2].parametrizations.weight.original
    assert original.numel() == 8_192
    assert original.std().item() == pytest.approx(0.02, abs=1e-3)


@pytest.mark.parametrize("bad_size", [16, 48, 512, 0, 33])
def test_bad_image_sizes_raise(bad_size):
    with pytest.raises(ValueError, match="power of two from 32 to 256"):
        check_image_size(bad_size)
    with pytest.raises(ValueError, match=f"got {bad_size}"):
        Generator(tiny(), bad_size, 1)
    with pytest.raises(ValueError, match=f"got {bad_size}"):
        Discriminator(tiny(), bad_size, 1)


def test_hidden_activations_are_selectable_and_slope_is_honoured():
    config = tiny(g_activation="leaky_relu", d_activation="relu", leaky_slope=0.1)
    generator = Generator(config, 32, 1)
    discriminator = Discriminator(config, 32, 1)
    g_leaky = modules_of(generator, nn.LeakyReLU)
    assert len(g_leaky) == 3 and all(a.negative_slope == 0.1 for a in g_leaky)
    assert modules_of(generator, nn.ReLU) == []
    assert len(modules_of(discriminator, nn.ReLU)) == 3
    assert modules_of(discriminator, nn.LeakyReLU) == []

    defaults = tiny(leaky_slope=0.3)
    assert len(modules_of(Generator(defaults, 32, 1), nn.ReLU)) == 3
    d_leaky = modules_of(Discriminator(defaults, 32, 1), nn.LeakyReLU)
    assert len(d_leaky) == 3 and all(a.negative_slope == 0.3 for a in d_leaky)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        Generator(tiny(g_activation="gelu"), 32, 1)


def test_parameter_counts_are_exact_and_grow_with_width():
    config = ModelConfig(nz=100, ngf=8, ndf=8)
    # G: ConvT(100,32) 51200 + BN 64 + ConvT(32,16) 8192 + BN 32 + ConvT(16,8) 2048 + BN 16
    #    + ConvT(8,1)+bias 129
    assert count_params(Generator(config, 32, 1)) == 61_681
    # D: Conv(1,8)+bias 136 + Conv(8,16) 2048 + BN 32 + Conv(16,32) 8192 + BN 64 + Conv(32,1)+bias 513
    assert count_params(Discriminator(config, 32, 1)) == 10_985
    g_counts = [count_params(Generator(ModelConfig(ngf=w), 32, 1)) for w in (4, 8, 16)]
    d_counts = [count_params(Discriminator(ModelConfig(ndf=w), 32, 1)) for w in (4, 8, 16)]
    assert g_counts[0] < g_counts[1] < g_counts[2]
    assert d_counts[0] < d_counts[1] < d_counts[2]


def test_same_seed_builds_identical_networks():
    def build():
        torch.manual_seed(5)
        generator = Generator(tiny(), 32, 1)
        init_weights(generator)
        return generator.state_dict()

    first, second = build(), build()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_packed_discriminator_judges_each_pack_as_one_stacked_image():
    """With d_pack 2, D's logit k is the logit an unpacked D with twice the input channels (same
    weights) gives images k and k + N/2 stacked along the channels; no other image reaches it."""
    from productgan.models.dcgan import pack_images

    torch.manual_seed(0)
    packed = Discriminator(tiny(d_pack=2), 32, 3).eval()
    init_weights(packed)
    plain = Discriminator(tiny(), 32, 6).eval()
    plain.load_state_dict(packed.state_dict())
    x = torch.randn(8, 3, 32, 32)
    stacked = torch.stack([torch.cat([x[k], x[k + 4]]) for k in range(4)])
    assert torch.equal(pack_images(x, 2), stacked)
    with torch.no_grad():
        logits = packed(x)
        assert logits.shape == (4,)
        assert_close(logits, plain(stacked))
        changed = x.clone()
        changed[5] += 1.0  # image 5 is in pack 1 (with image 1)
        moved = packed(changed) != logits
    assert moved.tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="does not split into packs of 2"):
        packed(x[:7])


def test_packed_conditional_discriminator_adds_up_the_classes_of_a_pack():
    torch.manual_seed(0)
    discriminator = Discriminator(tiny(d_pack=2, conditional=True), 32, 1, num_classes=10).eval()
    x = torch.randn(4, 1, 32, 32)
    labels = torch.tensor([1, 2, 3, 4])  # packs (1, 3) and (2, 4)
    with torch.no_grad():
        logits = discriminator(x, labels)
        # Which image of a pack has which class does not matter: the classes are added up.
        assert_close(discriminator(x, torch.tensor([3, 2, 1, 4])), logits)
        other = discriminator(x, torch.tensor([1, 2, 5, 4]))
    assert other[0] != logits[0] and other[1] == logits[1]
    assert discriminator.embed.weight.shape == (10, 4 * 4)  # the embedding is per image, not per pack


def test_pack_of_less_than_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Discriminator(tiny(d_pack=0), 32, 1)


@pytest.mark.parametrize("nz, ngf", [(8, 4), (100, 32)])
def test_an_image_made_alone_is_the_same_image_made_in_a_batch(nz, ngf):
    """A matrix product of a few rows rounds otherwise than one of many (BLAS takes other kernels),
    so the first layer of a generator in eval mode runs in float64: row i alone gives exactly row i of
    any batch, which is what makes an image's name give the same pixels everywhere."""
    torch.manual_seed(0)
    generator = Generator(ModelConfig(nz=nz, ngf=ngf, conditional=True), 32, 1, num_classes=10).eval()
    init_weights(generator)
    z, labels = torch.randn(64, nz), torch.arange(64) % 10
    with torch.no_grad():
        batch = generator.main[0](z.view(64, nz, 1, 1))
        for i in range(8):
            alone = generator.main[0](z[i : i + 1].view(1, nz, 1, 1))
            assert torch.equal(alone[0], batch[i]), i
        images = generator(z, labels)
        assert all(torch.equal(generator(z[i : i + 1], labels[i : i + 1])[0], images[i]) for i in range(8))
