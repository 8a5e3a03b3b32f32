"""The training loop: budgets, run directory, checkpoints, exact resume, stops."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
from helpers import sigterm_after_step, tiny_config

from productgan.checkpoint import load_checkpoint
from productgan.config import resolve
from productgan.errors import ProductganError, UsageError
from productgan.run import load_run_config
from productgan.train import Trainer, resume, train
from productgan.train.batches import BatchSource
from productgan.train.ema import EMA
from productgan.train.logs import TrainingStopped


def assert_same_state(a: dict, b: dict) -> None:
    """Every tensor equal bit for bit, every plain value equal, recursively."""
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), key
        elif isinstance(x, dict):
            assert_same_state(x, y)
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y)
            for i, (u, v) in enumerate(zip(x, y)):
                assert_same_state({i: u}, {i: v})
        elif key not in ("elapsed_s", "out"):  # wall time and run folder differ by nature
            assert x == y, key


def checkpoint_of(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def test_run_writes_the_run_directory(fake_packed, tmp_path):
    summary = train(tiny_config(fake_packed, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    assert summary["step"] == 6 and summary["images_seen"] == 6 * 16
    for name in (
        "config.yaml",
        "reals.png",
        "metrics.jsonl",
        "checkpoints/last.pt",
        "generator/model.safetensors",
        "generator/config.json",
        "samples/step-000003.png",
        "samples/step-000006.png",
    ):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    for record in records:
        assert {"loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "images_seen"} <= record.keys()
        assert 0.0 <= record["d_real"] <= 1.0 and 0.0 <= record["d_fake"] <= 1.0
        assert math.isfinite(record["loss_d"]) and math.isfinite(record["loss_g"])
    exported = json.loads((run / "generator" / "config.json").read_text())
    assert exported["native_size"] == [28, 28] and exported["step"] == 6 and exported["ema"] is True


def test_out_holding_a_run_is_refused(fake_packed, tmp_path):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ProductganError, match="already holds a run"):
        train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_a_run_that_never_saved_a_checkpoint_says_so(fake_packed, tmp_path):
    stub = tmp_path / "run"
    stub.mkdir()
    (stub / "config.yaml").write_text("steps: 6\n")  # what a run that failed at its start leaves
    with pytest.raises(ProductganError, match="stopped before its first checkpoint \\(nothing to resume\\)"):
        train(tiny_config(fake_packed, stub, steps=2), progress=False)
    with pytest.raises(ProductganError, match="the run stopped before its first checkpoint"):
        resume(stub, progress=False)


def test_resume_within_the_budget_already_spent_is_refused(fake_packed, tmp_path, monkeypatch):
    train(tiny_config(fake_packed, tmp_path / "run", steps=4), progress=False)
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    for budget in ({}, {"steps": 3}, {"images": 64}):
        with pytest.raises(UsageError, match="is at step 4 .* already, past the budget given"):
            resume(tmp_path / "run", progress=False, **budget)
    assert (tmp_path / "run" / "config.yaml").read_text() == recorded
    # A torchrun restart after the last checkpoint (a rank lost in the final export) finishes the
    # run instead: the export is written again.
    shutil.rmtree(tmp_path / "run" / "generator")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert resume(tmp_path / "run", progress=False)["step"] == 4
    assert (tmp_path / "run" / "generator" / "model.safetensors").is_file()
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    assert resume(tmp_path / "run", steps=5, progress=False)["step"] == 5


def test_a_folder_named_like_the_built_in_dataset_is_not_recorded_unless_read(fake_fmnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-mnist" / "data").mkdir(parents=True)  # a clone of the dataset's repository
    monkeypatch.setenv("PRODUCTGAN_DATA", str(fake_fmnist))
    config = tiny_config("fashion-mnist", tmp_path / "run", steps=1)
    config.train.val_size = 20
    train(config, progress=False)
    assert load_run_config(tmp_path / "run").data == "fashion-mnist"


def test_resume_matches_an_uninterrupted_run_bit_for_bit(fake_packed, tmp_path):
    # 180 training images / batch 16 = 11 batches per epoch: 14 steps cross an epoch boundary.
    train(tiny_config(fake_packed, tmp_path / "full", steps=14), progress=False)
    train(tiny_config(fake_packed, tmp_path / "split", steps=5), progress=False)
    summary = resume(tmp_path / "split", steps=14, progress=False)
    assert summary["step"] == 14
    assert_same_state(checkpoint_of(tmp_path / "full"), checkpoint_of(tmp_path / "split"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 5, 6, 8, 10, 12, 14]


def test_signal_finishes_the_step_saves_and_resumes_exactly(fake_packed, tmp_path, monkeypatch):
    train(tiny_config(fake_packed, tmp_path / "full", steps=8), progress=False)
    original = sigterm_after_step(monkeypatch, 3)
    summary = train(tiny_config(fake_packed, tmp_path / "cut", steps=8), progress=False)
    assert summary["stopped_by"] == "signal" and summary["step"] == 3
    assert checkpoint_of(tmp_path / "cut")["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", original)
    resume(tmp_path / "cut", progress=False)  # no budget given: the run's own 8 steps
    assert_same_state(checkpoint_of(tmp_path / "full"), checkpoint_of(tmp_path / "cut"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(fake_packed, tmp_path, monkeypatch):
    original = Trainer.train_step

    def poisoned(self, stats):
        original(self, stats)
        if self.step == 5:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.fill_(float("nan"))

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingStopped, match="non-finite"):
        train(tiny_config(fake_packed, tmp_path / "run", steps=10), progress=False)
    state = checkpoint_of(tmp_path / "run")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["D"].values() if t.is_floating_point())


def test_minutes_budget_stops(fake_packed, tmp_path):
    summary = train(tiny_config(fake_packed, tmp_path / "run", steps=None, minutes=0.002), progress=False)
    assert summary["step"] >= 1 and summary["elapsed_s"] >= 0.12


def test_bad_budget_is_a_usage_error(fake_packed, tmp_path):
    with pytest.raises(UsageError, match="--steps must be positive"):
        train(tiny_config(fake_packed, tmp_path / "run", steps=0), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: setattr(c, "seed", -1), "--seed must be 0 or more"),
        (lambda c: setattr(c.optim, "lr_d", -1e-4), "--optim.lr-d must be a positive learning rate"),
        (lambda c: setattr(c.train, "early_stop_patience", -1), "must be 0 \\(off\\) or more"),
        (
            lambda c: (setattr(c.train, "eval_every", 2), setattr(c.train, "eval_n", 0)),
            "--train.eval-n must be at least 4",
        ),
        (lambda c: setattr(c.train, "device", "gpu"), "'gpu' is not a device"),
        (lambda c: setattr(c.model, "nz", 0), "--model.nz must be at least 1"),
        (lambda c: setattr(c.train, "grid_size", 0), "--train.grid-size must be at least 1"),
    ],
)
def test_bad_settings_are_refused_before_training(fake_packed, tmp_path, change, message):
    config = tiny_config(fake_packed, tmp_path / "run")
    change(config)
    with pytest.raises(UsageError, match=message):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_validation_needs_a_validation_split(fake_fmnist, tmp_path):
    from productgan.data import prepare

    empty_val = prepare(fake_fmnist, tmp_path / "no-val", image_size=32, val_size=0, seed=0)
    config = tiny_config(empty_val, tmp_path / "run")
    config.train.eval_every = 2
    with pytest.raises(UsageError, match="the val split holds 0 image"):
        train(config, progress=False)


def test_batch_larger_than_the_data_is_refused(fake_packed, tmp_path):
    with pytest.raises(ProductganError, match="fewer than one batch"):
        train(tiny_config(fake_packed, tmp_path / "run", batch_size=500), progress=False)


def test_batch_source_visits_every_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10) + 100
    source = BatchSource(images, labels, batch_size=3, seed=5)
    drawn = [source.next() for _ in range(3)]
    epoch = torch.cat([batch.flatten() for batch, _ in drawn])
    assert len(set(epoch.tolist())) == 9  # the tenth image is the dropped remainder
    for batch, batch_labels in drawn:  # labels travel with their images
        assert torch.equal(batch.flatten().long() + 100, batch_labels)
    again = BatchSource(images, labels, batch_size=3, seed=5)
    again.batches_drawn = 3
    assert all(torch.equal(a, b) for a, b in zip(again.next(), source.next()))  # position is the counter alone


def test_update_schedules_run(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path / "run", steps=2)
    config.optim.d_steps_per_g_step = 2
    config.optim.g_steps_per_d_step = 3
    config.optim.name = "sgd"
    config.loss.name = "lsgan"
    summary = train(config, progress=False)
    assert summary["images_seen"] == 2 * 2 * 16


def _learning_rates_used(monkeypatch) -> list[tuple[float, float]]:
    """(G, D) learning rates of every step, as the optimisers hold them when the step runs."""
    used = []
    step = Trainer.train_step

    def recording(self, stats):
        used.append((self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]))
        step(self, stats)

    monkeypatch.setattr(Trainer, "train_step", recording)
    return used


def test_linear_lr_decay_over_a_step_budget(fake_packed, tmp_path, monkeypatch):
    used = _learning_rates_used(monkeypatch)
    config = tiny_config(fake_packed, tmp_path / "run", steps=4)
    config.optim.lr_decay = "linear"
    config.optim.lr_g, config.optim.lr_d = 4e-4, 1e-4
    train(config, progress=False)
    fractions = (1.0, 0.75, 0.5, 0.25)
    assert [g for g, _ in used] == pytest.approx([4e-4 * f for f in fractions])
    assert [d for _, d in used] == pytest.approx([1e-4 * f for f in fractions])


def test_linear_lr_decay_over_a_minutes_budget(fake_packed, tmp_path, monkeypatch):
    used = _learning_rates_used(monkeypatch)
    config = tiny_config(fake_packed, tmp_path / "run", steps=None, minutes=0.01)
    config.optim.lr_decay = "linear"
    config.train.sample_every = config.train.checkpoint_every = 10_000  # the 0.6 s go to steps
    train(config, progress=False)
    lr_g = [g for g, _ in used]
    assert len(lr_g) >= 3 and lr_g == sorted(lr_g, reverse=True)
    assert lr_g[0] > lr_g[-1] > 0 and lr_g[0] <= 2e-4  # starts at the loss's default, falls with the clock


def test_linear_lr_decay_resumes_from_the_clock_it_saved(fake_packed, tmp_path, monkeypatch):
    from productgan.data.packed import PackedDataset

    used = _learning_rates_used(monkeypatch)
    config = tiny_config(fake_packed, tmp_path / "run", steps=1, minutes=10.0)
    config.optim.lr_decay = "linear"
    dataset = PackedDataset.load(fake_packed)
    trainer = Trainer(resolve(config, dataset), tmp_path / "run", dataset)
    trainer.elapsed_s = 450.0  # as a checkpoint taken after 7.5 of the 10 minutes restores it
    trainer.fit(progress=False)
    assert used[0] == pytest.approx((0.25 * 2e-4, 0.25 * 2e-4), rel=1e-3)


def test_constant_lr_by_default(fake_packed, tmp_path, monkeypatch):
    used = _learning_rates_used(monkeypatch)
    train(tiny_config(fake_packed, tmp_path / "run", steps=3), progress=False)
    assert used == [(2e-4, 2e-4)] * 3


def test_ema_ramps_up_and_tracks():
    source = torch.nn.Linear(2, 2)
    ema = EMA(source, half_life_images=1000, warmup=0.5)
    assert ema.decay(batch_size=10, images_seen=10) == pytest.approx(0.5**2)
    assert ema.decay(batch_size=10, images_seen=10**6) == pytest.approx(0.5 ** (10 / 1000))
    with torch.no_grad():
        source.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(source, batch_size=10, images_seen=10)
    expected = before + (source.weight - before) * (1 - 0.25)
    assert torch.allclose(ema.model.weight, expected)


def test_ema_half_life_counts_every_discriminator_batch(fake_packed, tmp_path, monkeypatch):
    """With two D updates per step a step sees two batches, and the average decays by both."""
    decays = []
    real_weight = EMA.weight

    def recording(self, batch_size, images_seen):
        decays.append((batch_size, images_seen))
        return real_weight(self, batch_size, images_seen)

    monkeypatch.setattr(EMA, "weight", recording)
    config = tiny_config(fake_packed, tmp_path / "run", steps=2)
    config.optim.d_steps_per_g_step = 2
    train(config, progress=False)
    assert decays == [(32, 32), (32, 64)]


def test_exported_weights_are_readable_like_any_new_file(fake_packed, tmp_path):
    umask = os.umask(0o022)
    try:
        train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    finally:
        os.umask(umask)
    export = tmp_path / "run" / "generator"
    assert {p.name: p.stat().st_mode & 0o777 for p in export.iterdir()} == {
        "model.safetensors": 0o644,
        "config.json": 0o644,
        "README.md": 0o644,
    }


@pytest.mark.parametrize(
    "loss, d_norm, r1", [("hinge", "spectral", 0.0), ("wgan-gp", "none", 0.0), ("bce", "batch", 1.0)]
)
def test_losses_and_penalties_train(fake_packed, tmp_path, loss, d_norm, r1):
    config = tiny_config(fake_packed, tmp_path / "run", steps=3)
    config.loss.name, config.model.d_norm, config.loss.r1_gamma, config.loss.r1_every = loss, d_norm, r1, 2
    summary = train(config, progress=False)
    assert summary["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss_d"]) for r in records)


def test_wgan_gp_with_batchnorm_is_refused(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path / "run")
    config.loss.name = "wgan-gp"
    with pytest.raises(UsageError, match="d-norm none"):
        train(config, progress=False)


def test_precision_choice():
    from productgan.train.precision import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(UsageError, match="fp16 is for CUDA"):
        resolve_precision("fp16", cpu)


def test_unmeasured_auto_precision_is_float32_on_a_cpu_whatever_its_flags(monkeypatch):
    import productgan.train.precision as precision

    for flags in (False, True):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=flags: flags)
        assert precision.resolve_precision("auto", torch.device("cpu")) is None


def test_compiled_training_matches_eager_closely(fake_packed, tmp_path):
    eager = tiny_config(fake_packed, tmp_path / "eager", steps=2)
    compiled = tiny_config(fake_packed, tmp_path / "compiled", steps=2)
    compiled.train.compile = True
    train(eager, progress=False)
    train(compiled, progress=False)
    a, b = checkpoint_of(tmp_path / "eager"), checkpoint_of(tmp_path / "compiled")
    for key, value in a["G"].items():
        if value.is_floating_point():
            assert torch.allclose(value, b["G"][key], atol=1e-4), key
    assert set(a["G_ema"]) == set(b["G_ema"])  # plain keys: the export loads without the compiler


def test_tensorboard_logs_the_same_values(fake_packed, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(fake_packed, tmp_path / "run", steps=4)
    config.train.tensorboard = True
    train(config, progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = events.Scalars("loss_d")
    assert [e.step for e in scalars] == [r["step"] for r in logged] == [2, 4]
    assert abs(scalars[-1].value - logged[-1]["loss_d"]) < 1e-5


def test_tensorboard_missing_is_a_clear_error(fake_packed, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    config = tiny_config(fake_packed, tmp_path / "run", steps=2)
    config.train.tensorboard = True
    with pytest.raises(UsageError, match="productgan\\[tensorboard\\]"):
        train(config, progress=False)


def test_discriminator_win_is_judged_from_its_mean_outputs():
    from productgan.train.logs import discriminator_won

    won = {"d_real": 0.9995, "d_fake": 0.0004}
    assert "--augment" in discriminator_won(won, "bce", augment="off")
    assert "--loss.r1-gamma" in discriminator_won(won, "lsgan", augment="auto")
    assert discriminator_won(won, "wgan-gp", augment=False) is None
    assert discriminator_won({"d_real": 0.95, "d_fake": 0.0004}, "bce", augment=False) is None
    assert discriminator_won({"d_real": 0.9995, "d_fake": 0.02}, "bce", augment=False) is None


def test_a_won_discriminator_is_reported_once(fake_packed, tmp_path, monkeypatch, capsys):
    from productgan.train.logs import StepStats

    original = StepStats.means

    def dominated(self, *args, **kwargs):
        return {**original(self, *args, **kwargs), "d_real": 0.9999, "d_fake": 0.0001}

    monkeypatch.setattr(StepStats, "means", dominated)
    train(tiny_config(fake_packed, tmp_path / "run"), progress=False)  # logs at steps 2, 4 and 6
    err = capsys.readouterr().err
    assert err.count("the discriminator separates real from generated images") == 1
    # 180 training images: DiffAugment is already on, so the advice is the next remedy.
    assert "Warning at step 2" in err and "D(x) 0.9999" in err and "--loss.r1-gamma" in err


def test_a_balanced_run_gives_no_warning(fake_packed, tmp_path, capsys):
    train(tiny_config(fake_packed, tmp_path / "run"), progress=False)
    assert "discriminator separates" not in capsys.readouterr().err


def test_packed_discriminator_trains_and_odd_batches_are_refused(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path / "run", steps=3)
    config.model.d_pack, config.model.conditional, config.loss.r1_gamma, config.loss.r1_every = 2, True, 0.1, 2
    summary = train(config, progress=False)
    assert summary["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in records)
    assert checkpoint_of(tmp_path / "run")["D"]["main.0.weight"].shape[1] == 2  # two one-channel images a pack
    for pack, batch, message in ((3, 16, "multiple of 3"), (0, 16, "at least 1")):
        bad = tiny_config(fake_packed, tmp_path / f"bad-{pack}", batch_size=batch)
        bad.model.d_pack = pack
        with pytest.raises(UsageError, match=message):
            train(bad, progress=False)
        assert not (tmp_path / f"bad-{pack}").exists()


def test_the_final_checkpoint_is_written_once(fake_packed, tmp_path, monkeypatch):
    import productgan.train.trainer as loop

    written = []
    real_save = loop.save_checkpoint
    monkeypatch.setattr(
        loop, "save_checkpoint", lambda state, path: written.append(state["step"]) or real_save(state, path)
    )
    train(tiny_config(fake_packed, tmp_path / "run", steps=6), progress=False)  # checkpoints every 2 steps
    assert written == [2, 4, 6]
    train(tiny_config(fake_packed, tmp_path / "odd", steps=5), progress=False)
    assert written[3:] == [2, 4, 5]  # a last step off the interval is still saved


def test_a_run_whose_export_a_crash_cut_short_is_finished_by_resume(fake_packed, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(fake_packed, run, steps=2), progress=False)
    step_2 = tmp_path / "generator-step-2"
    shutil.copytree(run / "generator", step_2)
    assert resume(run, steps=4, progress=False)["step"] == 4
    # As a kill after the final checkpoint and before the export leaves it: last.pt at step 4,
    # generator/ still at step 2.
    shutil.rmtree(run / "generator")
    shutil.copytree(step_2, run / "generator")
    recorded = (run / "config.yaml").read_text()
    summary = resume(run, steps=4, progress=False)
    assert summary["step"] == 4 and summary["stopped_by"] == "budget"
    assert json.loads((run / "generator" / "config.json").read_text())["step"] == 4
    assert (run / "config.yaml").read_text() == recorded
    with pytest.raises(UsageError, match="past the budget given"):  # now there is nothing left to do
        resume(run, steps=4, progress=False)


def test_a_time_budget_spent_before_the_first_step_exports_nothing(fake_packed, tmp_path, monkeypatch):
    from productgan.train.budget import Budget

    monkeypatch.setattr(Budget, "time_up", lambda self, elapsed_s: True)
    with pytest.raises(UsageError, match="--minutes 1e-05 ran out before the first training step"):
        train(tiny_config(fake_packed, tmp_path / "run", steps=None, minutes=0.00001), progress=False)
    assert not (tmp_path / "run" / "generator").exists()


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_training(fake_packed, tmp_path, monkeypatch):
    from productgan import machine

    monkeypatch.setattr(machine, "available_memory", lambda: 2**20)  # 1 MiB free
    with pytest.raises(UsageError, match="A training step at --batch-size 16 would need about .* lower --batch-size"):
        train(tiny_config(fake_packed, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_the_averages_statistics_are_measured_once_per_step(fake_packed, tmp_path, monkeypatch):
    """The grid, validation and export of one step draw from one measurement, and a new step
    measures again."""
    from productgan.data.packed import PackedDataset
    from productgan.train import trainer as loop

    dataset = PackedDataset.load(fake_packed)
    trainer = Trainer(resolve(tiny_config(fake_packed, tmp_path / "run", steps=6), dataset), tmp_path / "run", dataset)
    measured_at, real = [], loop.measure_statistics

    def measure(generator, seed):
        measured_at.append(trainer.step)
        return real(generator, seed)

    monkeypatch.setattr(loop, "measure_statistics", measure)
    trainer.fit(progress=False)
    assert measured_at == [3, 6]  # sample_every 3: the grid at step 3; the grid and export at step 6


def test_mode_seeking_changes_only_the_generators_update(fake_packed, tmp_path):
    """One step from the same start with and without the term: D's update comes first and is
    the same; G's differs, and its loss carries the term."""
    from productgan.data import open_dataset
    from productgan.train.logs import StepStats

    after = {}
    for weight in (0.0, 1.0):
        config = tiny_config(fake_packed, tmp_path / f"w{weight}", steps=1)
        config.model.conditional, config.loss.mode_seeking = True, weight
        dataset = open_dataset(str(fake_packed))
        trainer = Trainer(resolve(config, dataset), tmp_path / f"w{weight}", dataset)
        stats = StepStats.zeros(trainer.device)
        trainer.train_step(stats)
        after[weight] = (trainer.D.state_dict(), trainer.G.state_dict(), stats.means()["loss_g"])
    (d_off, g_off, loss_off), (d_on, g_on, loss_on) = after[0.0], after[1.0]
    assert all(torch.equal(d_off[k], d_on[k]) for k in d_off)
    assert not all(torch.equal(g_off[k], g_on[k]) for k in g_off)
    assert loss_on > loss_off + 0.5  # the term is near 1 / (image gap / latent gap), well above 0.5 at the start


def test_identical_runs_record_the_same_config_in_their_checkpoints(fake_packed, tmp_path, monkeypatch):
    """How auto precision was decided (rates, whether from the cache) stays in config.yaml, out of
    the checkpoint: the first run measures, the second reads the cache, and their checkpoints'
    configs are the same."""
    from productgan.train import calibration

    monkeypatch.setattr(calibration, "images_per_second", lambda config, dataset, device, precision, batch: 100.0)
    for name in ("first", "second"):
        config = tiny_config(fake_packed, tmp_path / name, steps=2)
        config.train.precision = "auto"
        train(config, progress=False)
    first, second = checkpoint_of(tmp_path / "first"), checkpoint_of(tmp_path / "second")
    assert first["config"]["train"]["precision_measured"] is None
    assert {**first["config"], "out": None} == {**second["config"], "out": None}
    recorded = [load_run_config(tmp_path / name).train.precision_measured for name in ("first", "second")]
    assert [record["cached"] for record in recorded] == [False, True]
