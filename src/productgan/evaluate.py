"""Score a generator against held-out real images, with the protocol and the real-data floor.

Every number comes from productgan's own evaluator network (a classifier trained on the
dataset's train split), so the names say so: ``fid_productgan``, not FID.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from productgan.data import PackedDataset, is_packed_dataset
from productgan.errors import UsageError
from productgan.files import write_text_atomic
from productgan.metrics import (
    classification_accuracy_score,
    compute_all,
    features_and_probabilities,
    load_or_train_evaluator,
    memorisation,
    native_images,
)
from productgan.metrics.registry import METRICS
from productgan.sampling import Sampler, load_generator

CACHE_ENV = "PRODUCTGAN_CACHE"
MEMORISATION_REFERENCE = 10_000  # training images the memorisation check compares against
SPLITS = ("train", "val", "test")
CLASS_METRICS = ("classifier_score", "class_histogram")  # need the dataset's own classes


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "productgan").expanduser()


def evaluator_cache_dir(data: str, dataset: PackedDataset) -> Path:
    """Beside a packed dataset; for a dataset built on the fly, in the user cache, per source and size."""
    path = Path(data).expanduser()
    if path.is_dir() and is_packed_dataset(path):
        return path / "evaluator"
    name = str(dataset.meta.get("source") or path.name).replace("/", "-")
    return cache_root() / "evaluators" / f"{name}-{dataset.image_size}"


class Evaluator:
    """The evaluator network of one dataset plus cached real features, reused across calls
    (the training loop scores the validation split many times)."""

    def __init__(self, data: str, dataset: PackedDataset, progress: bool = True, device: str = "cpu"):
        self.dataset = dataset
        self.net, self.info = load_or_train_evaluator(
            dataset, evaluator_cache_dir(data, dataset), progress=progress, device=device
        )
        self._real: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def labelled(self) -> bool:
        """False for an unlabelled dataset, whose evaluator learned rotations, not classes."""
        return self.info.get("task", "classes") == "classes"

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
                pick = np.sort(np.random.default_rng(seed).choice(len(images), size=count, replace=False))
                images = images[pick]
            self._real[key] = features_and_probabilities(self.net, images)
        return self._real[key]

    def score(
        self,
        sampler: Sampler,
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


# The neighbour-based metrics need more images than their k: precision / recall (k = 3) on both
# sides, density / coverage (k = 5) on the real side.
MIN_GENERATED, MIN_REFERENCE = 4, 6


def check_reference(dataset: PackedDataset, split: str, flag: str) -> None:
    """A UsageError when ``split`` holds too few images to score generated ones against."""
    count = len(dataset.indices(split))
    if count < MIN_REFERENCE:
        raise UsageError(
            f"{flag}: the {split} split holds {count} image(s), and scoring needs at least "
            f"{MIN_REFERENCE}; prepare the dataset with a larger {split} share."
        )


def check_cas(sampler: Sampler) -> None:
    """A UsageError unless ``sampler`` is class-conditional (CAS needs labelled generated images)."""
    if not sampler.conditional:
        raise UsageError(
            "--cas needs a class-conditional generator (train it with --conditional); this one draws no class labels."
        )


def evaluate_cas(
    sampler: Sampler, dataset: PackedDataset, split: str, n: int, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """Classification accuracy score of a class-conditional generator: a classifier of the
    evaluator's design trained on n generated images (every class in turn), tested on ``split``,
    beside the same classifier trained on n real train images."""
    check_cas(sampler)

    def generate(count: int, gen_seed: int) -> tuple[np.ndarray, np.ndarray]:
        return sampler(n=count, seed=gen_seed).numpy(), sampler.labels(count).numpy()

    train = (native_images(dataset, "train"), dataset.labels[dataset.indices("train")])
    reference = (native_images(dataset, split), dataset.labels[dataset.indices(split)])
    return classification_accuracy_score(generate, train, reference, dataset.num_classes, n, seed, device=device)


def evaluate_inception(
    weights: str | os.PathLike,
    sampler: Sampler,
    dataset: PackedDataset,
    split: str,
    n: int,
    seed: int,
    floor: bool,
    device: str = "cpu",
    net_and_info=None,
) -> dict[str, Any]:
    """The standard FID and KID with the user's Inception-v3 weights file: n generated images
    against the whole ``split``, and (``floor``) n real train images against it too."""
    from productgan.metrics.frechet import fid_from_features
    from productgan.metrics.inception import inception_features, load_inception
    from productgan.metrics.kid import kid
    from productgan.metrics.registry import KID_SUBSET_SIZE, KID_SUBSETS

    net, info = net_and_info or load_inception(weights, device)
    real = inception_features(net, native_images(dataset, split))

    def scores(features: torch.Tensor) -> dict[str, float]:
        mean, std = kid(real, features, KID_SUBSETS, KID_SUBSET_SIZE, seed)
        return {
            "fid_inception": fid_from_features(real, features),
            "kid_inception_mean": mean,
            "kid_inception_std": std,
        }

    result = {"metrics": scores(inception_features(net, sampler(n=n, seed=seed).numpy()))}
    if floor:
        train = native_images(dataset, "train")
        count = min(n, len(train))
        pick = np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False))
        result["real_data_floor"] = scores(inception_features(net, train[pick]))
    note = (
        "the standard file: comparable with published FID/KID computed the same way (pytorch-fid resizing)"
        if info["standard"]
        else "NOT the standard file (its SHA-256 does not start with 6726825d): not comparable with published figures"
    )
    result["protocol"] = {
        **info,
        "note": note,
        "features": "Inception-v3 pool3, 2048 dims; bilinear resize to 299",
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": min(KID_SUBSET_SIZE, n, len(real)),
    }
    return result


def evaluate_run(
    source: str | os.PathLike,
    split: str = "test",
    n: int = 10_000,
    seed: int = 0,
    floor: bool = True,
    progress: bool = True,
    device: str = "cpu",
    cas: bool = False,
    inception_weights: str | os.PathLike | None = None,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Evaluate the exported generator of a run directory (or an export folder with its dataset)
    with latent vectors at ``temperature``; ``cas`` adds the classification accuracy score
    (class-conditional generators) and ``inception_weights`` the standard FID / KID with that
    Inception-v3 file."""
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}.")
    if n < MIN_GENERATED:
        raise UsageError(f"--n must be at least {MIN_GENERATED}, not {n}.")
    from productgan.train import load_run_config, open_recorded_dataset

    run_dir = Path(source)
    config = load_run_config(run_dir)
    sampler = load_generator(run_dir, device=device, temperature=temperature)
    dataset = open_recorded_dataset(config, run_dir)
    check_reference(dataset, split, "--split")
    if cas:
        check_cas(sampler)  # refuses before the slow part
    inception = None
    if inception_weights is not None:
        from productgan.metrics.inception import load_inception

        inception = load_inception(inception_weights, device)  # a wrong file fails before the slow part
    started = time.perf_counter()
    evaluator = Evaluator(config.data, dataset, progress=progress, device=device)
    results = evaluator.score(sampler, split, n, seed)
    reference_count = len(dataset.indices(split))
    report: dict[str, Any] = {
        "metrics": {k: v for k, v in results.items() if k != "protocol"},
        "protocol": {
            **results["protocol"],
            "extractor": evaluator.describe(),
            "evaluator_weights_sha256": evaluator.info.get("weights_sha256"),
            "reference_split": split,
            "num_reference": reference_count,
            "num_generated": n,
            "memorisation_reference": f"{min(MEMORISATION_REFERENCE, len(dataset.indices('train')))} train images",
            "generator": str(Path(source) / "generator"),
            "generator_step": sampler.info.get("step"),
            "latent_temperature": sampler.temperature,
            "image_size": "native " + "x".join(map(str, sampler.native_size)),
        },
    }
    if floor:
        floor_n = min(n, len(dataset.indices("train")))
        floor_results = evaluator.floor(split, floor_n, seed)
        report["real_data_floor"] = {k: v for k, v in floor_results.items() if k != "protocol"}
        report["protocol"]["real_data_floor"] = f"{floor_n} real train images against the same {split} split"
    if cas:
        scored = evaluate_cas(sampler, dataset, split, n, seed, device)
        report["metrics"]["cas"] = scored["cas"]
        report["real_data_floor"] = {**report.get("real_data_floor", {}), "cas": scored["cas_real_baseline"]}
        report["protocol"]["cas"] = {**scored["protocol"], "reference_split": split}
    if inception is not None:
        standard = evaluate_inception(inception_weights, sampler, dataset, split, n, seed, floor, device, inception)
        report["metrics"].update(standard["metrics"])
        if floor:
            report["real_data_floor"].update(standard["real_data_floor"])
        report["protocol"]["inception"] = standard["protocol"]
    report["protocol"]["seconds"] = round(time.perf_counter() - started, 1)
    return report


