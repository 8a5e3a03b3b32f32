"""DCGAN generator and discriminator (Radford, Metz & Chintala 2015) for any power-of-two size.

Both networks are built from a ``ModelConfig`` plus the image geometry, so an exported generator
rebuilds from its ``config.json`` alone. Widths follow the paper's pattern (double the channels
each time the resolution halves) but stop growing at 8x the base width, which keeps 128 and 256
pixel models at a sensible size.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from productgan.config import ModelConfig, check_image_size, check_pack
from productgan.errors import UsageError

MAX_WIDTH_MULTIPLIER = 8


def _multipliers(image_size: int) -> list[int]:
    """Width multipliers of the hidden stages from 4x4 up to image_size/2 (generator order)."""
    check_image_size(image_size)
    stages = int(math.log2(image_size)) - 2  # 4x4, 8x8, ..., (image_size/2)^2
    return [min(2 ** (stages - 1 - i), MAX_WIDTH_MULTIPLIER) for i in range(stages)]


def make_activation(name: str, leaky_slope: float) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(leaky_slope, inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}")


def check_num_classes(config: ModelConfig, num_classes: int) -> int:
    """The number of classes a conditional model needs (two or more), or 0 for an unconditional one."""
    if not config.conditional:
        return 0
    if num_classes < 2:
        raise UsageError(
            f"A class-conditional model needs a dataset with two or more classes, not {num_classes}; "
            f"drop --model.conditional or prepare the dataset with one sub-folder per class."
        )
    return int(num_classes)


class ClassModulation(nn.Module):
    """Class-conditional gain and bias on a feature map (as in conditional BatchNorm, de Vries et
    al. 2017; Miyato & Koyama 2018): x * (1 + gain[y]) + bias[y], per channel.

    Both tables start at zero, so a new conditional generator behaves like an unconditional one
    and the classes grow in as training finds them. (Appending a class embedding to z instead
    made the generator collapse to one image per class within a few hundred steps here.)
    """

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.table = nn.Embedding(num_classes, 2 * channels)  # (N) labels -> (N) x [gain | bias]
        nn.init.zeros_(self.table.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``labels``: class indices (N), or class weights (N x classes, float) that blend the
        classes' gains and biases, as a walk from one category to another does."""
        rows = (
            labels.to(self.table.weight.dtype) @ self.table.weight if labels.is_floating_point() else self.table(labels)
        )
        gain, bias = rows.to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gain) + bias


