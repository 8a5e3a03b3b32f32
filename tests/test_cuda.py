"""The GPU path: training in each precision, resume, export and sampling on a CUDA device.

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
from productgan.sampling import load_generator
from productgan.train import resume, train

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
