"""The evaluator cache: one trained evaluator per dataset, reused while its recipe and data match.

An evaluator is trained once per dataset, on the train split only, and stored as
``evaluator.safetensors`` (weights) plus ``evaluator.json`` (what it is: the recipe, the
fingerprint of the data it learned from, its test accuracy, the weights' SHA-256). A stored
evaluator is used only when the fingerprint of the train split's native images and labels, the
task and the recipe (``EvaluatorConfig``) all match; otherwise a new one is trained. The cache
holds derived data only, so anything it cannot trust is retrained, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from productgan.data import PackedDataset, is_packed_dataset
from productgan.errors import ProductganError
from productgan.evaluator.config import DEFAULT_CONFIG, EvaluatorConfig
from productgan.evaluator.inference import accuracy, native_images
from productgan.evaluator.network import EvaluatorNet
from productgan.evaluator.training import ROTATION_CLASSES, ROTATION_TASK, task_data, task_for, train_evaluator
from productgan.files import save_tensors, write_atomic, write_text_atomic

EVALUATOR_FORMAT = "productgan-evaluator"
EVALUATOR_VERSION = 1
WEIGHTS_FILE, INFO_FILE = "evaluator.safetensors", "evaluator.json"
CACHE_ENV = "PRODUCTGAN_CACHE"


def cache_root() -> Path:
    """The user cache: ``$PRODUCTGAN_CACHE``, else ~/.cache/productgan."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "productgan").expanduser()


def evaluator_cache_dir(data: str, dataset: PackedDataset) -> Path:
    """Beside a packed dataset; for a dataset built on the fly, in the user cache, per source and size."""
    path = Path(data).expanduser()
    if path.is_dir() and is_packed_dataset(path):
        return path / "evaluator"
    name = str(dataset.meta.get("source") or path.name).replace("/", "-")
    return cache_root() / "evaluators" / f"{name}-{dataset.image_size}"


def data_fingerprint(images_uint8, labels) -> str:
    """sha256 over the shape, pixels and labels of a training set; changes with any of them."""
    images = np.ascontiguousarray(np.asarray(images_uint8, dtype=np.uint8))
    labels = np.ascontiguousarray(np.asarray(labels, dtype="<i8"))
    digest = hashlib.sha256()
    digest.update(json.dumps(list(images.shape)).encode())
    digest.update(images.tobytes())
    digest.update(labels.tobytes())
    return "sha256:" + digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def recipe_record(config: EvaluatorConfig, task: str, images_shape, num_classes: int) -> dict[str, Any]:
    """What evaluator.json records of the recipe, for training images of ``images_shape``
    (N x C x H x W) and ``num_classes`` outputs: a stored evaluator matches when these agree."""
    channels, height, width = (int(s) for s in images_shape[1:])
    return {
        "task": task,
        "architecture": config.architecture(channels, num_classes, (height, width)),
        "training": config.training(),
    }


def load_evaluator(cache_dir: Path, fingerprint: str, recipe: dict) -> tuple[EvaluatorNet, dict] | None:
    """The evaluator stored in ``cache_dir`` if it exists, is intact, and was trained on data with
    this fingerprint by this recipe (see ``recipe_record``); otherwise None."""
    info_path, weights_path = cache_dir / INFO_FILE, cache_dir / WEIGHTS_FILE
    if not (info_path.is_file() and weights_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != EVALUATOR_FORMAT:
        return None
    if info.get("version") != EVALUATOR_VERSION or info.get("train_fingerprint") != fingerprint:
        return None
    # Files written before unlabelled datasets had evaluators carry no task: they learned classes.
    if any(info.get(key, "classes" if key == "task" else None) != recipe[key] for key in recipe):
        return None
    try:
        # The hash also catches a weights file left from another save that was cut short.
        if file_sha256(weights_path) != info.get("weights_sha256"):
            return None
        net = EvaluatorNet(**info["architecture"])
        net.load_state_dict(load_file(str(weights_path)), strict=True)
    except Exception:  # safetensors and torch raise their own types for damaged files
        return None
    return net.eval().requires_grad_(False), info


def store_evaluator(net: EvaluatorNet, info: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    """Write ``net`` and ``info`` (plus the weights' hash, returned with it) to ``cache_dir``.

    Each file goes to a temporary file and is renamed into place, the JSON last: a cache is
    trusted only when its JSON names the weights' hash.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        weights_path = cache_dir / WEIGHTS_FILE
        write_atomic(weights_path, lambda tmp: save_tensors(state, tmp, metadata={"format": EVALUATOR_FORMAT}))
        info = {**info, "weights_sha256": file_sha256(weights_path)}
        write_text_atomic(cache_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")
    except OSError as error:
        raise ProductganError(
            f"Could not write the evaluator cache to {cache_dir} ({error.strerror or error}); "
            f"check free disk space and permissions, or choose another cache folder."
        ) from None
    return info


def load_or_train_evaluator(
    dataset: PackedDataset,
    cache_dir: str | os.PathLike,
    config: EvaluatorConfig = DEFAULT_CONFIG,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[EvaluatorNet, dict[str, Any]]:
    """The evaluator for a PackedDataset: loaded from ``cache_dir`` if it matches, else trained
    on the train split, its accuracy measured on the test split, and stored in ``cache_dir``.

    A dataset with one class (an unlabelled folder) gets an evaluator trained to tell how each
    image was rotated (``info["task"] == "rotation"``); its class outputs are rotations, so only
    the feature-based metrics apply to it. The returned info is evaluator.json's content plus
    ``loaded_from_cache``.
    """
    cache_dir = Path(cache_dir).expanduser()
    train_images = native_images(dataset, "train")
    train_labels = dataset.labels[dataset.indices("train")]
    fingerprint = data_fingerprint(train_images, train_labels)
    task = task_for(dataset.num_classes)
    num_classes = len(ROTATION_CLASSES) if task == ROTATION_TASK else dataset.num_classes
    recipe = recipe_record(config, task, train_images.shape, num_classes)
    cached = load_evaluator(cache_dir, fingerprint, recipe)
    if cached is not None:
        net, info = cached
        return net.to(device), {**info, "loaded_from_cache": True}

    train_images, train_labels = task_data(task, train_images, train_labels, config.seed)
    started = time.perf_counter()
    net = train_evaluator(train_images, train_labels, num_classes, config, progress=progress, device=device)
    train_seconds = time.perf_counter() - started

    test_images, test_labels = task_data(
        task, native_images(dataset, "test"), dataset.labels[dataset.indices("test")], config.seed + 1
    )
    channels, height, width = (int(s) for s in train_images.shape[1:])
    info = {
        "format": EVALUATOR_FORMAT,
        "version": EVALUATOR_VERSION,
        **recipe,
        "class_names": list(ROTATION_CLASSES) if task == ROTATION_TASK else list(dataset.class_names),
        "num_classes": int(num_classes),
        "channels": channels,
        "native_size": [height, width],
        "feature_dim": int(config.feature_dim),
        "train_split_size": int(len(train_images)),
        "train_fingerprint": fingerprint,
        "test_split_size": int(len(test_images)),
        "test_accuracy": accuracy(net, test_images, test_labels) if len(test_images) else None,
        "train_seconds": round(train_seconds, 2),
        "dataset_source": dataset.meta.get("source"),
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info = store_evaluator(net, info, cache_dir)
    return net, {**info, "loaded_from_cache": False}