class LatentProjection(nn.ConvTranspose2d):
    """The generator's first layer, (nz) x 1 x 1 -> (C) x k x k: a transposed convolution of a
    1 x 1 input, which is one matrix product. Computed as that product it has the same
    parameters and result, and its forward and backward run about 3x faster on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, k = x.shape[0], self.kernel_size[0]
        weight = self.weight  # (nz) x C x k x k
        exact = not self.training and x.dtype == torch.float32 and not torch.onnx.is_in_onnx_export()
        if exact:
            # A matrix product's rounding depends on how many rows it has (BLAS takes other kernels
            # for a few rows), so an image made alone could differ in a pixel from the same image
            # made in a batch. In float64 that difference stays below float32's rounding: an image
            # has the same pixels in any batch, as its name promises (explore/names.py).
            x, weight = x.double(), weight.double()
        if weight.is_contiguous():
            out = (x.reshape(n, -1) @ weight.reshape(weight.shape[0], -1)).view(n, -1, k, k)
        else:  # a channels-last model: produce channels-last output, as the convolution would
            flat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
            out = (x.reshape(n, -1) @ flat).view(n, k, k, -1).permute(0, 3, 1, 2)
        if exact:
            out = out.float()
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1).to(out.dtype)


class Generator(nn.Module):
    """z (N x nz) [+ class labels (N), or class weights (N x classes)] -> image (N x C x S x S) in
    the output activation's range.

    A conditional generator (``config.conditional``) modulates every hidden stage with a
    class-specific gain and bias (``ClassModulation``) after its normalisation.
    """

    def __init__(self, config: ModelConfig, image_size: int = 32, channels: int = 1, num_classes: int = 0):
        super().__init__()
        self.config, self.image_size, self.channels = config, image_size, channels
        self.num_classes = check_num_classes(config, num_classes)
        mults = _multipliers(image_size)
        use_bn = config.g_norm == "batch"
        layers: list[nn.Module] = []
        in_ch = config.nz
        for i, mult in enumerate(mults):
            out_ch = config.ngf * mult
            if i == 0:
                # (nz) x 1 x 1 -> (ngf*mult) x 4 x 4
                layers.append(LatentProjection(in_ch, out_ch, 4, 1, 0, bias=not use_bn))
            else:
                # (ngf*prev) x s x s -> (ngf*mult) x 2s x 2s
                layers.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=not use_bn))
            if use_bn:
                layers.append(nn.BatchNorm2d(out_ch))
            if self.num_classes:
                layers.append(ClassModulation(self.num_classes, out_ch))
            layers.append(make_activation(config.g_activation, config.leaky_slope))
            in_ch = out_ch
        # (ngf) x S/2 x S/2 -> (channels) x S x S
        layers.append(nn.ConvTranspose2d(in_ch, channels, 4, 2, 1, bias=True))
        layers.append(make_activation(config.g_output, config.leaky_slope))
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = z.view(z.shape[0], -1, 1, 1)
        if not self.num_classes:
            return self.main(x)
        if labels is None:
            raise ValueError("this generator is class-conditional: pass the class labels")
        for layer in self.main:
            x = layer(x, labels) if isinstance(layer, ClassModulation) else layer(x)
        return x


def pack_images(x: torch.Tensor, pack: int) -> torch.Tensor:
    """N x C x H x W -> (N / pack) x (pack * C) x H x W: image i joins pack i mod (N / pack), so
    each pack spans the batch. (A channels-last discriminator still runs channels-last: the
    convolution follows its weights' layout.)"""
    n, c, h, w = x.shape
    if n % pack:
        raise ValueError(f"a batch of {n} images does not split into packs of {pack}")
    return x.reshape(pack, n // pack, c, h, w).transpose(0, 1).reshape(n // pack, pack * c, h, w)


class Discriminator(nn.Module):
    """image (N x C x S x S) [+ class labels (N)] -> logit (N); D(x) = sigmoid(logit) is the
    probability of 'real'.

    A conditional discriminator adds a projection term (Miyato & Koyama 2018): the inner product
    of a learned class embedding with the last stage's features summed over space. An image
    whose label is negative (one without a category, in a mixed-label training split) gets no
    projection term: the unconditional part alone judges it.

    With ``config.d_pack`` = P > 1 (PacGAN) D takes N images and returns N / P logits, one per
    pack of P images (``pack_images``); a conditional one adds up the embeddings of a pack's
    classes.
    """

    def __init__(self, config: ModelConfig, image_size: int = 32, channels: int = 1, num_classes: int = 0):
        super().__init__()
        self.config, self.image_size, self.channels = config, image_size, channels
        self.num_classes = check_num_classes(config, num_classes)
        mults = list(reversed(_multipliers(image_size)))
        use_bn = config.d_norm == "batch"
        spectral = config.d_norm == "spectral"

        def conv(in_ch: int, out_ch: int, stride: int, padding: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(in_ch, out_ch, 4, stride, padding, bias=bias)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer

        self.pack = check_pack(config.d_pack)
        layers: list[nn.Module] = []
        in_ch = channels * self.pack
        for i, mult in enumerate(mults):
            out_ch = config.ndf * mult
            # (in_ch) x s x s -> (ndf*mult) x s/2 x s/2; no norm on the first stage, as in the paper
            norm_here = use_bn and i > 0
            layers.append(conv(in_ch, out_ch, 2, 1, bias=not norm_here))
            if norm_here:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(make_activation(config.d_activation, config.leaky_slope))
            in_ch = out_ch
        # (ndf*mult) x 4 x 4 -> 1 x 1 x 1
        layers.append(conv(in_ch, 1, 1, 0, bias=True))
        self.main = nn.Sequential(*layers)
        self.embed = None
        if self.num_classes:
            # (N) labels -> (N) x (ndf*mult), Glorot-initialised as in the projection paper's code
            embed = nn.Embedding(self.num_classes, in_ch)
            nn.init.xavier_uniform_(embed.weight)
            self.embed = nn.utils.parametrizations.spectral_norm(embed) if spectral else embed

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.pack > 1:
            x = pack_images(x, self.pack)
        if self.embed is None:
            return self.main(x).flatten()
        if labels is None:
            raise ValueError("this discriminator is class-conditional: pass the class labels")
        *body, head = self.main
        for layer in body:
            x = layer(x)
        known = (labels >= 0).unsqueeze(1)
        embedded = self.embed(labels.clamp(min=0)) * known  # x * 1 is x: labelled data is unchanged
        if self.pack > 1:  # a pack's classes, added up, in the packs' order
            embedded = embedded.view(self.pack, -1, embedded.shape[1]).sum(dim=0)
        # (N) x (ndf*mult) x 4 x 4 -> logit (N) + <embed(y), sum over space>
        projection = (embedded.to(x.dtype) * x.sum(dim=(2, 3))).sum(dim=1)
        return head(x).flatten() + projection


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@contextmanager
def eval_mode(module: nn.Module):
    """``module`` in eval mode inside the block (BatchNorm uses its running statistics and does
    not update them), back in the mode it had afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
