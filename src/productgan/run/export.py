"""A run's exported generator: written from the model in training or from a checkpoint, with its
model card, and as ONNX on request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from productgan.checkpoint import load_checkpoint
from productgan.config import to_dict
from productgan.data import PackedDataset
from productgan.errors import ProductganError, UsageError
from productgan.generator.card import model_card, write_model_card
from productgan.generator.export import CONFIG_FILE as EXPORT_CONFIG
from productgan.generator.export import build_generator, write_export
from productgan.generator.onnx import OnnxExport, check_output, export_onnx
from productgan.generator.statistics import measure_statistics
from productgan.models import Generator
from productgan.run.folder import (
    BEST_CHECKPOINT,
    EVALUATION_DIR,
    GENERATOR_DIR,
    LAST_CHECKPOINT,
    locked,
    require_run_dir,
)
from productgan.run.records import load_run_config


def export_info(dataset: PackedDataset, seed: int, step: int, images_seen: int, ema: bool) -> dict[str, Any]:
    """What an export records beside the weights: the dataset facts a sampler needs to give
    images back at native size (classes, size, fitting), and where in training it was taken."""
    keys = ("native_size", "fit", "padded_size", "pad", "background")
    unlabelled = dataset.unlabelled_count
    return {
        "class_names": list(dataset.class_names),
        **{k: dataset.meta[k] for k in keys if k in dataset.meta},
        "dataset": dataset.meta.get("source"),
        "split_sizes": dataset.split_sizes(),
        "licence": dataset.meta.get("licence"),
        "step": step,
        "images_seen": images_seen,
        "ema": ema,
        "seed": seed,
        # a mixed-label training split: how many of its images have no category
        **({"unlabelled_images": unlabelled} if unlabelled else {}),
    }


def checkpoint_generator(state: dict[str, Any]) -> Generator:
    """The generator held in a checkpoint (the EMA one when kept), as the checkpoint holds it."""
    model = state["config"]["model"]
    classes = len(state["export_info"]["class_names"]) if model["conditional"] else 0
    description = {"model": model, "image_size": state["image_size"], "channels": state["channels"]}
    generator = build_generator({**description, "num_classes": classes})
    generator.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    return generator


def export_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """Export the generator held in a checkpoint (the EMA one when kept) to the run's generator/;
    a weight average with statistics measured as training's own export measures them."""
    generator = checkpoint_generator(state)
    if state.get("G_ema") is not None:
        measure_statistics(generator, state["config"]["seed"])
    return _export(generator, run_dir, state["export_info"])


def export_run(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """Export the generator of ``run_dir``'s last (or best) checkpoint, the EMA one when kept."""
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # one sentence when this is not a run, or its config.yaml is damaged
    if checkpoint not in ("last", "best"):
        raise UsageError(f"--checkpoint must be last or best, not {checkpoint!r}.")
    path = run_dir / (LAST_CHECKPOINT if checkpoint == "last" else BEST_CHECKPOINT)
    if checkpoint == "best" and not path.is_file():
        raise ProductganError(
            f"{run_dir} has no {BEST_CHECKPOINT}: it is kept only when training scores the validation "
            f"split (--train.eval-every K); export the last checkpoint instead."
        )
    with locked(run_dir, "productgan export"):
        return export_checkpoint(load_checkpoint(path), run_dir)


def export_final(run_dir: Path, generator: Generator, info: dict[str, Any], best_val: float | None) -> Path:
    """Export a run's generator at the end of training: the best validated one when validation
    kept one (``best_val`` set), else ``generator`` as it is now."""
    best = run_dir / BEST_CHECKPOINT
    if best_val is not None and best.is_file():
        return export_checkpoint(load_checkpoint(best), run_dir)
    return _export(generator, run_dir, info)


def _export(generator: Generator, run_dir: Path, info: dict[str, Any]) -> Path:
    """Write the run's generator/ with its model card."""
    recorded, reports = _card_sources(run_dir)
    return write_export(generator, run_dir / GENERATOR_DIR, info, lambda export: model_card(export, recorded, reports))


def refresh_model_card(run_dir: str | Path) -> Path | None:
    """Write the model card of the run's export again (after an evaluation, or once model.onnx is
    written beside it); None when the run has no export."""
    run_dir = Path(run_dir)
    if not (run_dir / GENERATOR_DIR / EXPORT_CONFIG).is_file():
        return None
    return write_model_card(run_dir / GENERATOR_DIR, *_card_sources(run_dir))


def evaluation_reports(run_dir: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, report) of every readable JSON report in the run's evaluation/ folder."""
    reports = []
    for path in sorted((Path(run_dir) / EVALUATION_DIR).glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):  # a report damaged by hand is left out of the card
            continue
        if isinstance(report, dict):
            reports.append((path.name, report))
    return reports


def _card_sources(run_dir: Path) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """What the model card reads from the run: its recorded configuration (None when it cannot
    be read: the card says "not recorded", and the export goes ahead) and its reports."""
    try:
        recorded = to_dict(load_run_config(run_dir))
    except ProductganError:
        recorded = None
    return recorded, evaluation_reports(run_dir)


def final_export_is_current(run_dir: Path, step: int, best_val: float | None) -> bool:
    """True when generator/ holds what ``export_final`` would write for a run at ``step`` (a
    crash between the final checkpoint and the export leaves an older export, or none)."""
    best = run_dir / BEST_CHECKPOINT
    source = load_checkpoint(best)["step"] if best_val is not None and best.is_file() else step
    return export_step(run_dir) == source


def export_step(run_dir: Path) -> int | None:
    """The training step of the generator exported in ``run_dir`` (None when there is none)."""
    try:
        return int(json.loads((run_dir / GENERATOR_DIR / EXPORT_CONFIG).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def export_run_onnx(run_dir: str | os.PathLike, output: str = "uint8") -> OnnxExport:
    """``export_onnx`` for a run's generator/, under the run's lock, then its model card again."""
    run_dir = require_run_dir(run_dir)
    check_output(output)
    with locked(run_dir, "productgan export --format onnx"):
        written = export_onnx(run_dir, output)  # its generator/, or one sentence saying to export first
        refresh_model_card(run_dir)
    return written
