"""A proxy classifier trained on real images with or without synthetic ones, by a recipe.

The question a team asks of a synthetic set is whether it makes *their* classifier better. The
proxy answers it with the evaluator's network and training recipe (``evaluator/training.py``)
trained for exactly ``steps`` SGD steps of 128 images, so that more images never also means
more training. A ``Recipe`` says how synthetic images enter the batches:

    real      none (the baseline)
    pooled    pooled with the real images, every image drawn equally often
    half      at most half of each batch synthetic (less when the synthetic set is the smaller, in
              proportion to the two sets' sizes), the rest real
    soft      as half, each synthetic image's target half its category, half a teacher's softened
              probabilities (soft labels); the teacher is the real-only classifier of the same seed
    bridged   the first half of the steps on synthetic images alone, the rest on real ones
    stream    as soft, with fresh images every batch (``explore/stream.py``), the teacher dropping
              those it gives to another category and the easiest 30%, the categories drawn so that
              the batches are balanced (``balancing_weights``)

``docs/synth.md`` has what each recipe measured on Fashion-MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from productgan.errors import UsageError
from productgan.evaluator import EvaluatorConfig, EvaluatorNet, class_probabilities
from productgan.evaluator.training import LABEL_SMOOTHING, fit_classifier, new_network
from productgan.explore.stream import SynthStream

BATCH = 128  # images per step
SOFT_TEMPERATURE = 2.0  # the evaluator's probabilities are softened as p ** (1 / T), renormalised
STREAM_EASIEST = 0.3  # the share of each drawn chunk a stream recipe drops as the easiest


@dataclass(frozen=True)
class Recipe:
    """How synthetic images join a classifier's training (module docstring)."""

    name: str
    synthetic_share: float | None = 0.5  # of each batch at most (a set's share of all images when less); None: pooled
    soft: bool = False  # synthetic targets: the evaluator's softened probabilities
    asked_share: float = 0.0  # of a soft target, the share given to the category asked for (one-hot)
    bridge: float = 0.0  # share of the steps on synthetic images alone, before the real ones
    stream: bool = False  # fresh images every batch instead of a set made once


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe("real", synthetic_share=0.0),
        Recipe("pooled", synthetic_share=None),
        Recipe("half"),
        Recipe("soft", soft=True, asked_share=0.5),
        Recipe("bridged", synthetic_share=1.0, bridge=0.5),
        Recipe("stream", soft=True, asked_share=0.5, stream=True),
    )
}


def recipe_named(name: str) -> Recipe:
    """The recipe called ``name``, or one sentence listing them."""
    if name not in RECIPES:
        raise UsageError(f"Unknown recipe {name!r}; the recipes are {', '.join(RECIPES)}.")
    return RECIPES[name]


@dataclass
class Labelled:
    """Native-size uint8 images (N x C x H x W), class indices and, for synthetic images, the
    evaluator's probabilities (N x classes) when known."""

    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


class _Cycle:
    """Rows of a set in seeded shuffled passes, one pass after another."""

    def __init__(self, count: int, rng: np.random.Generator):
        self.count, self.rng, self.order, self.position = count, rng, np.empty(0, np.int64), 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.position == len(self.order):
                self.order, self.position = self.rng.permutation(self.count), 0
            part = self.order[self.position : self.position + n]
            self.position += len(part)
            n -= len(part)
            out.append(part)
        return np.concatenate(out) if out else np.empty(0, np.int64)


def balancing_weights(labels: np.ndarray, classes: int, share: float) -> np.ndarray:
    """The proportions in which to draw synthetic categories so that batches whose ``share`` is
    synthetic (the rest drawn from the real ``labels``) hold every category as evenly as they can:
    (1 / classes - (1 - share) x real share of c) / share, negative ones set to 0, renormalised."""
    real = np.bincount(labels, minlength=classes) / max(len(labels), 1)
    weights = np.clip((1 / classes - (1 - share) * real) / share, 0, None)
    return weights / weights.sum() if weights.sum() > 0 else np.full(classes, 1 / classes)


def soft_targets(probabilities: np.ndarray, temperature: float = SOFT_TEMPERATURE) -> np.ndarray:
    """Probabilities softened as p ** (1 / temperature), each row renormalised to sum to 1."""
    softened = np.power(np.clip(probabilities, 1e-12, 1.0), 1.0 / temperature)
    return (softened / softened.sum(axis=1, keepdims=True)).astype(np.float32)


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """The recipe's smoothed one-hot targets (what label smoothing 0.1 trains towards)."""
    out = np.full((len(labels), classes), LABEL_SMOOTHING / classes, np.float32)
    out[np.arange(len(labels)), labels] += 1 - LABEL_SMOOTHING
    return out


