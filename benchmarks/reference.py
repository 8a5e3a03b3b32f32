"""The plain reference recipe both benchmarks measure productgan against.

The canonical DCGAN as people usually run it (the pytorch/examples recipe): 64x64, 1 channel,
nz 100, ngf = ndf = 64, batch 64, Adam 2e-4 / beta1 0.5, BCE on a sigmoid output, eager float32,
fed by a DataLoader whose dataset decodes and resizes one PIL image per item, with one host sync
per step for the log line.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

NZ, NGF, NDF, SIZE, BATCH = 100, 64, 64, 64, 64


class PngDataset(torch.utils.data.Dataset):
    """Images stored as encoded PNG bytes, decoded and resized per item, as an image-folder loader does."""

    def __init__(self, images: np.ndarray):
        self.items = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            self.items.append(buffer.getvalue())

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        image = Image.open(io.BytesIO(self.items[index])).convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy((array - 0.5) / 0.5).unsqueeze(0)


def networks(nz: int = NZ, ngf: int = NGF, ndf: int = NDF) -> tuple[nn.Module, nn.Module]:
    """The canonical 64x64 generator and discriminator, with the paper's N(0, 0.02) initialisation."""
    netG = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    netD = nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    for module in (*netG.modules(), *netD.modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
    return netG, netD


class ReferenceTrainer:
    """One canonical training step at a time over a DataLoader of per-item PNG decodes."""

    def __init__(self, train_images: np.ndarray, seed: int = 0, workers: int = 2, device: str = "cpu"):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.netG, self.netD = (net.to(self.device) for net in networks())
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loader = torch.utils.data.DataLoader(
            PngDataset(train_images),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        self.stream = self._batches()

    def _batches(self):
        while True:
            yield from self.loader

    def step(self) -> float:
        real = next(self.stream).to(self.device)
        b = real.size(0)
        ones, zeros = torch.ones(b, device=self.device), torch.zeros(b, device=self.device)
        self.netD.zero_grad()
        out = self.netD(real).view(-1)
        err_real = self.criterion(out, ones)
        err_real.backward()
        fake = self.netG(torch.randn(b, NZ, 1, 1, device=self.device))
        out = self.netD(fake.detach()).view(-1)
        err_fake = self.criterion(out, zeros)
        err_fake.backward()
        self.optD.step()
        self.netG.zero_grad()
        out = self.netD(fake).view(-1)
        err_g = self.criterion(out, ones)
        err_g.backward()
        self.optG.step()
        return err_g.item()  # the per-step host sync the canonical loop makes for its log line
