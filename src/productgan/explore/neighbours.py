"""Nearest training images of any image, and a flag for a likely copy of one.

Distances are taken between the evaluator's features (``productgan.evaluator``), where images
that look alike are close whatever their exact pixels. What "too close" means is measured on the
run's own data: the held-out validation images are real photos that are not in the training
split, so their distances to their nearest training image show how close a new image of the
same kind usually is. An image is flagged as a likely copy when it is closer than all but half
of ``COPY_QUANTILE`` of them in the evaluator's features, or in its pixels (a 16 x 16
thumbnail per channel, which does not depend on how well the evaluator learned: one trained on
a few dozen images sees little, yet a copy is still a copy in its pixels). On held-out real
images the flag is therefore raised at most about ``COPY_QUANTILE`` of the time; on a generator
that hands back training photos, far more often.

Typical use::

    index = NeighbourIndex.from_run("runs/00000-fashion-mnist-32")
    found = index.query(sampler(n=16, seed=0).numpy(), k=3)
    found.indices, found.distances, found.copy          # N x k, N x k, N
    save_png(neighbour_sheet(images, found, index), "neighbours.png")

The training split's features are computed once per evaluator and dataset and kept in the user
cache (``$PRODUCTGAN_CACHE/neighbours``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.errors import UsageError
from productgan.evaluator import Evaluator, EvaluatorNet, cache_root, extract_features, features_and_probabilities
from productgan.evaluator.inference import native_images
from productgan.files import write_atomic
from productgan.generator.grid import make_grid
from productgan.metrics.distances import distance_blocks
from productgan.run import load_run_config, open_recorded_dataset

COPY_QUANTILE = 0.01  # held-out real images flagged at most this often (half by features, half by pixels)
THUMBNAIL = 16  # side of the thumbnails the pixel test compares
MAX_K = 32
REFERENCE_SPLIT = "val"  # calibrates the flag; test stays untouched for evaluate's final score


@dataclass
class Neighbours:
    """The k nearest training images of N images: dataset indices and feature distances (N x k,
    nearest first), the copy flag (N), and what the flag was measured against: the feature
    threshold, the typical held-out distance, and (when the images were given, not only their
    features) the thumbnail distance to the nearest training image and its threshold."""

    indices: np.ndarray
    distances: np.ndarray
    copy: np.ndarray
    threshold: float
    typical: float
    pixel_distances: np.ndarray | None = None
    pixel_threshold: float | None = None

    def records(self) -> list[dict]:
        """One plain dict per image, as the API and manifests write it."""
        return [
            {
                "neighbours": [
                    {"index": int(i), "distance": round(float(d), 6)}
                    for i, d in zip(self.indices[row], self.distances[row])
                ],
                "likely_copy": bool(self.copy[row]),
                **(
                    {}
                    if self.pixel_distances is None
                    else {"thumbnail_distance": round(float(self.pixel_distances[row]), 4)}
                ),
            }
            for row in range(len(self.indices))
        ]


def nearest(queries: torch.Tensor, reference: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, positions) of each query's k nearest reference rows, nearest first (N x k)."""
    k = min(k, len(reference))
    distances = torch.empty(len(queries), k, dtype=reference.dtype)
    positions = torch.empty(len(queries), k, dtype=torch.int64)
    for start, block in distance_blocks(queries.to(reference.dtype), reference):
        values, where = block.topk(k, dim=1, largest=False)
        distances[start : start + len(block)] = values
        positions[start : start + len(block)] = where
    return distances, positions


