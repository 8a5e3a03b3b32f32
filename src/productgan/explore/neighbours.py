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

Memory: the index keeps its features and thumbnails in float32 (what the evaluator and the pooling
compute in), each in one array allocated before it is filled, ``BUILD_BATCH`` images at a time, so
that no split is ever held whole as images or as a list of parts; distances are taken in float64 a
tile at a time (``QUERY_ROWS`` x ``REFERENCE_ROWS``), so an exact copy is at distance 0. A build
given a ``stop`` event checks it between batches and tiles and raises ``BuildStopped`` once it is
set (the server's Ctrl-C).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from productgan.data import PackedDataset
from productgan.errors import UsageError
from productgan.evaluator import Evaluator, EvaluatorNet, cache_root, extract_features, features_and_probabilities
from productgan.evaluator.inference import native_images
from productgan.explore.likeness import Likeness, plain_background
from productgan.files import write_atomic
from productgan.generator.grid import make_grid
from productgan.metrics.distances import distance_blocks
from productgan.run import load_run_config, open_recorded_dataset

COPY_QUANTILE = 0.01  # held-out real images flagged at most this often (half by features, half by pixels)
THUMBNAIL = 16  # side of the thumbnails the pixel test compares
MAX_K = 32
REFERENCE_SPLIT = "val"  # calibrates the flag; test stays untouched for evaluate's final score
# Images per batch of a build: made native, turned into features and thumbnails, then dropped; a
# stop request is honoured between batches. A test seam too: tests make it small to lengthen a build.
BUILD_BATCH = 2048
# Rows of one tile of a distance computation: 256 x 8192 float64 distances (16 MiB), a few such
# temporaries at a time whatever the size of the training split.
QUERY_ROWS = 256
REFERENCE_ROWS = 8192


class BuildStopped(Exception):
    """A build of a NeighbourIndex given up because its ``stop`` event was set."""


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


def nearest(
    queries: torch.Tensor, reference: torch.Tensor, k: int, stop: threading.Event | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, positions) of each query's k nearest reference rows, nearest first (float64 and
    int64, N x k), taken a tile of QUERY_ROWS x REFERENCE_ROWS at a time in float64 whatever the
    inputs' precision; BuildStopped between tiles once ``stop`` is set."""
    k = min(k, len(reference))
    distances = torch.empty(len(queries), k, dtype=torch.float64)
    positions = torch.empty(len(queries), k, dtype=torch.int64)
    for start in range(0, len(queries), QUERY_ROWS):
        block = queries[start : start + QUERY_ROWS].double()
        values, columns = [], []  # each tile's k nearest, then the k nearest of those
        for first in range(0, len(reference), REFERENCE_ROWS):
            check_stop(stop)
            tile = reference[first : first + REFERENCE_ROWS].double()
            ((_, tile_distances),) = distance_blocks(block, tile)  # one block: a tile is under its limit
            found = tile_distances.topk(min(k, len(tile)), dim=1, largest=False)
            values.append(found.values)
            columns.append(found.indices + first)
        best, order = torch.cat(values, dim=1).topk(k, dim=1, largest=False)
        distances[start : start + len(block)] = best
        positions[start : start + len(block)] = torch.cat(columns, dim=1).gather(1, order)
    return distances, positions


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise BuildStopped("The nearest-training-images index was stopped before it was built.")


def check_k(k: int) -> None:
    """One sentence when ``k``, the nearest training images asked for per image, is out of range."""
    if not 1 <= k <= MAX_K:
        raise UsageError(f"--k (neighbours per image) must be between 1 and {MAX_K}, not {k}.")


