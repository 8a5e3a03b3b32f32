"""Validation during training: the sampling generator scored on the validation split, and the
best score kept as checkpoints/best.pt."""

from __future__ import annotations

from typing import Any

import torch

from productgan.config import RunConfig
from productgan.data import PackedDataset
from productgan.evaluator import Evaluator, features_and_probabilities
from productgan.generator.export import pixel_range
from productgan.generator.latents import balanced_labels, noise
from productgan.generator.sampler import Sampler
from productgan.models import Generator, eval_mode
from productgan.train import distributed
from productgan.train.distributed import SINGLE, Context

VALIDATION_STREAM = 0x76616C  # the second word of the validation noise's seed
VALIDATION_METRIC = "fid_productgan"
VALIDATION_METRICS = ["fid_productgan", "precision_recall", "class_histogram"]


class Validator:
    """Scores a generator on the validation split every ``eval_every`` steps and remembers the
    best score; the evaluator network is loaded (or trained and cached) on first use."""

    def __init__(self, config: RunConfig, dataset: PackedDataset, device: torch.device, context: Context = SINGLE):
        self.config, self.dataset, self.device, self.context = config, dataset, device, context
        self.best: float | None = None  # best validation fid_productgan so far
        self.evals_without_gain = 0
        self._evaluator: Evaluator | None = None

    def due(self, step: int) -> bool:
        every = self.config.train.eval_every
        return bool(every) and step % every == 0

    @property
    def patience_spent(self) -> bool:
        patience = self.config.train.early_stop_patience
        return bool(patience) and self.evals_without_gain >= patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_val": self.best, "evals_without_gain": self.evals_without_gain}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best_val")
        self.evals_without_gain = int(state.get("evals_without_gain", 0))

    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            # Rank 0 trains and caches the evaluator if needed; the others then load it.
            if self.context.is_main:
                self._evaluator = self._load_evaluator()
            distributed.barrier(self.context)
            if not self.context.is_main:
                self._evaluator = self._load_evaluator()
        return self._evaluator

    def _load_evaluator(self) -> Evaluator:
        return Evaluator(self.config.data, self.dataset, progress=False, device=str(self.device))

    def score(self, generator: Generator, export_info: dict[str, Any]) -> tuple[dict[str, float], bool] | None:
        """The validation scores of ``generator`` and whether they are the best so far.

        Under torchrun each rank generates and featurises its share of the images; rank 0
        gathers the features, computes the metrics and returns them (other ranks get None).
        """
        config, ctx, n = self.config, self.context, self.config.train.eval_n
        net = self.evaluator().net
        with eval_mode(generator):
            sampler = Sampler(generator, {**export_info, "pixel_range": pixel_range(config.model)})
            # The same noise as a single process would draw, split into one share per rank.
            # A stream of its own: the vectors that pick best.pt are not among those `evaluate` scores
            # the test split with (there, seed S is the plain int S).
            vectors = noise(n, config.model.nz, (config.seed, VALIDATION_STREAM))
            share = vectors.tensor_split(ctx.world_size)[ctx.rank]
            start = sum(len(s) for s in torch.arange(n).tensor_split(ctx.world_size)[: ctx.rank])
            labels = balanced_labels(len(share), generator.num_classes, start) if generator.num_classes else None
            feats, probs = features_and_probabilities(net, sampler.from_noise(share, labels=labels).numpy())
        gathered = distributed.gather_to_main([feats, probs], ctx)
        if gathered is None:
            return None
        results = self.evaluator().score_features(*gathered, "val", seed=config.seed, metrics=VALIDATION_METRICS)
        score = float(results[VALIDATION_METRIC])
        improved = self.best is None or score < self.best
        if improved:
            self.best, self.evals_without_gain = score, 0
        else:
            self.evals_without_gain += 1
        scores = {
            f"val_{k}": float(results[k])
            for k in (VALIDATION_METRIC, "precision", "recall", "rarest_class_share")
            if results.get(k) is not None
        }
        return {**scores, "val_n": results["protocol"]["num_fake"]}, improved
