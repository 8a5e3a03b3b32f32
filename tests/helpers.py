"""Plain helpers shared by test files (pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import IDX_FILE_NAMES, _write_idx, fake_fashion_mnist_arrays

from productgan.config import ModelConfig, RunConfig, TrainConfig
from productgan.data import PackedDataset, prepare
from productgan.generator.export import write_export
from productgan.generator.latents import noise
from productgan.generator.sampler import load_generator
from productgan.models import Generator
from productgan.train import train

# What an export of a Fashion-MNIST generator records of its data (sampling.export_generator's info).
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_INFO = {
    "class_names": CLASS_NAMES,
    "native_size": [28, 28],
    "fit": "pad",
    "padded_size": [32, 32],
    "pad": [2, 2, 2, 2],
    "background": 0,
}

# Command-line flags of a tiny run with the plain defaults (not the recipe the data would choose).
TINY_FLAGS = [
    *("--model.nz", "8", "--model.ngf", "4", "--model.ndf", "4"),
    *("--train.grid-size", "4", "--train.precision", "fp32", "--train.log-every", "2"),
    *("--no-progress", "--preset", "none"),
]


def tiny_config(data, out, **overrides) -> RunConfig:
    config = RunConfig(
        data=str(data),
        out=str(out),
        batch_size=16,
        steps=6,
        model=ModelConfig(nz=8, ngf=4, ndf=4),
        train=TrainConfig(precision="fp32", log_every=2, sample_every=3, checkpoint_every=2, grid_size=4),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def train_tiny_run(folder: Path) -> Path:
    """A conditional run of two steps on the fake Fashion-MNIST (as ``fake_packed`` builds it), in
    ``folder``/run: a run directory whose data and evaluator answer neighbours and projection
    (about 10 s on two busy cores)."""
    fake = folder / "fake"
    fake.mkdir()
    for key, array in fake_fashion_mnist_arrays().items():
        _write_idx(fake / (IDX_FILE_NAMES[key] + ".gz"), array)
    packed = prepare(fake, folder / "packed", image_size=32, val_size=20, seed=0)
    config = tiny_config(packed, folder / "run", steps=2)
    config.model.conditional = True
    train(config, progress=False)
    return folder / "run"


def resumed_run_matches(data, root: Path, model: ModelConfig) -> dict:
    """Train 6 steps in one go and 3 then resumed to 6; assert that G and D end bit for bit the
    same, and return the uninterrupted run's last checkpoint."""
    from productgan.checkpoint import load_checkpoint
    from productgan.train import resume

    train(tiny_config(data, root / "full", steps=6, model=model), progress=False)
    train(tiny_config(data, root / "cut", steps=3, model=model), progress=False)
    resume(root / "cut", steps=6, progress=False)
    full = load_checkpoint(root / "full" / "checkpoints" / "last.pt")
    cut = load_checkpoint(root / "cut" / "checkpoints" / "last.pt")
    for key in ("G", "D"):
        for name, tensor in full[key].items():
            assert torch.equal(tensor, cut[key][name]), name
    return full


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1.3e-6, atol: float = 1e-5):
    """torch.testing.assert_close's float32 check without its ~1 s of imports on first use."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual, expected)


def dead_pid() -> int:
    """The process id of a process that has ended (a crashed writer, for temporary-file tests)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def sigterm_after_step(monkeypatch, step: int):
    """Make training send itself SIGTERM once step ``step`` is done; returns the real step
    function, to put back with monkeypatch.setattr(Trainer, "train_step", it)."""
    import os
    import signal

    from productgan.train import Trainer

    original = Trainer.train_step

    def step_then_interrupt(self, stats):
        original(self, stats)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    return original


