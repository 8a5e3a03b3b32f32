"""Classification accuracy score (Ravuri & Vinyals 2019): how well a classifier trained only on
generated, labelled images classifies real held-out images, beside the same classifier trained on
as many real images. A class-conditional generator that drops or blurs a class scores low on it
even when its images look real."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.data.subsets import seeded_subset
from productgan.errors import UsageError
from productgan.evaluator.config import DEFAULT_CONFIG, EvaluatorConfig
from productgan.evaluator.inference import accuracy, labelled_images, native_images
from productgan.evaluator.training import train_evaluator


class LabelledImageSource(Protocol):
    """What CAS scores: a class-conditional ``productgan.generator.sampler.Sampler``, or anything alike."""

    @property
    def conditional(self) -> bool: ...

    def __call__(self, n: int, seed: int = 0) -> torch.Tensor: ...

    def labels(self, n: int) -> torch.Tensor | None: ...


def classification_accuracy_score(
    generate: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    real_train: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    n: int,
    seed: int = 0,
    config: EvaluatorConfig = DEFAULT_CONFIG,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """CAS of ``generate(n, seed) -> (uint8 images N x C x H x W, int labels)`` against ``real_test``.

    Both classifiers use the evaluator's architecture and training recipe (``config``, its seed
    replaced by ``seed``); the real baseline is trained on ``n`` seeded real train images.
    """
    config = replace(config, seed=seed)
    fake_images, fake_labels = generate(n, seed)
    test_images, test_labels = real_test
    on_fake = train_evaluator(fake_images, fake_labels, num_classes, config, progress=False, device=device)
    train_images, train_labels = real_train
    pick = seeded_subset(len(train_images), n, seed)
    on_real = train_evaluator(
        train_images[pick], np.asarray(train_labels)[pick], num_classes, config, progress=False, device=device
    )
    return {
        "cas": accuracy(on_fake, test_images, test_labels),
        "cas_real_baseline": accuracy(on_real, test_images, test_labels),
        "protocol": {
            "num_generated": len(fake_images),
            "num_real_train": len(pick),
            "num_test": len(test_images),
            "seed": seed,
            "classifier": "the evaluator's architecture and recipe, trained from scratch twice",
        },
    }


def check_cas(sampler: LabelledImageSource) -> None:
    """A UsageError unless ``sampler`` is class-conditional (CAS needs labelled generated images)."""
    if not sampler.conditional:
        raise UsageError(
            "--cas needs a class-conditional generator (train it with --conditional); this one draws no class labels."
        )


def evaluate_cas(
    sampler: LabelledImageSource,
    dataset: PackedDataset,
    split: str,
    n: int,
    seed: int = 0,
    device: str = "cpu",
    config: EvaluatorConfig = DEFAULT_CONFIG,
) -> dict[str, Any]:
    """Classification accuracy score of a class-conditional generator: a classifier of the
    evaluator's design trained on n generated images (every class in turn), tested on ``split``,
    beside the same classifier trained on n real train images."""
    check_cas(sampler)

    def generate(count: int, gen_seed: int) -> tuple[np.ndarray, np.ndarray]:
        return sampler(n=count, seed=gen_seed).numpy(), sampler.labels(count).numpy()

    train = labelled_images(dataset, "train")
    reference = (native_images(dataset, split), dataset.labels[dataset.indices(split)])
    return classification_accuracy_score(generate, train, reference, dataset.num_classes, n, seed, config, device)
