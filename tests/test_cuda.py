"""The GPU path: training in each precision, the step as a CUDA graph, resume, export and sampling
on a CUDA device.

These run only where a CUDA GPU is visible (the CPU suite checks the same logic on the CPU);
`benchmarks/throughput.py --device cuda` measures the same path's speed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import tiny_config

from productgan.checkpoint import load_checkpoint
from productgan.config import resolve
from productgan.data import open_dataset
from productgan.generator.sampler import load_generator
from productgan.train import Trainer, graphs, resume, train
from productgan.train.logs import StepStats

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_config(data, out, precision="fp32", steps=6):
    config = tiny_config(data, out, steps=steps)
    config.train.device = "cuda"
    config.train.precision = precision
    return config


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_the_gpu_in_each_precision(fake_packed, tmp_path, precision):
    run = tmp_path / precision
    summary = train(gpu_config(fake_packed, run, precision), progress=False)
    assert summary["step"] == 6
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [line[key] for line in lines for key in ("loss_d", "loss_g") if key in line]
    assert losses and all(math.isfinite(value) for value in losses)
    state = load_checkpoint(run / "checkpoints" / "last.pt")  # GPU tensors come back on the CPU
    assert all(t.device.type == "cpu" for t in state["G"].values())
    on_gpu, on_cpu = load_generator(run, device="cuda"), load_generator(run, device="cpu")
    a, b = on_gpu(n=8, seed=3), on_cpu(n=8, seed=3)
    assert a.dtype == torch.uint8 and a.device.type == "cpu"
    # Same noise, same weights: only float rounding (TF32 convolutions on the GPU) may differ.
    assert (a.int() - b.int()).abs().max() <= 3


def test_gpu_and_cpu_training_agree_over_the_first_steps(fake_packed, tmp_path):
    cpu = tiny_config(fake_packed, tmp_path / "cpu", steps=2)
    cpu.train.device = "cpu"
    train(cpu, progress=False)
    train(gpu_config(fake_packed, tmp_path / "gpu", steps=2), progress=False)
    a = load_checkpoint(tmp_path / "cpu" / "checkpoints" / "last.pt")["G"]
    b = load_checkpoint(tmp_path / "gpu" / "checkpoints" / "last.pt")["G"]
    for key, value in a.items():
        if value.is_floating_point():
            assert torch.allclose(value, b[key], atol=5e-3), key


def test_gpu_run_resumes_from_its_checkpoint(fake_packed, tmp_path):
    run = tmp_path / "run"
    train(gpu_config(fake_packed, run, "bf16", steps=4), progress=False)
    summary = resume(run, steps=8, progress=False)
    assert summary["step"] == 8
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8


def graph_trainer(data, out, mode: str, precision: str = "fp32") -> Trainer:
    config = gpu_config(data, out, precision, steps=10)
    config.model.conditional = True
    config.train.augment = True
    config.train.cuda_graph = mode
    dataset = open_dataset(str(data))
    resolve(config, dataset)
    return Trainer(config, out, dataset)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_step_as_a_cuda_graph_trains_as_the_eager_step(fake_packed, tmp_path, precision, capsys):
    """Ten steps (three eager, one checked, six replayed) against ten eager steps from the same
    start: in float32 every tensor moved as the eager run moved it, within the check's own
    tolerance; in bfloat16 (what auto picks on recent GPUs) the graph is kept and the losses agree."""
    states, sums, start = {}, {}, None
    for mode in ("off", "on"):
        trainer = graph_trainer(fake_packed, tmp_path / mode, mode, precision)
        stats = StepStats.zeros(trainer.device)
        trainer.train_step(stats)  # creates the optimisers' state, so that every run lists the same tensors
        if start is None:
            start = [t.detach().clone() for t in trainer._step_state()]
        for _ in range(9):
            trainer.train_step(stats)
        if mode == "on":
            assert trainer.graph.active and trainer.graph.dropped is None
        states[mode] = [t.detach().clone() for t in trainer._step_state()]
        sums[mode] = stats.sums.cpu()
    assert "runs without a CUDA graph" not in capsys.readouterr().err
    if precision == "fp32":
        assert torch.allclose(sums["on"], sums["off"], rtol=1e-2, atol=1e-4)
        assert graphs._differences(start, states["off"], states["on"]) == []
    else:
        assert torch.allclose(sums["on"], sums["off"], rtol=5e-2, atol=1e-3)


def test_a_step_that_cannot_be_captured_trains_on_eagerly(fake_packed, tmp_path):
    """A step that reads a value back while being captured (as a future change might) cannot be
    captured: the run says so and goes on eagerly, its noise generator usable again."""
    trainer = graph_trainer(fake_packed, tmp_path, "on")
    body = trainer.graph.body

    def syncing(reals, weight):
        values = body(reals, weight)
        if torch.cuda.is_current_stream_capturing():
            values.sum().item()
        return values

    trainer.graph.body = syncing
    stats = StepStats.zeros(trainer.device)
    for _ in range(7):
        trainer.train_step(stats)
    assert trainer.graph.dropped.startswith("it could not be captured here") and not trainer.graph.active
    assert all(math.isfinite(v) for v in stats.means().values())


def test_a_graphed_run_trains_in_bf16_and_resumes_on_the_cpu(fake_packed, tmp_path, capsys):
    run = tmp_path / "run"
    config = gpu_config(fake_packed, run, "bf16", steps=8)
    config.train.cuda_graph = "on"
    assert train(config, progress=False)["step"] == 8
    assert "runs without a CUDA graph" not in capsys.readouterr().err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["opt_g"]["param_groups"][0]["capturable"]
    cpu = tiny_config(fake_packed, run, steps=8)
    cpu.train.device = "cpu"
    dataset = open_dataset(str(fake_packed))
    resolve(cpu, dataset)
    trainer = Trainer(cpu, run, dataset, resume=True)
    assert trainer.step == 8 and not trainer.opt_g.param_groups[0]["capturable"]
    stats = StepStats.zeros(trainer.device)
    trainer.train_step(stats)
    assert all(math.isfinite(v) for v in stats.means().values())
