"""The Inception-v3 of the FID literature, for users who have its weights file.

The standard FID and KID (Heusel et al. 2017; Bińkowski et al. 2018) use the 2048-dimensional
pool features of the Inception-v3 that TensorFlow trained in 2015, known in PyTorch as the file
``pt_inception-2015-12-05-6726825d.pth``. productgan cannot download it, so nothing here runs
unless the user passes that file (``productgan evaluate --inception-weights PATH``). The network
is built here from its published structure, with the FID variant's differences: average pools
that ignore padding, and a max pool in the last block. Images are turned into RGB, resized
bilinearly to 299x299 and scaled to -1..1 before the network, as in the reference port.

Only a file whose SHA-256 begins with ``6726825d`` (the hash in its name) gives numbers that
compare with published ones; any other file that fits the architecture is used but flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from productgan.checkpoint import load_failure, refused_for_safety
from productgan.errors import ProductganError
from productgan.files import file_sha256

STANDARD_SHA256_PREFIX = "6726825d"
FEATURE_DIM = 2048
INPUT_SIZE = 299


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001), ReLU: Inception's basic unit."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, whose border averages ignore the padding (TensorFlow's)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # 35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1
    def __init__(self, in_ch: int, pool_ch: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 64, 1)
        self.branch5x5_1 = ConvBN(in_ch, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_ch, pool_ch, 1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_pool_same(x)),
            ],
            1,
        )


class BlockB(nn.Module):  # 35x35 -> 17x17
    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class BlockC(nn.Module):  # 17x17 with factorised 7x7 convolutions
    def __init__(self, in_ch: int, mid: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 192, 1)
        self.branch7x7_1 = ConvBN(in_ch, mid, 1)
        self.branch7x7_2 = ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_ch, mid, 1)
        self.branch7x7dbl_2 = ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x):
        double = x
        for name in ("branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"):
            double = getattr(self, name)(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(_pool_same(x)),
            ],
            1,
        )


class BlockD(nn.Module):  # 17x17 -> 8x8
    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_ch, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_ch, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # 8x8 with split 1x3 / 3x1 branches; ``max_pool`` in the FID network's last block
    def __init__(self, in_ch: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_ch, 320, 1)
        self.branch3x3_1 = ConvBN(in_ch, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_ch, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _pool_same(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInception(nn.Module):
    """RGB -1..1 at 299x299 -> 2048 pool features (the classifier layer is kept for the weights)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in (
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
            "Mixed_7a",
            "Mixed_7b",
            "Mixed_7c",
        ):
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> tuple[FIDInception, dict]:
    """The FID Inception network with the weights in ``path``, and a description of the file.

    Any file that is not a state dict of exactly this architecture ends in a ProductganError that
    says what was found.
    """
    path = Path(path).expanduser()
    redo = (
        "pass the pt_inception-2015-12-05-6726825d.pth file (the FID Inception weights of pytorch-fid and "
        "torchmetrics), as downloaded"
    )
    if not path.is_file():
        raise ProductganError(f"--inception-weights {path} does not exist; {redo}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike mean "not a weights file"
        reason = refused_for_safety(error, path) or load_failure(error)
        raise ProductganError(f"{path} is not a PyTorch weights file ({reason}); {redo}.")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ProductganError(f"{path} does not hold a dict of tensors (a state dict); {redo}.")
    net = FIDInception()
    expected = net.state_dict()
    # BatchNorm's batch counter is bookkeeping; old exports lack it.
    wanted = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing = sorted(wanted - set(state))
    unexpected = sorted(k for k in set(state) - set(expected))
    wrong = sorted(k for k in wanted & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        found = [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(wrong)} of another shape (e.g. {wrong[0]})" if wrong else "",
        ]
        raise ProductganError(
            f"{path} is not the FID Inception-v3 weights: {', '.join(f for f in found if f)} tensors; {redo}."
        )
    net.load_state_dict(dict(state), strict=False)
    sha = file_sha256(path)
    info = {"file": str(path), "sha256": sha, "standard": sha.startswith(STANDARD_SHA256_PREFIX)}
    return net.eval().requires_grad_(False).to(device), info


@torch.no_grad()
def inception_features(net: FIDInception, images_uint8, batch_size: int = 50) -> torch.Tensor:
    """uint8 N x C x H x W (grey or RGB, any size) -> float64 N x 2048 pool features."""
    images = torch.as_tensor(np.asarray(images_uint8))
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ProductganError(
            f"Inception features need uint8 N x 1|3 x H x W images, not {images.dtype} {tuple(images.shape)}."
        )
    device = next(net.parameters()).device
    parts = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        parts.append(net(x * 2.0 - 1.0).double().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