TABLE_ROWS = [
    ("fid_productgan", "fid_productgan", "{:.4f}", "Frechet distance in evaluator features, lower is better"),
    ("kid_productgan_mean", "kid_productgan", "{:.5f}", "lower is better"),
    ("fid_inception", "FID (Inception-v3 file)", "{:.3f}", "see the inception note below"),
    ("kid_inception_mean", "KID (Inception-v3 file)", "{:.5f}", "see the inception note below"),
    ("precision", "precision (k=3)", "{:.3f}", "realism, higher is better"),
    ("recall", "recall (k=3)", "{:.3f}", "diversity, higher is better"),
    ("density", "density (k=5)", "{:.3f}", "realism, about 1 for real data"),
    ("coverage", "coverage (k=5)", "{:.3f}", "diversity, higher is better"),
    ("classifier_score", "classifier score", "{:.3f}", "higher is better, at most the class count"),
    ("rarest_class_share", "rarest class share", "{:.3f}", "mode-collapse alarm: 1/classes when balanced"),
    (
        "cas",
        "classification accuracy (CAS)",
        "{:.4f}",
        "classifier trained on generated images, tested on real; floor: trained on as many real images",
    ),
    (
        "memorisation_share",
        "memorisation share",
        "{:.3f}",
        "closer to a train image than train images are to each other; floor: held-out real images",
    ),
]


