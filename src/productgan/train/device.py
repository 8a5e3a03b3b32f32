"""The device a training process runs on, and the machine settings that go with it."""

from __future__ import annotations

import torch

from productgan.config import TrainConfig
from productgan.sampling import resolve_device
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
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
    return device