class NeighbourIndex:
    """The training split of a run's dataset in the evaluator's feature space, with the copy
    threshold calibrated on the held-out ``REFERENCE_SPLIT``."""

    def __init__(self, net: EvaluatorNet, info: dict, dataset: PackedDataset, progress: bool = False):
        self.net, self.dataset = net, dataset
        self.positions = dataset.indices("train")
        if len(self.positions) == 0:
            raise UsageError("The run's dataset has no training images to compare with.")
        self.features = self._features("train", info, progress)
        if len(dataset.indices(REFERENCE_SPLIT)) == 0:
            raise UsageError(
                f"The run's dataset has no {REFERENCE_SPLIT} images, which calibrate what counts as a copy; "
                f"prepare it with a validation split."
            )
        reference = self._features(REFERENCE_SPLIT, info, progress)
        self.reference_distances = nearest(reference, self.features, 1)[0][:, 0].numpy()
        self.threshold = float(np.quantile(self.reference_distances, COPY_QUANTILE / 2))
        self.typical = float(np.median(self.reference_distances))
        self.thumbnails = thumbnails(native_images(dataset, "train"))
        held_out = thumbnails(native_images(dataset, REFERENCE_SPLIT))
        self.pixel_threshold = float(
            np.quantile(nearest(held_out, self.thumbnails, 1)[0][:, 0].numpy(), COPY_QUANTILE / 2)
        )

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, progress: bool = False, device: str = "cpu") -> NeighbourIndex:
        """The index of a run's training images (the evaluator is loaded, or trained once)."""
        config = load_run_config(run_dir)
        dataset = open_recorded_dataset(config, run_dir)
        evaluator = Evaluator(config.data, dataset, progress=progress, device=device)
        return cls(evaluator.net, evaluator.info, dataset, progress)

    def _features(self, split: str, info: dict, progress: bool) -> torch.Tensor:
        """The evaluator's features of one split (float64), from the user cache when this
        evaluator has computed them for this data before."""
        count = len(self.dataset.indices(split))
        key = f"{info.get('weights_sha256', '')}|{info.get('train_fingerprint', '')}|{split}|{count}"
        path = cache_root() / "neighbours" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.shape == (count, self.net.feature_dim):
                    return torch.from_numpy(cached).double()
            except (OSError, ValueError):
                pass  # a damaged cache file is computed again
        if progress:
            print(f"Computing evaluator features of {count:,} {split} images (once)...", flush=True)
        features = extract_features(self.net, native_images(self.dataset, split)).float()
        with contextlib.suppress(OSError):  # a read-only cache costs time on the next call, nothing else
            write_atomic(path, lambda tmp: np.save(tmp, features.numpy()))
        return features.double()

    def query_features(self, features: torch.Tensor, k: int = 3, images_uint8=None) -> Neighbours:
        """The k nearest training images of images given by their evaluator features; with the
        images themselves (uint8 native size) the flag also applies the pixel test."""
        if not 1 <= k <= MAX_K:
            raise UsageError(f"k (neighbours per image) must be between 1 and {MAX_K}, not {k}.")
        distances, positions = nearest(features.double(), self.features, k)
        distances = distances.numpy()
        copy = distances[:, 0] < self.threshold
        pixel = None
        if images_uint8 is not None:
            pixel = nearest(thumbnails(images_uint8), self.thumbnails, 1)[0][:, 0].numpy()
            copy = copy | (pixel < self.pixel_threshold)
        return Neighbours(
            indices=self.positions[positions.numpy()],
            distances=distances,
            copy=copy,
            threshold=self.threshold,
            typical=self.typical,
            pixel_distances=pixel,
            pixel_threshold=self.pixel_threshold if pixel is not None else None,
        )

    def query(self, images_uint8, k: int = 3) -> Neighbours:
        """The k nearest training images of uint8 native-size images N x C x H x W."""
        return self.query_features(extract_features(self.net, images_uint8), k, images_uint8)

    def query_with_classes(self, images_uint8, k: int = 3) -> tuple[Neighbours, torch.Tensor]:
        """``query`` plus the evaluator's class probabilities of the same images (one pass)."""
        features, probabilities = features_and_probabilities(self.net, images_uint8)
        return self.query_features(features, k, images_uint8), probabilities

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Training images by dataset index, at native size: uint8 ... x C x H x W."""
        flat = np.asarray(indices).reshape(-1)
        view = _IndexedSplit(self.dataset, flat)
        images = native_images(view, "picked")
        return images.reshape(*np.shape(indices), *images.shape[1:])


def thumbnails(images_uint8) -> torch.Tensor:
    """uint8 images N x C x H x W -> their THUMBNAIL x THUMBNAIL area averages per channel, on
    0..255, flattened (float64 N x C*T*T): what the pixel test of the copy flag compares."""
    images = torch.as_tensor(np.asarray(images_uint8)).float()
    small = torch.nn.functional.adaptive_avg_pool2d(images, THUMBNAIL) if len(images) else images
    return small.reshape(len(images), -1).double()


class _IndexedSplit:
    """A dataset seen through a list of indices as one split named 'picked' (for native_images)."""

    def __init__(self, dataset: PackedDataset, indices: np.ndarray):
        self.images, self.meta, self._indices = dataset.images, dataset.meta, indices
        self.channels, self.image_size = dataset.channels, dataset.image_size

    def indices(self, name: str) -> np.ndarray:
        return self._indices


COPY_COLOUR = (220, 40, 40)
FRAME_COLOUR = (90, 90, 90)


def neighbour_sheet(images: np.ndarray, found: Neighbours, index: NeighbourIndex, border: int = 2) -> np.ndarray:
    """One row per image: the image (framed in red when it is a likely copy), then its nearest
    training images, nearest first. uint8 H x W x 3."""
    k = found.indices.shape[1]
    train = index.images(found.indices)  # N x k x C x H x W
    rows = []
    for row, image in enumerate(np.asarray(images)):
        colour = COPY_COLOUR if found.copy[row] else FRAME_COLOUR
        rows.append(_framed(image, colour, border))
        rows += [_framed(train[row, j], (0, 0, 0), border) for j in range(k)]
    return make_grid(np.stack(rows), nrow=k + 1, padding=4, fill=255)


def _framed(image: np.ndarray, colour: tuple[int, int, int], border: int) -> np.ndarray:
    """uint8 C x H x W -> 3 x (H + 2b) x (W + 2b), the image inside a frame of ``colour``."""
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    height, width = rgb.shape[1:]
    out = np.empty((3, height + 2 * border, width + 2 * border), np.uint8)
    out[:] = np.asarray(colour, np.uint8)[:, None, None]
    out[:, border : border + height, border : border + width] = rgb
    return out
