"""Numeric precision of the training step: the autocast dtype and the loss scalers."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from productgan.errors import UsageError


def cpu_has_native_bf16() -> bool:
    """True on CPUs that list AVX-512 BF16 or AMX. Benchmarks record it beside their figures; it
    decides nothing, since the flag has come with bfloat16 at four times float32's speed on one
    CPU and at half of it on another (train/calibration.py measures instead)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32.

    'auto' is decided by measurement before a run starts (train/calibration.py); a Trainer
    given 'auto' unmeasured takes what is safe without one: bfloat16 on GPUs that have it
    (Ampere and newer), float16 with a gradient scaler on older GPUs, float32 on CPUs.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UsageError("--train.precision fp16 is for CUDA GPUs; on a CPU use bf16 or fp32.")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


class Precision:
    """The step's autocast context and one gradient scaler per network (float16 needs loss
    scaling to keep small gradients; under other dtypes the scalers pass values through)."""

    def __init__(self, precision: str, device: torch.device):
        self.device_type = device.type
        self.dtype = resolve_precision(precision, device)
        fp16 = self.dtype == torch.float16
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
