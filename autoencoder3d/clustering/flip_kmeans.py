"""k-means that does not split a structure by the sign flips pose normalization leaves open.

A subvolume is given as its features in each of the four proper flips
(:data:`~autoencoder3d.prep.flips.PROPER_FLIPS`): ``(4, N, D)``, the identity
first, e.g. PCA of all four flipped copies or the encoder's codes of them.
Each iteration assigns every subvolume to the centre it best matches in any of
its flips, and averages each cluster's members in the flip each was matched
in. The objective (inertia) is the sum of those best squared distances, so it
never increases; the best of ``n_init`` starts (k-means++ on the identity
features, drawn from ``seed``) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

MAX_ITER = 100


@dataclass
class FlipClustering:
    """Flip-aware k-means: ``labels`` (N,), the matched flip of each subvolume ``flips`` (N,), ``centers`` (k, D), ``inertia``."""

    labels: NDArray[np.int64]
    flips: NDArray[np.int64]
    centers: NDArray[np.float64]
    inertia: float


def _plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [points[rng.integers(len(points))]]
    closest = ((points - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = closest.sum()
        index = rng.choice(len(points), p=closest / total) if total > 0 else rng.integers(len(points))
        centers.append(points[index])
        closest = np.minimum(closest, ((points - points[index]) ** 2).sum(axis=1))
    return np.array(centers)


def _assign(features: np.ndarray, squared: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (cluster, flip) of every subvolume and its squared distance."""
    distance = squared[:, :, None] - 2 * features @ centers.T + (centers**2).sum(axis=1)  # (4, N, k)
    flat = distance.transpose(1, 0, 2).reshape(features.shape[1], -1)  # (N, 4k): flip-major
    best = np.argmin(flat, axis=1)
    return best % len(centers), best // len(centers), np.maximum(flat[np.arange(len(flat)), best], 0.0)


def _one_start(features: np.ndarray, squared: np.ndarray, k: int, rng: np.random.Generator) -> FlipClustering:
    centers = _plus_plus(features[0], k, rng)
    labels = flips = None
    for _ in range(MAX_ITER):
        new_labels, new_flips, distance = _assign(features, squared, centers)
        if labels is not None and np.array_equal(new_labels, labels) and np.array_equal(new_flips, flips):
            break
        labels, flips = new_labels, new_flips
        matched = features[flips, np.arange(features.shape[1])]
        for cluster in range(k):
            members = labels == cluster
            # an empty cluster restarts at the subvolume worst served by its centre
            centers[cluster] = matched[members].mean(axis=0) if members.any() else matched[np.argmax(distance)]
    labels, flips, distance = _assign(features, squared, centers)
    return FlipClustering(labels.astype(np.int64), flips.astype(np.int64), centers, float(distance.sum()))


def flip_aware_kmeans(features: ArrayLike, n_clusters: int, seed: int = 0, n_init: int = 10) -> FlipClustering:
    """k-means of ``features`` ``(4, N, D)`` invariant to the four proper flips; the best of ``n_init`` starts."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 3 or features.shape[0] != 4:
        raise ValueError(f"features must be (4, N, D) (one row per proper flip), not {features.shape}")
    if not 1 <= n_clusters <= features.shape[1]:
        raise ValueError(f"n_clusters {n_clusters} must be between 1 and the number of subvolumes ({features.shape[1]})")
    squared = (features**2).sum(axis=2)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        result = _one_start(features, squared, n_clusters, rng)
        if best is None or result.inertia < best.inertia:
            best = result
    return best
