"""The evaluator's recipe: everything besides the training data that decides its weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EvaluatorConfig:
    """How an evaluator is built and trained; with the training data it fixes the weights, so it
    is also what a cached evaluator must match (see ``cache.py``).

    Defaults measured on Fashion-MNIST with 2 CPU cores (see ``training.train_evaluator``).
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)  # channels of the conv stages; all but the last end in a 2x2 max pool
    feature_dim: int = 128  # width of the penultimate layer, whose activations are the features
    max_side: int = 64  # inputs with a longer side than this are downscaled before the first conv
    epochs: int = 4  # passes over the train split
    batch_size: int = 128  # images per SGD step (the last incomplete batch is dropped)
    lr: float = 0.1  # peak of the one-cycle learning rate
    augment: bool = False  # random 2-pixel shifts and horizontal flips of the training images
    seed: int = 0  # initial weights, batch order, augmentation and the rotation task's turns

    def __post_init__(self) -> None:
        # Lists from JSON or a caller become a tuple, so configs compare and hash by value.
        object.__setattr__(self, "widths", tuple(int(width) for width in self.widths))

    def architecture(self, in_channels: int, num_classes: int, native_size: tuple[int, int] | list[int]) -> dict:
        """``EvaluatorNet``'s arguments for images of this shape (``architecture`` in evaluator.json)."""
        return {
            "in_channels": int(in_channels),
            "num_classes": int(num_classes),
            "native_size": [int(side) for side in native_size],
            "widths": list(self.widths),
            "feature_dim": int(self.feature_dim),
            "max_side": int(self.max_side),
        }

    def training(self) -> dict[str, Any]:
        """The training settings (``training`` in evaluator.json)."""
        return {
            "epochs": int(self.epochs),
            "seed": int(self.seed),
            "batch_size": int(self.batch_size),
            "lr": float(self.lr),
            "augment": bool(self.augment),
        }


DEFAULT_CONFIG = EvaluatorConfig()  # frozen, so one shared instance is a safe default argument
