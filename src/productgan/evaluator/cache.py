"""Where trained evaluators are kept: one per dataset, reused while its recipe and data match.

An evaluator is trained once per dataset, on the train split only, and stored as
``evaluator.safetensors`` (weights) plus ``evaluator.json`` (what it is: the recipe, the
fingerprint of the data it learned from, its test accuracy, the weights' SHA-256). A stored
evaluator is used only when the fingerprint of the train split's native images and labels, the
task and the recipe (``EvaluatorConfig``) all match; otherwise a new one is trained. The cache
holds derived data only, so anything it cannot trust is retrained, never an error.

Where one is looked for, in order:

1. the evaluators shipped with the package (``shipped/``; Fashion-MNIST at its default packing
   and split, written by ``benchmarks/ship_evaluator.py``), so the first evaluation there trains
   nothing;
2. the folder the caller names: beside a packed dataset (``DATASET/evaluator``), or for a dataset
   built on the fly the user cache (``$PRODUCTGAN_CACHE`` or ~/.cache/productgan) per source and size;
3. the user cache's folder for the data's fingerprint (``evaluators/data-<sha256 prefix>``).

A new one is written to the first of 2 and 3 that can be written: a read-only packed dataset
gets its evaluator in the user cache, under a name no other dataset can share.
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
from productgan.files import file_sha256, save_tensors, write_atomic, write_text_atomic

EVALUATOR_FORMAT = "productgan-evaluator"
EVALUATOR_VERSION = 1
WEIGHTS_FILE, INFO_FILE = "evaluator.safetensors", "evaluator.json"
CACHE_ENV = "PRODUCTGAN_CACHE"
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"  # one folder per shipped evaluator


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


def fingerprint_cache_dir(fingerprint: str) -> Path:
    """The user-cache folder for an evaluator of the data with ``fingerprint``: named by the data,
    not by a path or a source name, so two datasets never share one."""
    return cache_root() / "evaluators" / f"data-{fingerprint.removeprefix('sha256:')[:16]}"


def writable(folder: Path) -> bool:
    """Whether files can be created in ``folder``, or, where it does not exist yet, it can be made
    in the nearest folder above it that does."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return False
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def data_fingerprint(images_uint8, labels) -> str:
    """sha256 over the shape, pixels and labels of a training set; changes with any of them."""
    images = np.ascontiguousarray(np.asarray(images_uint8, dtype=np.uint8))
    labels = np.ascontiguousarray(np.asarray(labels, dtype="<i8"))
    digest = hashlib.sha256()
    digest.update(json.dumps(list(images.shape)).encode())
    digest.update(images.tobytes())
    digest.update(labels.tobytes())
    return "sha256:" + digest.hexdigest()


def tagged_sha256(path: Path) -> str:
    """``sha256:`` and the file's digest, as the evaluator's description records it."""
    return "sha256:" + file_sha256(path)


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
        if tagged_sha256(weights_path) != info.get("weights_sha256"):
            return None
        net = EvaluatorNet(**info["architecture"])
        net.load_state_dict(load_file(str(weights_path)), strict=True)
    except Exception:  # safetensors and torch raise their own types for damaged files
        return None
    return net.eval().requires_grad_(False), info