def format_report(report: dict[str, Any]) -> str:
    metrics, floor = report["metrics"], report.get("real_data_floor", {})
    lines = [f"{'metric':<28}{'generated':>12}{'real floor':>12}   note"]
    for key, label, fmt, note in TABLE_ROWS:
        value = metrics.get(key)
        if value is None:
            continue
        shown = fmt.format(value)
        if key == "fid_productgan" and metrics.get("fid_productgan_ci95"):
            low, high = metrics["fid_productgan_ci95"]
            note = f"95% CI {low:.4f}-{high:.4f}; {note}"
        real = floor.get(key)
        lines.append(f"{label:<28}{shown:>12}{fmt.format(real) if real is not None else '-':>12}   {note}")
    p = report["protocol"]
    lines += [
        "",
        f"extractor: {p['extractor']}",
        f"generated: {p['num_generated']} at {p['image_size']}; reference: {p['num_reference']} images of the "
        f"{p['reference_split']} split; seed {p['seed']}; {p['seconds']} s",
    ]
    if p.get("latent_temperature", 1.0) != 1.0:
        lines.append(f"latent temperature: {p['latent_temperature']:g} (1 is what the generator was trained on)")
    if "real_data_floor" in p:
        lines.append(f"real floor: {p['real_data_floor']}")
    if "inception" in p:
        lines.append(f"inception: {p['inception']['file']}: {p['inception']['note']}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    return write_text_atomic(path, json.dumps(report, indent=2) + "\n")