class NeighbourIndex:
    """The training split of a run's dataset in the evaluator's feature space, with the copy
    threshold calibrated on the held-out ``REFERENCE_SPLIT``. ``stop``: an event that, once set,
    ends the build at its next batch with BuildStopped."""

    def __init__(
        self,
        net: EvaluatorNet,
        info: dict,
        dataset: PackedDataset,
        progress: bool = False,
        stop: threading.Event | None = None,
    ):
        self.net, self.dataset, self._stop = net, dataset, stop
        self.positions = dataset.indices("train")
        if len(self.positions) == 0:
            raise UsageError("The run's dataset has no training images to compare with.")
        self.features = self._features("train", info, progress)  # float32 N x F
        if len(dataset.indices(REFERENCE_SPLIT)) == 0:
            raise UsageError(
                f"The run's dataset has no {REFERENCE_SPLIT} images, which calibrate what counts as a copy; "
                f"prepare it with a validation split."
            )
        reference = self._features(REFERENCE_SPLIT, info, progress)
        self.reference_distances = nearest(reference, self.features, 1, stop)[0][:, 0].numpy()
        self.threshold = float(np.quantile(self.reference_distances, COPY_QUANTILE / 2))
        self.typical = float(np.median(self.reference_distances))
        self.thumbnails = self._thumbnails("train")  # float32 N x C*T*T
        backgrounds = []  # held-out: border share, product share (plain_background), for ``likeness``
        held_out = nearest(self._thumbnails(REFERENCE_SPLIT, backgrounds), self.thumbnails, 1, stop)[0][:, 0].numpy()
        self.reference_thumbnail_distances = held_out
        self.pixel_threshold = float(np.quantile(held_out, COPY_QUANTILE / 2))
        self.reference_backgrounds = np.asarray(backgrounds, dtype=np.float64).reshape(-1, 2)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        progress: bool = False,
        device: str = "cpu",
        stop: threading.Event | None = None,
    ) -> NeighbourIndex:
        """The index of a run's training images (the evaluator is loaded, or trained once)."""
        config = load_run_config(run_dir)
        dataset = open_recorded_dataset(config, run_dir)
        check_stop(stop)
        evaluator = Evaluator(config.data, dataset, progress=progress, device=device)
        return cls(evaluator.net, evaluator.info, dataset, progress, stop)

    def _batches(self, split: str) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, native uint8 images) of one split, BUILD_BATCH images at a time."""
        positions = self.dataset.indices(split)
        for start in range(0, len(positions), BUILD_BATCH):
            check_stop(self._stop)
            yield start, native_images(_IndexedSplit(self.dataset, positions[start : start + BUILD_BATCH]), "picked")

    def _features(self, split: str, info: dict, progress: bool) -> torch.Tensor:
        """The evaluator's features of one split (float32), from the user cache when this
        evaluator has computed them for this data before."""
        count = len(self.dataset.indices(split))
        key = f"{info.get('weights_sha256', '')}|{info.get('train_fingerprint', '')}|{split}|{count}"
        path = cache_root() / "neighbours" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.shape == (count, self.net.feature_dim) and cached.dtype == np.float32:
                    return torch.from_numpy(cached)
            except (OSError, ValueError):
                pass  # a damaged cache file is computed again
        if progress:
            print(f"Computing evaluator features of {count:,} {split} images (once)...", flush=True)
        features = torch.empty(count, self.net.feature_dim, dtype=torch.float32)
        for start, images in self._batches(split):
            features[start : start + len(images)] = extract_features(self.net, images)
        with contextlib.suppress(OSError):  # a read-only cache costs time on the next call, nothing else
            write_atomic(path, lambda tmp: np.save(tmp, features.numpy()))
        return features

    def _thumbnails(self, split: str, backgrounds: list | None = None) -> torch.Tensor:
        """``thumbnails`` of one split, float32 N x C*T*T; with ``backgrounds``, each image's
        ``plain_background`` shares appended to it in the same pass."""
        count = len(self.dataset.indices(split))
        out = torch.empty(count, self.dataset.channels * THUMBNAIL * THUMBNAIL, dtype=torch.float32)
        for start, images in self._batches(split):
            out[start : start + len(images)] = thumbnails(images)
            if backgrounds is not None:
                backgrounds.extend(plain_background(image)[1:] for image in images)
        return out

    def query_features(self, features: torch.Tensor, k: int = 3, images_uint8=None) -> Neighbours:
        """The k nearest training images of images given by their evaluator features; with the
        images themselves (uint8 native size) the flag also applies the pixel test."""
        check_k(k)
        distances, positions = nearest(features, self.features, k)
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

    def likeness(self, image_uint8: np.ndarray, background: tuple[float, float] | None = None) -> Likeness:
        """Whether one image (uint8 C x H x W at native size: a fitted photo) looks like the
        training data, by four tests each calibrated on the held-out images (``Likeness``).
        ``background``: its border and product shares (``plain_background``) when measured on the
        photo as it was, before a fitting trimmed it; of ``image_uint8`` by default."""
        image = np.asarray(image_uint8)
        features = extract_features(self.net, image[None])
        feature = float(nearest(features, self.features, 1)[0][0, 0])
        thumbnail = float(nearest(thumbnails(image[None]), self.thumbnails, 1)[0][0, 0])
        border, product = plain_background(image)[1:] if background is None else background
        return Likeness.judge(self, feature, thumbnail, border, product)

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Training images by dataset index, at native size: uint8 ... x C x H x W."""
        flat = np.asarray(indices).reshape(-1)
        view = _IndexedSplit(self.dataset, flat)
        images = native_images(view, "picked")
        return images.reshape(*np.shape(indices), *images.shape[1:])


def thumbnails(images_uint8) -> torch.Tensor:
    """uint8 images N x C x H x W -> their THUMBNAIL x THUMBNAIL area averages per channel, on
    0..255, flattened (float32 N x C*T*T): what the pixel test of the copy flag compares."""
    images = torch.as_tensor(np.asarray(images_uint8)).float()
    small = torch.nn.functional.adaptive_avg_pool2d(images, THUMBNAIL) if len(images) else images
    return small.reshape(len(images), -1)


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
