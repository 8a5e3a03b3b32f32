"""Plain helpers shared by test files (pytest puts tests/ on sys.path)."""

from __future__ import annotations

from productgan.config import ModelConfig, RunConfig, TrainConfig


def tiny_config(data, out, **overrides) -> RunConfig:
    config = RunConfig(
        data=str(data),
        out=str(out),
        batch_size=16,
        steps=6,
        model=ModelConfig(nz=8, ngf=4, ndf=4),
        train=TrainConfig(precision="fp32", log_every=2, sample_every=3, checkpoint_every=2, grid_size=4),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config
