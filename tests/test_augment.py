"""DiffAugment: each transform's effect, differentiability, seeding, and its place in training."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config

from productgan.config import AUGMENT_POLICIES as POLICIES
from productgan.config import parse_policy, resolve
from productgan.data import PackedDataset
from productgan.data.augment import color, cutout, diff_augment, translation
from productgan.errors import UsageError
from productgan.train import Trainer, train


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_translation_moves_content_and_fills_with_the_border():
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).repeat(64, 1, 1, 1)
    out = translation(x, seeded())
    shifts = set()
    for image in out[:, 0]:
        # A shifted ramp: each row is still increasing by 1 away from the replicated border.
        delta = int(image[8, 8] - x[0, 0, 8, 8])  # 16 * dy + dx
        dy = round(delta / 16)
        dx = delta - 16 * dy
        assert abs(dy) <= 2 and abs(dx) <= 2  # 1/8 of 16 px
        shifts.add((dy, dx))
        assert set(image.flatten().tolist()) <= set(x[0].flatten().tolist())  # no new values
    assert len(shifts) > 10  # every image has its own shift


def test_cutout_erases_one_square_per_image_with_the_mid_value():
    x = torch.ones(32, 3, 16, 16)
    out = cutout(x, seeded(), fill=0.0)
    erased = (out == 0).all(dim=1)  # all channels alike
    assert ((out == 0) | (out == 1)).all()
    counts = erased.flatten(1).sum(dim=1)
    assert counts.max() == 64 and counts.min() > 0  # an 8x8 square, sometimes cut by the edge
    assert len(set(counts.tolist())) > 1


def test_color_keeps_grey_images_grey_and_varies_brightness():
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    out = color(x, seeded())
    assert out.shape == x.shape
    shift = (out - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.1  # each image its own brightness and contrast
    rgb = torch.rand(4, 3, 8, 8)
    grey_in = rgb.mean(dim=1, keepdim=True).repeat(1, 3, 1, 1)
    grey_out = color(grey_in, seeded())
    assert torch.allclose(grey_out[:, 0], grey_out[:, 1]) and torch.allclose(grey_out[:, 1], grey_out[:, 2])


def test_diff_augment_is_seeded_and_differentiable():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    policy = parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, seeded(3))
    b = diff_augment(x, policy, seeded(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, policy, seeded(4)))
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert diff_augment(x, (), seeded()).data_ptr() == x.data_ptr() or torch.equal(diff_augment(x, ()), x)


def test_policy_names_are_checked():
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert set(parse_policy(",".join(POLICIES))) == set(POLICIES)
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        parse_policy("color,blur")


def test_augment_is_automatic_for_small_training_splits(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    auto = tiny_config(fake_packed, tmp_path / "a")
    resolve(auto, dataset)
    assert auto.train.augment is True  # 180 images: below 500; the choice is recorded for config.yaml
    assert Trainer(auto, tmp_path / "a", dataset).augment_policy == POLICIES
    off = tiny_config(fake_packed, tmp_path / "b")
    off.train.augment = False
    assert Trainer(resolve(off, dataset), tmp_path / "b", dataset).augment_policy == ()
    bad = tiny_config(fake_packed, tmp_path / "c")
    bad.train.augment_policy = "zoom"
    with pytest.raises(UsageError, match="augment-policy"):
        resolve(bad, dataset)


def test_augmentation_changes_what_training_learns(fake_packed, tmp_path):
    from productgan.checkpoint import load_checkpoint

    weights = {}
    for name, augment, hflip in (("on", True, False), ("off", False, False), ("flip", False, True)):
        config = tiny_config(fake_packed, tmp_path / name, steps=2)
        config.train.augment, config.train.hflip = augment, hflip
        train(config, progress=False)
        weights[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["D"]
    some_key = next(k for k in weights["on"] if k.endswith("weight"))
    assert not torch.equal(weights["on"][some_key], weights["off"][some_key])
    assert not torch.equal(weights["flip"][some_key], weights["off"][some_key])
