"""Chunked nearest-neighbour distances for the manifold metrics.

A 10,000 x 10,000 float64 distance matrix is 800 MB, so distances are computed a block of rows
at a time (at most ``MAX_BLOCK_ELEMENTS`` entries, 128 MiB) and reduced at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

MAX_BLOCK_ELEMENTS = 1 << 24

# Squared distances below this share of |a|^2 + |b|^2 are rounding noise of the
# |a|^2 + |b|^2 - 2 a.b expansion and are set to exactly zero, so that an exact copy of a
# point is at distance 0 (which the memorisation metric relies on).
_RELATIVE_ZERO = 1e-12


def rows_per_block(columns: int) -> int:
    return max(1, MAX_BLOCK_ELEMENTS // max(1, columns))


def distance_blocks(queries: torch.Tensor, reference: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, Euclidean distances of queries[start:start+b] to every reference row).

    Both sets are shifted by the reference mean first: distances do not change, but the squared
    norms shrink, and with them the cancellation error of the matrix-product expansion.
    """
    centre = reference.mean(dim=0, keepdim=True)
    reference = reference - centre
    reference_sq = (reference * reference).sum(dim=1)
    step = rows_per_block(len(reference))
    for start in range(0, len(queries), step):
        block = queries[start : start + step] - centre
        block_sq = (block * block).sum(dim=1, keepdim=True)
        scale = block_sq + reference_sq[None, :]
        squared = torch.addmm(scale, block, reference.T, alpha=-2.0)
        squared[squared <= _RELATIVE_ZERO * scale] = 0.0
        yield start, squared.sqrt_()


def kth_neighbour_distances(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest OTHER point of the same set (N,)."""
    if not 1 <= k < len(points):
        raise ValueError(f"k must be between 1 and {len(points) - 1}, not {k}")
    radii = torch.empty(len(points), dtype=points.dtype)
    for start, distances in distance_blocks(points, points):
        # The k+1 smallest include the point itself at distance 0 (or an exact duplicate, which
        # is equally 0), so position k is the k-th other neighbour either way.
        nearest = distances.topk(k + 1, dim=1, largest=False).values
        radii[start : start + len(distances)] = nearest[:, k]
    return radii


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query's nearest reference point."""
    distance = torch.empty(len(queries), dtype=queries.dtype)
    index = torch.empty(len(queries), dtype=torch.int64)
    for start, block in distance_blocks(queries, reference):
        values, where = block.min(dim=1)
        distance[start : start + len(block)] = values
        index[start : start + len(block)] = where
    return distance, index
