"""DiffAugment: each transform's effect, differentiability, seeding, and its place in training."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_config
from test_train import assert_same_state

from productgan.checkpoint import load_checkpoint
from productgan.config import AUGMENT_POLICIES as POLICIES
from productgan.config import parse_policy, resolve
from productgan.data import PackedDataset
from productgan.data.augment import color, cutout, diff_augment, translation
from productgan.errors import UsageError
from productgan.train import Trainer, resume, train
from productgan.train.augmentation import ADJUST_EVERY, RAMP_IMAGES, AugmentStrength


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


def test_augment_is_adaptive_unless_set(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    auto = tiny_config(fake_packed, tmp_path / "a")
    resolve(auto, dataset)
    assert auto.train.augment == "auto"  # recorded for config.yaml
    trainer = Trainer(auto, tmp_path / "a", dataset)
    assert trainer.augment_policy == POLICIES and trainer.augment.adaptive and trainer.augment.p == 0.0
    off = tiny_config(fake_packed, tmp_path / "b")
    off.train.augment = False  # as older runs recorded it
    assert resolve(off, dataset).train.augment == "off"
    assert Trainer(off, tmp_path / "b", dataset).augment_policy == ()
    bad = tiny_config(fake_packed, tmp_path / "c")
    bad.train.augment_policy = "zoom"
    with pytest.raises(UsageError, match="augment-policy"):
        resolve(bad, dataset)


def test_augmentation_changes_what_training_learns(fake_packed, tmp_path):
    from productgan.checkpoint import load_checkpoint

    weights = {}
    for name, augment, hflip in (("on", "on", False), ("off", "off", False), ("flip", "off", True)):
        config = tiny_config(fake_packed, tmp_path / name, steps=2)
        config.train.augment, config.train.hflip = augment, hflip
        train(config, progress=False)
        weights[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["D"]
    some_key = next(k for k in weights["on"] if k.endswith("weight"))
    assert not torch.equal(weights["on"][some_key], weights["off"][some_key])
    assert not torch.equal(weights["flip"][some_key], weights["off"][some_key])


def strength(target=0.6, images=64, logits=16):
    return AugmentStrength("auto", None, target, images, logits, torch.device("cpu"))


def test_adaptive_strength_rises_while_d_overfits_and_stays_at_zero_otherwise():
    overfit, fooled = strength(), strength()
    step_change = ADJUST_EVERY * 64 / RAMP_IMAGES
    for step in range(1, 4 * ADJUST_EVERY + 1):
        overfit.observe(torch.full((16,), 3.0))  # D sure of every real image: mean sign 1
        overfit.after_step(step)
        fooled.observe(torch.tensor([1.0, -1.0] * 8))  # mean sign 0: nothing to correct
        fooled.after_step(step)
    assert overfit.p == pytest.approx(4 * step_change) and fooled.p == 0.0
    assert fooled.skips and not overfit.skips
    for step in range(4 * ADJUST_EVERY + 1, 6 * ADJUST_EVERY + 1):
        overfit.observe(-torch.ones(16))  # then D fails on real images: p comes back down
        overfit.after_step(step)
    assert overfit.p == pytest.approx(2 * step_change)


def test_a_fixed_probability_or_mode_overrides_the_adaptive_one():
    fixed = AugmentStrength("auto", 0.3, 0.6, 64, 16, torch.device("cpu"))
    fixed.observe(torch.ones(16))
    fixed.after_step(ADJUST_EVERY)
    assert (fixed.adaptive, fixed.p, fixed.probability()) == (False, 0.3, 0.3)
    assert AugmentStrength("on", None, 0.6, 64, 16, torch.device("cpu")).probability() is None  # every image
    assert AugmentStrength(False, None, 0.6, 64, 16, torch.device("cpu")).skips  # 'off', as older runs said


def test_a_probability_reaches_each_image_and_transform_by_chance():
    x = torch.ones(4000, 1, 8, 8)  # cutout fills with the middle of the range, 0
    rng = torch.Generator().manual_seed(0)
    out = diff_augment(x, ("cutout",), rng, p=0.25)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.22 < changed < 0.28
    assert torch.equal(diff_augment(x, ("cutout",), rng, p=0.0), x)


def test_adaptive_strength_is_logged_saved_and_resumed_exactly(fake_packed, tmp_path):
    """A low target makes p rise from the first adjustment; a resume in the middle of an
    adjustment interval ends where the uninterrupted run ends."""

    def config(out, steps):
        c = tiny_config(fake_packed, out, steps=steps)
        c.train.augment, c.train.augment_target = "auto", 0.01
        return c

    train(config(tmp_path / "full", 14), progress=False)
    train(config(tmp_path / "split", 5), progress=False)
    resume(tmp_path / "split", steps=14, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert full["augment_p"] > 0 and full["augment_p"] == split["augment_p"]
    assert full["augment_signs"] == split["augment_signs"] and full["augment_observed"] == split["augment_observed"]
    assert_same_state(full, split)
    logged = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [line["augment_p"] for line in logged][-1] == full["augment_p"]
