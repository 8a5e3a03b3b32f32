"""--train.precision auto: the run's own step timed in each precision, the faster finite one
chosen, the measurement cached and recorded."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers import tiny_config

from productgan.config import resolve
from productgan.data import PackedDataset
from productgan.train import calibration, resume, train
from productgan.train.calibration import choose_precision, images_per_second


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))


def auto_config(fake_packed, out, **overrides):
    config = tiny_config(fake_packed, out, **overrides)
    config.train.precision = "auto"
    return config


def test_the_step_is_timed_on_the_runs_own_networks_and_data(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(auto_config(fake_packed, tmp_path / "run"), dataset)
    rate = images_per_second(config, dataset, torch.device("cpu"), "fp32")
    assert rate > 0 and config.train.precision == "auto" and config.batch_size == 16  # left as it was
    assert images_per_second(config, dataset, torch.device("cpu"), "fp32", batch=4) > 0  # a probe


def test_a_precision_far_behind_in_its_probe_is_not_timed_further(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(auto_config(fake_packed, tmp_path / "run"), dataset)
    calls = []

    def measure(c, d, dev, precision, batch=None):
        calls.append((precision, batch))
        return {"fp32": 800.0, "bf16": 50.0}[precision] / (2 if batch == 4 else 1)

    record = choose_precision(config, dataset, torch.device("cpu"), measure=measure)
    assert calls == [("fp32", 4), ("bf16", 4), ("fp32", 16)]  # the full one: the batch of each process
    assert record["chosen"] == "fp32" and record["images_per_s"] == {"fp32": 800.0, "bf16": None}
    assert record["probe_images_per_s"] == {"fp32": 400.0, "bf16": 25.0}


@pytest.mark.parametrize(
    "rates, chosen",
    [
        ({"fp32": 200.0, "bf16": 400.0}, "bf16"),
        ({"fp32": 300.0, "bf16": 150.0}, "fp32"),
        ({"fp32": 90.0, "bf16": None}, "fp32"),
    ],
)
def test_the_faster_precision_whose_losses_stay_finite_is_chosen(fake_packed, tmp_path, rates, chosen):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(auto_config(fake_packed, tmp_path / "run"), dataset)
    record = choose_precision(config, dataset, torch.device("cpu"), measure=lambda c, d, dev, p, batch=None: rates[p])
    assert record["chosen"] == chosen and record["images_per_s"] == rates and record["cached"] is False
    assert config.train.precision == chosen and config.train.precision_measured == record


def test_a_measurement_is_cached_per_step_shape_and_device(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    timed = []

    def measure(config, data, device, precision, batch=None):
        timed.append(precision)
        return {"fp32": 200.0, "bf16": 100.0}[precision]

    first = resolve(auto_config(fake_packed, tmp_path / "a"), dataset)
    choose_precision(first, dataset, torch.device("cpu"), measure=measure)
    again = resolve(auto_config(fake_packed, tmp_path / "b"), dataset)
    record = choose_precision(again, dataset, torch.device("cpu"), measure=measure)
    assert timed == ["fp32", "bf16"] * 2 and record["cached"] is True and again.train.precision == "fp32"
    wider = resolve(auto_config(fake_packed, tmp_path / "c"), dataset)
    wider.model.ngf = 8  # another step shape: measured again
    choose_precision(wider, dataset, torch.device("cpu"), measure=measure)
    assert timed == ["fp32", "bf16"] * 4


def test_a_run_records_the_choice_and_resumes_in_it(fake_packed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        calibration, "images_per_second", lambda c, d, dev, p, batch=None: {"fp32": 50.0, "bf16": 80.0}[p]
    )
    train(auto_config(fake_packed, tmp_path / "run", steps=2), progress=True)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert recorded["precision"] == "bf16" and recorded["precision_measured"]["images_per_s"] == {
        "fp32": 50.0,
        "bf16": 80.0,
    }
    assert "Precision bf16 (measured now on" in capsys.readouterr().err
    # A resume trains in the recorded precision, whatever the machine would measure now.
    monkeypatch.setattr(calibration, "images_per_second", lambda *args: pytest.fail("measured again"))
    assert resume(tmp_path / "run", steps=3, progress=False)["step"] == 3


def test_a_forced_precision_is_not_measured(fake_packed, tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "images_per_second", lambda *args: pytest.fail("measured"))
    train(tiny_config(fake_packed, tmp_path / "run", steps=1), progress=False)  # fp32, given
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["precision_measured"] is None


def test_a_precision_that_cannot_train_here_is_not_chosen(fake_packed, tmp_path):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(auto_config(fake_packed, tmp_path / "run"), dataset)

    def measure(c, d, dev, precision, batch=None):
        if precision == "bf16":
            raise RuntimeError("not implemented for 'BFloat16'")
        return 300.0

    record = choose_precision(config, dataset, torch.device("cpu"), measure=measure)
    assert record["chosen"] == "fp32" and record["images_per_s"] == {"fp32": 300.0, "bf16": None}


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_busy_machine_trains_on_the_thread_count_that_measured_faster(
    fake_packed, tmp_path, monkeypatch, two_threads
):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(tiny_config(fake_packed, tmp_path / "run"), dataset)
    monkeypatch.setattr(calibration, "busy_elsewhere", lambda: 3.0)
    timed = []

    def measure(config, dataset, device, precision, batch):
        timed.append(torch.get_num_threads())
        return {2: 95.0, 1: 316.0}[torch.get_num_threads()]

    record = calibration.choose_threads(config, dataset, torch.device("cpu"), measure=measure)
    assert timed == [2, 1] and record["chosen"] == 1 and record["images_per_s"] == {2: 95.0, 1: 316.0}
    assert config.train.threads == 1 and torch.get_num_threads() == 1
    assert "Threads: 1 (3.0 CPUs busy elsewhere; measured 2 threads 95, 1 thread 316" in calibration.describe_threads(
        record
    )


def test_an_idle_machine_keeps_the_default_count_without_timing(fake_packed, tmp_path, monkeypatch, two_threads):
    dataset = PackedDataset.load(fake_packed)
    config = resolve(tiny_config(fake_packed, tmp_path / "run"), dataset)
    monkeypatch.setattr(calibration, "busy_elsewhere", lambda: 0.1)
    record = calibration.choose_threads(config, dataset, torch.device("cpu"), measure=lambda *a: pytest.fail("timed"))
    assert record["chosen"] == 2 and config.train.threads == 2


def test_a_recorded_thread_count_is_kept_on_resume(fake_packed, tmp_path, monkeypatch, two_threads):
    """config.yaml records the count train decided, and a resume trains with it whatever the
    machine measures then."""
    monkeypatch.setattr(calibration, "busy_elsewhere", lambda: 3.0)
    monkeypatch.setattr(
        calibration, "images_per_second", lambda c, d, dev, p, b: {2: 95.0, 1: 316.0}[torch.get_num_threads()]
    )
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["train"]["threads"] == 1
    torch.set_num_threads(2)
    monkeypatch.setattr(calibration, "busy_elsewhere", lambda: pytest.fail("measured again on resume"))
    resume(tmp_path / "run", steps=3, progress=False)
    assert torch.get_num_threads() == 1
