"""The evaluator network: a compact CNN classifier whose penultimate layer gives the features.

The evaluator sees exactly what users get: images at the dataset's NATIVE size (28x28 for
Fashion-MNIST), as uint8 pixels.

Input normalisation: ``EvaluatorNet`` takes pixel values on the 0..255 scale, either a uint8
tensor or a float tensor holding the same values. It divides by 255 and then standardises each
channel with the mean and standard deviation of the training images (stored as buffers, so they
travel with the weights).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from productgan.errors import ProductganError
from productgan.evaluator.config import DEFAULT_CONFIG


def no_labels_error(num_classes: int) -> ProductganError:
    return ProductganError(
        f"The dataset has {num_classes} class(es), but evaluation needs class labels (at least "
        f"2 classes) to train productgan's evaluator; prepare a labelled dataset (one subfolder "
        f"per class)."
    )


def as_uint8_images(images, what: str = "images") -> torch.Tensor:
    """``images`` (numpy or torch) as a uint8 tensor N x C x H x W, or one sentence saying why not."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        shape = tuple(getattr(images, "shape", ()))
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ProductganError(
            f"The {what} must be a uint8 array N x C x H x W, not {dtype} {shape}; convert them "
            f"with productgan's sampler or the packed dataset."
        )
    return images


def working_size(native_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size the network computes at: native, or scaled down so the longer side is max_side.

    Small images are used pixel for pixel; global average pooling makes the network work at any
    size, so there is no reason to pad or blur them. Large product photos are downscaled (with
    antialiasing) only to bound the cost.
    """
    height, width = (int(s) for s in native_size)
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


class EvaluatorNet(nn.Module):
    """uint8-scale images (N x C x H x W at native size) -> logits N x K; ``features`` -> N x F.

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        num_classes: Classes of the labelled dataset (2 or more).
        native_size: (height, width) of the images it accepts.
        widths: Channels of the conv stages; each stage but the last ends in a 2x2 max pool.
        feature_dim: Width of the penultimate (feature) layer.
        max_side: Longer side above which inputs are downscaled before the first conv.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        native_size: tuple[int, int] | list[int],
        widths: tuple[int, ...] | list[int] = DEFAULT_CONFIG.widths,
        feature_dim: int = DEFAULT_CONFIG.feature_dim,
        max_side: int = DEFAULT_CONFIG.max_side,
    ):
        super().__init__()
        if num_classes < 2:
            raise no_labels_error(num_classes)
        self.config = {
            "in_channels": int(in_channels),
            "num_classes": int(num_classes),
            "native_size": [int(s) for s in native_size],
            "widths": [int(w) for w in widths],
            "feature_dim": int(feature_dim),
            "max_side": int(max_side),
        }
        self.native_size = tuple(self.config["native_size"])
        self.working_size = working_size(self.native_size, max_side)
        # Filled from the training images by train_evaluator; identity until then.
        self.register_buffer("pixel_mean", torch.zeros(in_channels))
        self.register_buffer("pixel_std", torch.ones(in_channels))

        layers: list[nn.Module] = []
        channels = in_channels
        for stage, width in enumerate(widths):
            # (channels) x h x w -> (width) x h x w; BatchNorm makes the short, high-lr schedule
            # stable, so the conv needs no bias.
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if stage < len(widths) - 1:
                # (width) x h x w -> (width) x h/2 x w/2
                layers.append(nn.MaxPool2d(2))
            channels = width
        # With the defaults on 28x28 Fashion-MNIST: 32x28x28 -> 64x14x14 -> 128x7x7 -> 256x3x3.
        self.trunk = nn.Sequential(*layers)
        # (widths[-1]) x h' x w' -> (widths[-1]); global average pooling makes the net work at
        # any input size.
        self.pool = nn.AdaptiveAvgPool2d(1)
        # (widths[-1]) -> (feature_dim): the penultimate layer whose activations are the features.
        self.embed = nn.Sequential(
            nn.Linear(channels, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.2)
        # (feature_dim) -> (num_classes)
        self.head = nn.Linear(feature_dim, num_classes)
        # channels_last convolutions are faster on CPU. Fixing the layout here, not where the net
        # is used, means a trained and a reloaded evaluator run the very same kernels and so
        # give bit-identical features.
        self.to(memory_format=torch.channels_last)

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if (
            images.ndim != 4
            or images.shape[1] != self.config["in_channels"]
            or tuple(images.shape[-2:]) != self.native_size
        ):
            expected = "x".join(map(str, (self.config["in_channels"], *self.native_size)))
            raise ProductganError(
                f"The evaluator takes N x {expected} images (the dataset's native size), not "
                f"{tuple(images.shape)}; sample with size='native'."
            )
        x = images.float() / 255.0
        if self.working_size != self.native_size:
            x = F.interpolate(x, size=self.working_size, mode="bilinear", antialias=True, align_corners=False)
        mean = self.pixel_mean.view(1, -1, 1, 1)
        std = self.pixel_std.view(1, -1, 1, 1)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, N x feature_dim (float32)."""
        return self.embed(self.pool(self.trunk(self._prepare(images))).flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, N x num_classes."""
        return self.head(self.dropout(self.features(images)))
