"""Classification accuracy score (Ravuri & Vinyals 2019): how well a classifier trained only on
generated, labelled images classifies real held-out images, beside the same classifier trained on
as many real images. A class-conditional generator that drops or blurs a class scores low on it
even when its images look real."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from productgan.metrics.features import class_probabilities, train_evaluator


def _accuracy(net, images, labels) -> float:
    predicted = class_probabilities(net, images).argmax(dim=1)
    return float((predicted == torch.as_tensor(np.asarray(labels))).double().mean())


def classification_accuracy_score(
    generate: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    real_train: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    n: int,
    seed: int = 0,
    **train_settings: Any,
) -> dict[str, Any]:
    """CAS of ``generate(n, seed) -> (uint8 images N x C x H x W, int labels)`` against ``real_test``.

    Both classifiers use the evaluator's architecture and training recipe (``train_settings`` are
    passed to ``train_evaluator``); the real baseline is trained on ``n`` seeded real train images.
    """
    fake_images, fake_labels = generate(n, seed)
    test_images, test_labels = real_test
    on_fake = train_evaluator(fake_images, fake_labels, num_classes, seed=seed, progress=False, **train_settings)
    train_images, train_labels = real_train
    pick = np.sort(np.random.default_rng(seed).choice(len(train_images), size=min(n, len(train_images)), replace=False))
    on_real = train_evaluator(
        train_images[pick], np.asarray(train_labels)[pick], num_classes, seed=seed, progress=False, **train_settings
    )
    return {
        "cas": _accuracy(on_fake, test_images, test_labels),
        "cas_real_baseline": _accuracy(on_real, test_images, test_labels),
        "protocol": {
            "num_generated": len(fake_images),
            "num_real_train": len(pick),
            "num_test": len(test_images),
            "seed": seed,
            "classifier": "the evaluator's architecture and recipe, trained from scratch twice",
        },
    }
