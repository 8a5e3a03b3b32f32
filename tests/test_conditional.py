"""Class-conditional generation: label embedding in G, projection head in D, generate by category."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import resumed_run_matches, tiny_config
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import UsageError
from productgan.generator.latents import noise
from productgan.generator.sampler import load_generator
from productgan.models import Discriminator, Generator, init_weights
from productgan.train import train

CONDITIONAL = ModelConfig(nz=8, ngf=4, ndf=4, conditional=True)


def test_the_label_modulates_every_stage_and_starts_neutral():
    from productgan.models.dcgan import ClassModulation

    torch.manual_seed(0)
    generator = Generator(CONDITIONAL, 32, 3, num_classes=5).eval()
    init_weights(generator)
    modulations = [m for m in generator.modules() if isinstance(m, ClassModulation)]
    assert len(modulations) == 3  # one per hidden stage at 32x32: 4, 8, 16
    z = noise(2, 8, seed=1).repeat(2, 1)
    labels = torch.tensor([0, 0, 3, 3])
    with torch.no_grad():
        images = generator(z, labels)
    assert images.shape == (4, 3, 32, 32)
    assert torch.equal(images[:2], images[2:])  # zero tables: no class effect yet
    generator.train()
    generator(z, labels).square().sum().backward()
    grad = modulations[0].table.weight.grad
    assert grad[[0, 3]].abs().sum() > 0 and grad[[1, 2, 4]].abs().sum() == 0  # only the classes used learn
    with torch.no_grad():
        for m in modulations:
            m.table.weight.normal_(0.0, 0.5)
        generator.eval()
        images = generator(z, labels)
    assert not torch.allclose(images[:2], images[2:])  # same z, other class, other image
    with pytest.raises(ValueError, match="class labels"):
        generator(z)


@pytest.mark.parametrize("d_norm", ["batch", "spectral"])
def test_projection_head_adds_a_class_term(d_norm):
    torch.manual_seed(0)
    model = ModelConfig(nz=8, ngf=4, ndf=4, conditional=True, d_norm=d_norm)
    critic = Discriminator(model, 32, 1, num_classes=4).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        a, b = critic(x, torch.tensor([0, 0, 0])), critic(x, torch.tensor([1, 1, 1]))
        # The class term is the projection alone: the body and head are shared.
        features = x
        for layer in list(critic.main)[:-1]:
            features = layer(features)
        pooled = features.sum(dim=(2, 3))
        expected = ((critic.embed.weight[1] - critic.embed.weight[0]) * pooled).sum(dim=1)
    torch.testing.assert_close(b - a, expected, rtol=1e-4, atol=1e-5)


def test_an_unconditional_discriminator_keeps_its_weights_layout():
    keys = Discriminator(ModelConfig(nz=8, ngf=4, ndf=4), 32, 1, num_classes=10).state_dict().keys()
    assert all(key.startswith("main.") for key in keys)


def test_a_conditional_model_needs_two_classes():
    with pytest.raises(UsageError, match="two or more classes"):
        Generator(CONDITIONAL, 32, 1, num_classes=1)


@pytest.fixture
def conditional_run(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path / "run", model=CONDITIONAL)
    config.train.grid_size = 20  # two columns for each of the ten classes
    train(config, progress=False)
    return tmp_path / "run"


def test_training_writes_a_grid_with_one_row_per_class(conditional_run):
    grid = Image.open(conditional_run / "samples" / "step-000006.png")
    # 28x28 tiles with 2 px padding: 10 rows of 2, each pixel repeated 3 times to make 640 or more.
    assert grid.size == (3 * (2 * 30 + 2), 3 * (10 * 30 + 2))
    info = json.loads((conditional_run / "generator" / "config.json").read_text())
    assert info["num_classes"] == 10 and info["model"]["conditional"] is True


def test_sampling_by_class_name_or_index(conditional_run):
    sampler = load_generator(conditional_run)
    assert sampler.conditional
    by_name = sampler(6, seed=3, label="sandal")
    by_index = sampler(6, seed=3, label=5)
    assert torch.equal(by_name, by_index)
    z = noise(6, 8, seed=3)
    assert torch.equal(by_name, sampler.from_noise(z, labels=torch.full((6,), 5)))
    with torch.no_grad():  # in float: a 6-step generator's images still round alike
        assert not torch.equal(sampler.generator(z, torch.full((6,), 5)), sampler.generator(z, torch.full((6,), 8)))
    # Without a label, image i is of class i mod 10.
    mixed = sampler(12, seed=3)
    assert torch.equal(mixed[5:6], by_name[5:6])
    assert torch.equal(mixed[:1], sampler(1, seed=3, label=0))
    with pytest.raises(UsageError, match="Unknown class 'Hat'.*Sneaker"):
        sampler(2, label="Hat")
    with pytest.raises(UsageError, match="out of range"):
        sampler(2, label=10)


def test_generate_label_from_the_command_line(conditional_run, tmp_path, capsys):
    out = tmp_path / "sneakers"
    assert main(["generate", str(conditional_run), "--n", "3", "--label", "Sneaker", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["0-000000-Sneaker.png", "0-000001-Sneaker.png", "0-000002-Sneaker.png"]
    expected = load_generator(conditional_run)(3, seed=0, label="Sneaker").numpy()
    assert np.array_equal(np.asarray(Image.open(out / files[1]))[None], expected[1])
    assert main(["generate", str(conditional_run), "--n", "2", "--label", "7", "--out", str(tmp_path / "7.png")]) == 0
    assert "Wrote 2 images of class 'Sneaker'" in capsys.readouterr().out  # class 7, named
    assert main(["generate", str(conditional_run), "--n", "3", "--label", "Hat", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown class 'Hat'" in capsys.readouterr().err


def test_label_on_an_unconditional_generator_is_refused(fake_packed, tmp_path, capsys):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    code = main(["generate", str(tmp_path / "run"), "--n", "2", "--label", "Bag", "--out", str(tmp_path / "a.png")])
    assert code == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_conditional_resume_is_exact(fake_packed, tmp_path):
    resumed_run_matches(fake_packed, tmp_path, CONDITIONAL)


def test_conditional_flag_alias(fake_packed, tmp_path, capsys):
    args = [
        "train",
        "--data",
        str(fake_packed),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--conditional",
        "--batch-size",
        "16",
        "--model.nz",
        "8",
        "--model.ngf",
        "4",
        "--model.ndf",
        "4",
        "--train.grid-size",
        "10",
        "--train.precision",
        "fp32",
        "--no-progress",
    ]
    assert main(args) == 0
    assert load_generator(tmp_path / "run").conditional
