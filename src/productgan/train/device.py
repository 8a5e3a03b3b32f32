"""The device a training process runs on, and the machine settings that go with it."""

from __future__ import annotations

import sys

import torch

from productgan.config import TrainConfig
from productgan.generator.sampler import resolve_device
from productgan.machine import busy_cpus, usable_cpus
from productgan.train import distributed
from productgan.train.distributed import SINGLE, Context


def setup_device(train: TrainConfig, context: Context = SINGLE) -> torch.device:
    """This process's device (under torchrun, after joining the process group), with the CPU
    thread count and cuDNN's autotuning set as ``train`` asks."""
    if context.enabled:
        device = distributed.init(context, train.device)
    else:
        device = resolve_device(train.device, "--train.device")
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    elif device.type == "cpu" and context.enabled and context.is_main:
        warn_if_busy()  # one process alone decides its thread count by measurement (calibration)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)  # streams, graphs and synchronisation use the current device
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
    return device


def warn_if_busy(load: float | None = None, cpus: int | None = None) -> str | None:
    """Say so (on stderr, and returned) when the machine's CPUs are already busy: torch's threads
    then wait for each other, and training can run many times slower than on one thread."""
    load = busy_cpus() if load is None else load
    cpus = usable_cpus() if cpus is None else cpus
    if load is None or load < cpus:
        return None
    message = (
        f"Warning: this machine is busy (load {load:.1f} on {cpus} CPUs), and training's {torch.get_num_threads()} "
        f"threads would wait for one another; --train.threads 1 can be many times faster here."
    )
    print(message, file=sys.stderr)
    return message
