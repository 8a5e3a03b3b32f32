"""Running the evaluator: features and class probabilities of native-size uint8 images."""

from __future__ import annotations

import numpy as np
import torch

from productgan.data.pixels import to_native
from productgan.evaluator.network import EvaluatorNet, as_uint8_images


@torch.no_grad()
def features_and_probabilities(
    net: EvaluatorNet, images_uint8, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over uint8 native-size images: (features N x F, class probabilities N x K),
    both float64 on the CPU."""
    images = as_uint8_images(images_uint8)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    feats, probs = [], []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            feature = net.features(batch)
            feats.append(feature.double().cpu())
            probs.append(torch.softmax(net.head(feature).double(), dim=1).cpu())
    finally:
        net.train(was_training)
    if not feats:
        return torch.zeros(0, net.feature_dim, dtype=torch.float64), torch.zeros(
            0, net.num_classes, dtype=torch.float64
        )
    return torch.cat(feats), torch.cat(probs)


def extract_features(net: EvaluatorNet, images_uint8, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features of uint8 native-size images, float64 N x F."""
    return features_and_probabilities(net, images_uint8, batch_size)[0]


def class_probabilities(net: EvaluatorNet, images_uint8, batch_size: int = 500) -> torch.Tensor:
    """Softmax class probabilities of uint8 native-size images, float64 N x K."""
    return features_and_probabilities(net, images_uint8, batch_size)[1]


def accuracy(net: EvaluatorNet, images_uint8, labels) -> float:
    """Share of images whose most probable class is their label."""
    predicted = class_probabilities(net, images_uint8).argmax(dim=1)
    return float((predicted == torch.as_tensor(np.asarray(labels))).double().mean())


def native_images(dataset, split: str, chunk: int = 5000) -> np.ndarray:
    """The images of one split of a PackedDataset at native size, uint8 N x C x H x W.

    Undoes prepare's fit with the same function the sampler uses, so real and generated images
    reach the evaluator through the same pixels-to-native path.
    """
    index = dataset.indices(split)
    parts = []
    for start in range(0, len(index), chunk):
        block = torch.from_numpy(np.ascontiguousarray(dataset.images[index[start : start + chunk]]))
        native = to_native(block.float(), dataset.meta)
        parts.append(native.round().clamp(0, 255).to(torch.uint8).numpy())
    if not parts:
        height, width = dataset.meta.get("native_size") or [dataset.image_size] * 2
        return np.zeros((0, dataset.channels, height, width), np.uint8)
    return np.concatenate(parts)


def with_category(images, labels) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) that have a category: a mixed-label training split's unlabelled images
    (label -1) are left out; the arrays themselves when every image has one."""
    labels = np.asarray(labels)
    known = labels >= 0
    return (images, labels) if known.all() else (np.asarray(images)[known], labels[known])


def labelled_images(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(native-size images, labels) of the images of one split that have a category."""
    return with_category(native_images(dataset, split), dataset.labels[dataset.indices(split)])
