"""Memorisation: how many generated images sit closer to a training image than training images
sit to each other.

For a generated feature vector f, let t = NN_train(f) be its nearest training feature vector and
r(t) the distance from t to its own nearest neighbour among the OTHER training vectors. f counts
as memorised when

    d(f, t) <= r(t)

i.e. f is at least as close to t as t's nearest fellow training image: inside the data's own
spacing around that image. ``memorisation`` returns the share of generated images that count.
An exact copy (d = 0) always counts, even of a training image that is itself duplicated
(r = 0).

The share is not 0 for a generator that copies nothing: a fresh image from the data
distribution often falls inside its neighbour's spacing too. Read it against the same share
for held-out real images, ``memorisation(train_feats, test_feats)`` (0.35 for Fashion-MNIST's
test images against its train split with the default evaluator); a generator that copies
pushes it towards 1.

Related tests: the authenticity test of Alaa et al., "How Faithful is your Synthetic Data?",
ICML 2022, and the nearest-neighbour copy check of Meehan, Chaudhuri & Dasgupta, "A
Non-Parametric Test to Detect Data-Copying in Generative Models", AISTATS 2020.

Cost: two chunked passes of generated x training distances; r is computed only for the training
images that are someone's nearest neighbour.
"""

from __future__ import annotations

import torch

from productgan.metrics.common import as_features, check_same_width
from productgan.metrics.distances import distance_blocks, nearest_neighbours


def memorisation(train_feats, fake_feats) -> float:
    """Share of generated images closer to their nearest training image than its training NN."""
    train = as_features(train_feats, "training features")
    fake = as_features(fake_feats, "generated features", min_rows=1)
    check_same_width(("training", train), ("generated", fake))
    distance, neighbour = nearest_neighbours(fake, train)

    hit, slot = torch.unique(neighbour, return_inverse=True)
    spacing = torch.empty(len(hit), dtype=torch.float64)
    for start, block in distance_blocks(train[hit], train):
        rows = torch.arange(len(block))
        # Exclude the image itself by its index, not by distance 0, so that a duplicated training
        # image has spacing 0 rather than the distance to some third image.
        block[rows, hit[start : start + len(block)]] = float("inf")
        spacing[start : start + len(block)] = block.min(dim=1).values
    return float((distance <= spacing[slot]).double().mean())