def store_evaluator(
    net: EvaluatorNet, info: dict[str, Any], cache_dir: Path, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """Write ``net`` (its floating-point tensors as ``dtype``) and ``info`` to ``cache_dir``; returns
    ``info`` with the weights' hash. OSError when the folder cannot be written.

    Each file goes to a temporary file and is renamed into place, the JSON last: a cache is
    trusted only when its JSON names the weights' hash.
    """
    state = {
        name: (tensor.to(dtype) if tensor.is_floating_point() else tensor).detach().to("cpu").contiguous()
        for name, tensor in net.state_dict().items()
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    weights_path = cache_dir / WEIGHTS_FILE
    write_atomic(weights_path, lambda tmp: save_tensors(state, tmp, metadata={"format": EVALUATOR_FORMAT}))
    info = {**info, "weights_sha256": tagged_sha256(weights_path)}
    write_text_atomic(cache_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return info


class EvaluatorRequest:
    """What a dataset and a recipe ask of an evaluator: the task, the training data and its
    fingerprint, and the record a stored evaluator must match."""

    def __init__(self, dataset: PackedDataset, config: EvaluatorConfig = DEFAULT_CONFIG):
        self.dataset, self.config = dataset, config
        self.task = task_for(dataset.num_classes)
        self.num_classes = len(ROTATION_CLASSES) if self.task == ROTATION_TASK else dataset.num_classes
        self.train_images = native_images(dataset, "train")
        self.train_labels = dataset.labels[dataset.indices("train")]
        self.fingerprint = data_fingerprint(self.train_images, self.train_labels)
        self.recipe = recipe_record(config, self.task, self.train_images.shape, self.num_classes)

    def class_names(self) -> list[str]:
        return list(ROTATION_CLASSES) if self.task == ROTATION_TASK else list(self.dataset.class_names)

    def test_accuracy(self, net: EvaluatorNet) -> float | None:
        """``net``'s accuracy on the test split at this task (None without test images)."""
        images = native_images(self.dataset, "test")
        labels = self.dataset.labels[self.dataset.indices("test")]
        images, labels = task_data(self.task, images, labels, self.config.seed + 1)
        return accuracy(net, images, labels) if len(images) else None

    def train(self, progress: bool = True, device: str | torch.device = "cpu") -> tuple[EvaluatorNet, dict[str, Any]]:
        """A new evaluator trained on the train split, and its description (without the weights' hash)."""
        images, labels = task_data(self.task, self.train_images, self.train_labels, self.config.seed)
        started = time.perf_counter()
        net = train_evaluator(images, labels, self.num_classes, self.config, progress=progress, device=device)
        train_seconds = time.perf_counter() - started
        channels, height, width = (int(s) for s in images.shape[1:])
        info = {
            "format": EVALUATOR_FORMAT,
            "version": EVALUATOR_VERSION,
            **self.recipe,
            "class_names": self.class_names(),
            "num_classes": int(self.num_classes),
            "channels": channels,
            "native_size": [height, width],
            "feature_dim": int(self.config.feature_dim),
            "train_split_size": int(len(images)),
            "train_fingerprint": self.fingerprint,
            "test_split_size": len(self.dataset.indices("test")),
            "test_accuracy": self.test_accuracy(net),
            "train_seconds": round(train_seconds, 2),
            "dataset_source": self.dataset.meta.get("source"),
            "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return net, info


def shipped_dirs() -> list[Path]:
    """The folders of the evaluators that come with the package."""
    return sorted(folder for folder in SHIPPED_DIR.iterdir() if folder.is_dir()) if SHIPPED_DIR.is_dir() else []


def _places(cache_dir: Path, fingerprint: str) -> tuple[list[Path], list[Path]]:
    """(folders to look in, in order; folders a new evaluator may be written to, in order)."""
    targets = list(dict.fromkeys([cache_dir, fingerprint_cache_dir(fingerprint)]))
    return shipped_dirs() + targets, targets


def find_evaluator(
    dataset: PackedDataset, cache_dir: str | os.PathLike, config: EvaluatorConfig = DEFAULT_CONFIG
) -> tuple[EvaluatorNet, dict[str, Any]] | None:
    """The stored evaluator for ``dataset`` and ``config`` (shipped, in ``cache_dir`` or in the
    user cache under the data's fingerprint), or None: never trains one."""
    request = EvaluatorRequest(dataset, config)
    return _find(request, _places(Path(cache_dir).expanduser(), request.fingerprint)[0])


def _find(request: EvaluatorRequest, folders: list[Path]) -> tuple[EvaluatorNet, dict[str, Any]] | None:
    for folder in folders:
        found = load_evaluator(folder, request.fingerprint, request.recipe)
        if found is not None:
            net, info = found
            return net, {**info, "stored_in": str(folder)}
    return None


def load_or_train_evaluator(
    dataset: PackedDataset,
    cache_dir: str | os.PathLike,
    config: EvaluatorConfig = DEFAULT_CONFIG,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[EvaluatorNet, dict[str, Any]]:
    """The evaluator for a PackedDataset: a stored one that matches (see the module's docstring
    for where it is looked for), else one trained on the train split, its accuracy measured on
    the test split, and stored in ``cache_dir`` or, where that cannot be written, in the user
    cache under the data's fingerprint.

    A dataset with one class (an unlabelled folder) gets an evaluator trained to tell how each
    image was rotated (``info["task"] == "rotation"``); its class outputs are rotations, so only
    the feature-based metrics apply to it. The returned info is evaluator.json's content plus
    ``loaded_from_cache`` and ``stored_in`` (the folder it was read from or written to).
    """
    request = EvaluatorRequest(dataset, config)
    folders, targets = _places(Path(cache_dir).expanduser(), request.fingerprint)
    found = _find(request, folders)
    if found is not None:
        net, info = found
        return net.to(device), {**info, "loaded_from_cache": True}
    # Checked before the minutes of training, so that an unwritable cache costs none of them.
    writable_targets = [folder for folder in targets if writable(folder)]
    if not writable_targets:
        raise _cannot_store(targets, "not writable")
    net, info = request.train(progress=progress, device=device)
    reasons = []
    for folder in writable_targets:
        try:
            info = store_evaluator(net, info, folder)
        except OSError as error:
            reasons.append(error.strerror or str(error))
            continue
        return net, {**info, "loaded_from_cache": False, "stored_in": str(folder)}
    raise _cannot_store(writable_targets, "; ".join(reasons))


def _cannot_store(folders: list[Path], reason: str) -> ProductganError:
    return ProductganError(
        f"Could not store the evaluator in {' or '.join(map(str, folders))} ({reason}); set {CACHE_ENV} "
        f"to a folder you can write to, with a few MB free, and run again."
    )
