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

import torch

from productgan import run
from productgan.data import PackedDataset
from productgan.data.subsets import seeded_subset
from productgan.errors import UsageError
from productgan.evaluator import MEMORISATION_REFERENCE, Evaluator, check_cas, evaluate_cas, native_images
from productgan.files import write_text_atomic
from productgan.generator.sampler import Sampler, load_generator
from productgan.metrics.frechet import fid_from_features
from productgan.metrics.inception import inception_features, load_inception
from productgan.metrics.kid import kid
from productgan.metrics.registry import KID_SUBSET_SIZE, KID_SUBSETS, MIN_GENERATED, check_reference
from productgan.run import load_run_config, open_recorded_dataset, refresh_model_card

SPLITS = ("train", "val", "test")


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
        result["real_data_floor"] = scores(inception_features(net, train[seeded_subset(len(train), n, seed)]))
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
    run_dir = Path(source)
    config = load_run_config(run_dir)
    sampler = load_generator(run_dir, device=device, temperature=temperature)
    sampler.check_memory(n)  # before the evaluator, which may train for minutes
    dataset = open_recorded_dataset(config, run_dir)
    check_reference(dataset, split, "--split")
    if cas:
        check_cas(sampler)  # refuses before the slow part
    inception = None
    if inception_weights is not None:
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
            "generator": str(Path(source) / run.GENERATOR_DIR),
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


def write_report(report: dict[str, Any], path: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> Path:
    """Write ``report`` as JSON at ``path``; with ``run_dir``, then write the model card of that
    run's export again, so that it shows the run's reports."""
    written = write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    if run_dir is not None:
        refresh_model_card(run_dir)
    return written