def train_proxy(
    real: Labelled,
    classes: int,
    recipe: Recipe,
    steps: int,
    seed: int = 0,
    synthetic: Labelled | None = None,
    stream: SynthStream | None = None,
    progress: bool = False,
) -> EvaluatorNet:
    """The evaluator's network trained on ``real`` (and ``synthetic`` images, or ``stream``'s for
    a stream recipe) for ``steps`` steps of BATCH images by ``recipe``; seeded, eval mode."""
    if recipe.synthetic_share != 0 and (stream if recipe.stream else synthetic) is None:
        raise UsageError(f"The recipe {recipe.name!r} needs synthetic images.")
    rng = np.random.default_rng(seed)
    real_rows = _Cycle(len(real), rng)
    synthetic_rows = _Cycle(len(synthetic), rng) if synthetic is not None and not recipe.stream else None
    pooled_share = len(synthetic) / (len(synthetic) + len(real)) if synthetic is not None else 0.0

    def draw_synthetic(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if recipe.stream:
            batch = stream.take(n)
            return batch.images, batch.labels, batch.probabilities
        rows = synthetic_rows.take(n)
        probabilities = None if synthetic.probabilities is None else synthetic.probabilities[rows]
        return synthetic.images[rows], synthetic.labels[rows], probabilities

    def batch_of(share: float):
        def batch(step: int):
            n_synthetic = int(rng.binomial(BATCH, share)) if recipe.synthetic_share is None else round(BATCH * share)
            rows = real_rows.take(BATCH - n_synthetic)
            images, labels, probabilities = [real.images[rows]], [real.labels[rows]], None
            if n_synthetic:
                s_images, s_labels, probabilities = draw_synthetic(n_synthetic)
                images.append(s_images)
                labels.append(s_labels)
            inputs = torch.from_numpy(np.concatenate(images)).float()
            if not recipe.soft:
                return inputs, torch.from_numpy(np.concatenate(labels).astype(np.int64))
            targets = one_hot(np.concatenate(labels), classes)
            if n_synthetic:
                if probabilities is None:
                    raise UsageError(f"The recipe {recipe.name!r} needs the evaluator's probabilities of each image.")
                asked = recipe.asked_share
                targets[-n_synthetic:] = asked * targets[-n_synthetic:] + (1 - asked) * soft_targets(probabilities)
            return inputs, torch.from_numpy(targets)

        return batch

    share = pooled_share if recipe.synthetic_share is None else recipe.synthetic_share
    if synthetic is not None and not recipe.stream and recipe.bridge == 0:
        share = min(share, pooled_share)  # a smaller synthetic set is not repeated more often than the real one
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = new_network(torch.from_numpy(real.images), classes, EvaluatorConfig(seed=seed))
        first = round(steps * recipe.bridge)
        if first:
            fit_classifier(net, batch_of(share), first, EvaluatorConfig().lr, progress=progress)
        rest = batch_of(0.0) if first else batch_of(share)
        fit_classifier(net, rest, steps - first, EvaluatorConfig().lr, progress=progress, first_step=first)
    return net.eval().requires_grad_(False)


def scores(net: EvaluatorNet, held_out: Labelled, classes: int) -> dict:
    """Accuracy and each category's recall on ``held_out`` (None for a category it has no images of)."""
    predicted = class_probabilities(net, held_out.images).argmax(dim=1).numpy()
    recall = [float((predicted[held_out.labels == c] == c).mean()) if (held_out.labels == c).any() else None
              for c in range(classes)]  # fmt: skip
    return {"accuracy": float((predicted == held_out.labels).mean()), "recall": recall}


def train_arm(
    real: Labelled,
    classes: int,
    recipe: Recipe,
    steps: int,
    seed: int,
    teacher: EvaluatorNet,
    synthetic: Labelled | None = None,
    sampler=None,
) -> EvaluatorNet:
    """``train_proxy`` for one recipe, its soft labels (and a stream's filter) from ``teacher``,
    the real-only classifier of the same seed; a stream recipe draws from ``sampler``."""
    stream = None
    if recipe.stream:
        weights = balancing_weights(real.labels, classes, recipe.synthetic_share)
        stream = SynthStream(sampler, teacher, seed=seed, easiest=STREAM_EASIEST, weights=weights)
    elif recipe.soft and synthetic is not None:
        probabilities = class_probabilities(teacher, synthetic.images).float().numpy()
        synthetic = Labelled(synthetic.images, synthetic.labels, probabilities)
    return train_proxy(real, classes, recipe, steps, seed, synthetic=synthetic, stream=stream)


def compare(
    real: Labelled,
    held_out: Labelled,
    classes: int,
    recipe: Recipe,
    steps: int,
    seeds: int,
    synthetic: Labelled | None = None,
    sampler=None,
    progress: bool = False,
) -> list[dict]:
    """For each seed, the real-only classifier and the ``recipe``'s (``train_arm``), both scored
    on ``held_out``: ``[{"real": scores, "synthetic": scores}, ...]``."""
    out = []
    bar = tqdm(total=seeds * 2, unit="classifier", desc="uplift", disable=not progress, dynamic_ncols=True)
    for seed in range(seeds):
        teacher = train_proxy(real, classes, RECIPES["real"], steps, seed)
        bar.update(1)
        net = train_arm(real, classes, recipe, steps, seed, teacher, synthetic, sampler)
        bar.update(1)
        out.append({"real": scores(teacher, held_out, classes), "synthetic": scores(net, held_out, classes)})
    bar.close()
    return out