def plain_generator(channels: int = 1, background: int = 0, conditional: bool = True) -> Generator:
    """A 32x32 generator (nz 8, ngf 4, ten classes when ``conditional``) that draws, whatever the
    latent vector, a 20x20 square of the other extreme level (rows and columns 6 to 25; 4 to 23 at
    FMNIST_INFO's native 28x28) on a plain ``background`` (0 or 255): a product on a plain
    background, with no training. Every hidden stage's
    batch norm makes a constant (weight 0) or passes its input on (weight 1), so the transposed
    convolutions draw the square by their border effects: the first marks the interior of 8x8, the
    second keeps what is interior both ways (10x10 of 16x16), the last doubles it."""
    generator = Generator(ModelConfig(nz=8, ngf=4, conditional=conditional), 32, channels, num_classes=10)
    convolutions = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for conv in convolutions:
            conv.weight.zero_()
        for norm, (weight, bias) in zip(norms, [(0.0, 1.0), (1.0, 0.0), (1.0, -3.0)]):
            norm.weight.fill_(weight)
            norm.bias.fill_(bias)
            norm.running_mean.zero_()
            norm.running_var.fill_(1 - norm.eps)
        interior, both, double = (
            torch.tensor(taps, dtype=torch.float32) for taps in ([1, 0, 0, 1], [1] * 4, [0, 1, 1, 0])
        )
        convolutions[1].weight[:, 0] = torch.outer(interior, interior) / convolutions[1].weight.shape[0]
        convolutions[2].weight[0, 0] = torch.outer(both, both)
        sign = 1.0 if background == 0 else -1.0  # tanh -1 is level 0, +1 level 255
        convolutions[3].weight[0, :] = 20 * sign * torch.outer(double, double)
        convolutions[3].bias.fill_(-10 * sign)
    return generator.eval()


CLASSES = CLASS_NAMES
TRAIN_PER_CLASS = [14, 14, 14, 14, 14, 14, 14, 14, 14, 9]  # the last category is the rarest


def small_packed(folder: Path) -> Path:
    """Noise images (28x28 padded to 32x32) of ten categories: an uneven train split, 2 val and 3
    test images per category."""
    rng = np.random.default_rng(0)
    labels, split = [], []
    for c, count in enumerate(TRAIN_PER_CLASS):
        labels += [c] * (count + 5)
        split += [0] * count + [1] * 2 + [2] * 3
    images = np.zeros((len(labels), 1, 32, 32), np.uint8)
    images[:, :, 2:30, 2:30] = rng.integers(0, 256, (len(labels), 1, 28, 28), dtype=np.uint8)
    meta = {"source": "noise", "fit": "pad", "native_size": [28, 28], "padded_size": [32, 32], "pad": [2, 2, 2, 2]}
    return PackedDataset(images, np.asarray(labels), CLASSES, np.asarray(split), {**meta, "background": 0}).save(folder)


def export_varied(generator: Generator, run_dir: Path, info: dict) -> None:
    """Export ``generator`` as the run's, with its batch-norm statistics measured on one batch and
    its output layer scaled up: a tiny, barely trained network then makes images that differ from
    one another about as much as the noise images of ``small_packed`` do (as exported after two
    steps, its images are all alike, and every one after the first is a near-duplicate)."""
    for module in generator.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    generator.train()
    with torch.no_grad():
        labels = torch.arange(256) % 10 if generator.num_classes else None
        generator(noise(256, generator.config.nz, 123), labels)
        last = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
        last.weight.mul_(40.0)
    described = ("format", "version", "model", "image_size", "channels", "num_classes", "pixel_range")
    write_export(generator.eval(), run_dir / "generator", {k: v for k, v in info.items() if k not in described})


def varied_conditional_run(root: Path) -> Path:
    """A tiny class-conditional run on ``small_packed`` under ``root``, its generator exported by
    ``export_varied``: the run synth and uplift are tested on."""
    data = small_packed(root / "packed")
    config = tiny_config(data, root / "run", steps=2, model=ModelConfig(nz=8, ngf=4, ndf=4, conditional=True))
    train(config, progress=False)
    trained = load_generator(root / "run")
    export_varied(trained.generator, root / "run", trained.info)
    return root / "run"
