"""``Evaluator``: a dataset's evaluator network plus its real features, scoring generated images."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from productgan.data import PackedDataset
from productgan.data.subsets import seeded_subset
from productgan.evaluator.cache import evaluator_cache_dir, load_or_train_evaluator
from productgan.evaluator.config import DEFAULT_CONFIG, EvaluatorConfig
from productgan.evaluator.inference import features_and_probabilities, native_images
from productgan.evaluator.training import CLASSES_TASK
from productgan.metrics import compute_all, memorisation
from productgan.metrics.registry import METRICS

MEMORISATION_REFERENCE = 10_000  # training images the memorisation check compares against
CLASS_METRICS = ("classifier_score", "class_histogram")  # need the dataset's own classes


class ImageSource(Protocol):
    """What gets scored: ``productgan.generator.sampler.Sampler``, or anything called the same way."""

    def __call__(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` uint8 images N x C x H x W at the dataset's native size, fixed by ``seed``."""
        ...


class Evaluator:
    """The evaluator network of one dataset plus cached real features, reused across calls
    (the training loop scores the validation split many times)."""

    def __init__(
        self,
        data: str,
        dataset: PackedDataset,
        progress: bool = True,
        device: str = "cpu",
        config: EvaluatorConfig = DEFAULT_CONFIG,
    ):
        self.dataset = dataset
        self.net, self.info = load_or_train_evaluator(
            dataset, evaluator_cache_dir(data, dataset), config, progress=progress, device=device
        )
        self._real: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def labelled(self) -> bool:
        """False for an unlabelled dataset, whose evaluator learned rotations, not classes."""
        return self.info.get("task", CLASSES_TASK) == CLASSES_TASK

    def metric_names(self, names: list[str] | None = None) -> list[str] | None:
        """``names`` (None: all) without the class-based metrics where there are no classes."""
        if self.labelled:
            return names
        return [n for n in (names or list(METRICS)) if n not in CLASS_METRICS]

    def describe(self) -> str:
        accuracy = self.info.get("test_accuracy")
        acc = f"{accuracy:.2%}" if accuracy is not None else "n/a"
        if not self.labelled:
            return (
                f"productgan evaluator (unlabelled dataset): CNN trained on the train split of "
                f"{self.dataset.meta.get('source', 'the dataset')} to tell how each image was rotated "
                f"(0/90/180/270 degrees; test accuracy {acc}); features: its penultimate layer "
                f"({self.net.feature_dim} dims). They describe this dataset only, so its scores compare "
                f"runs on this dataset with each other and with nothing else; class-based metrics do not apply"
            )
        return (
            f"productgan evaluator: CNN classifier trained on the train split of "
            f"{self.dataset.meta.get('source', 'the dataset')} (test accuracy {acc}); "
            f"features: its penultimate layer ({self.net.feature_dim} dims)"
        )

    def real(self, split: str, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and class probabilities of up to ``n`` images of ``split`` (a seeded choice)."""
        total = len(self.dataset.indices(split))
        count = total if n is None else min(n, total)
        key = (split, count, seed)
        if key not in self._real:
            images = native_images(self.dataset, split)
            if count < len(images):
                images = images[seeded_subset(len(images), count, seed)]
            self._real[key] = features_and_probabilities(self.net, images)
        return self._real[key]

    def score(
        self,
        sampler: ImageSource,
        split: str,
        n: int,
        seed: int = 0,
        memorisation: bool = True,
        metrics: list[str] | None = None,
    ) -> dict[str, Any]:
        """Metrics of ``n`` generated images against the images of ``split``."""
        fake_feats, fake_probs = features_and_probabilities(self.net, sampler(n=n, seed=seed).numpy())
        return self.score_features(fake_feats, fake_probs, split, seed, memorisation, metrics)

    def score_features(
        self,
        fake_feats: torch.Tensor,
        fake_probs: torch.Tensor,
        split: str,
        seed: int = 0,
        memorisation: bool = True,
        metrics: list[str] | None = None,
    ) -> dict[str, Any]:
        """Metrics of generated images' features (as from this evaluator) against ``split``."""
        real_feats, _ = self.real(split)
        train_feats = self.real("train", MEMORISATION_REFERENCE, seed)[0] if memorisation else None
        if metrics is not None and "memorisation" not in metrics:
            train_feats = None
        return compute_all(
            real_feats,
            fake_feats,
            fake_probs,
            self.info["class_names"],
            train_feats=train_feats,
            seed=seed,
            metrics=self.metric_names(metrics),
        )

    def floor(self, split: str, n: int, seed: int = 0) -> dict[str, Any]:
        """The same metrics for ``n`` real train images against ``split``: how good 'perfect' looks."""
        real_feats, _ = self.real(split)
        train_feats, train_probs = self.real("train", n, seed)
        floor = compute_all(
            real_feats, train_feats, train_probs, self.info["class_names"], seed=seed, metrics=self.metric_names(None)
        )
        # Train images against themselves would all be 'copies'; the held-out split's share is the
        # baseline a generator that copies nothing still reaches.
        reference = self.real("train", MEMORISATION_REFERENCE, seed)[0]
        floor["memorisation_share"] = memorisation(reference, real_feats)
        return floor
