"""Where one training step's time goes on a CUDA GPU: kernels launched, GPU busy time, wall time.

    python benchmarks/step_profile.py                      # canonical 64x64, batch 64, bf16
    python benchmarks/step_profile.py --batch-size 256
    python benchmarks/step_profile.py --cuda-graph auto    # the step replayed as one CUDA graph

A step whose wall time is well above its GPU time is bound by the host launching kernels, not
by the GPU: a larger batch then costs little extra time per step.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from productgan.config import ModelConfig, RunConfig, TrainConfig, resolve
from productgan.data import open_dataset
from productgan.train import Trainer
from productgan.train.logs import StepStats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument(
        "--cuda-graph",
        default="off",
        choices=["auto", "on", "off"],
        help="off (default): the eager step, each kernel launched by the host; auto/on: graph replays.",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("This profile is for a CUDA GPU; none is visible.")

    config = RunConfig(
        out="unused",
        batch_size=args.batch_size,
        model=ModelConfig(nz=100, ngf=64, ndf=64),
        train=TrainConfig(precision=args.precision, device="cuda", cuda_graph=args.cuda_graph),
    )
    dataset = open_dataset("fashion-mnist", image_size=64)
    trainer = Trainer(resolve(config, dataset), Path("/nonexistent"), dataset)
    stats = StepStats.zeros(trainer.device)
    for _ in range(20):
        trainer.train_step(stats)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            trainer.train_step(stats)
        torch.cuda.synchronize()
    events = prof.key_averages()
    print(f"step replayed as a CUDA graph: {trainer.graph is not None and trainer.graph.active}")
    on_gpu = [e for e in events if e.device_type.name == "CUDA"]
    print(f"CUDA kernels per step: {sum(e.count for e in on_gpu) / 10:.0f}")
    print(f"GPU time per step: {sum(e.self_device_time_total for e in on_gpu) / 10 / 1000:.2f} ms")
    print(events.table(sort_by="self_cpu_time_total", row_limit=18))
    start = time.perf_counter()
    for _ in range(50):
        trainer.train_step(stats)
    stats.means()
    print(f"wall per step: {(time.perf_counter() - start) / 50 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
