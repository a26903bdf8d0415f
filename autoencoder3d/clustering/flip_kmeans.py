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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from .kmeans import Clustering

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


FLIP_MODES = ("off", "average", "match")
"""How a clustering treats the four proper flips: ``off`` (the codes of the subvolumes as they are, as published),
``average`` (each subvolume's codes averaged over its four flips), ``match`` (:func:`flip_aware_kmeans` of the codes
of the four flips)."""


def check_flip_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`FLIP_MODES`; else one error line."""
    from ..errors import InputError

    if mode not in FLIP_MODES:
        raise InputError(f"--flips {mode}: choose from {', '.join(FLIP_MODES)}")
    return mode


def unflipped_rows(features: np.ndarray, mode: str) -> np.ndarray:
    """The (N, D) rows plain k-means clusters under ``off`` (the identity flip) or ``average`` (the mean of the four)."""
    return features[0] if mode == "off" else features.mean(axis=0)


def clustered_features(features: ArrayLike, mode: str, k: int, seed: int | None, n_init: int,
                       plain: Callable[[np.ndarray], NDArray[np.int64]]) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Cluster ``features`` ``(4, N, D)`` (the four flips; only the first is read when ``mode`` is off).

    ``plain(rows)`` is the k-means labels of ``(N, D)`` rows, for ``off`` and ``average``.

    Returns:
        (the (N, D) features the clusters are made of: as they are, averaged, or each in its matched flip;
        labels (N,); each subvolume's flip, an index into PROPER_FLIPS (all 0 unless ``match``)).
    """
    features = np.asarray(features, dtype=np.float64)
    mode = check_flip_mode(mode)
    if mode != "match":
        rows = unflipped_rows(features, mode)
        return rows, plain(rows), np.zeros(len(rows), dtype=np.int64)
    result = flip_aware_kmeans(features, k, seed=0 if seed is None else int(seed), n_init=n_init)
    return features[result.flips, np.arange(features.shape[1])], result.labels, result.flips


def cluster_flipped_encodings(codes: ArrayLike, uuids: Sequence[str], n_clusters: int, mode: str, *, n_init: int = 100,
                              seed: int | None = None, method: str = "auto") -> tuple[Clustering, NDArray[np.float64], NDArray[np.int64]]:
    """The run's clustering of the codes of the four flips ``(4, N, D)`` under ``mode`` (see :data:`FLIP_MODES`).

    ``off`` and ``average`` are :func:`~autoencoder3d.clustering.kmeans.cluster_encodings` of the codes as they are
    or averaged; ``match`` is :func:`flip_aware_kmeans` (method ``"flip-aware"``).

    Returns:
        (the clustering, the (N, D) codes it is made of, each subvolume's matched flip).
    """
    from ..errors import InputError
    from .kmeans import Clustering, cluster_encodings

    codes = np.asarray(codes, dtype=np.float64)
    if check_flip_mode(mode) != "match":
        rows = unflipped_rows(codes, mode)
        return cluster_encodings(rows, uuids, n_clusters, n_init=n_init, seed=seed, method=method), rows, np.zeros(len(rows), np.int64)
    if not 1 <= n_clusters <= codes.shape[1]:
        raise InputError(f"n_samples={codes.shape[1]} usable subvolumes should be >= n_clusters={n_clusters}")
    result = flip_aware_kmeans(codes, n_clusters, seed=0 if seed is None else int(seed), n_init=n_init)
    members = {k: [] for k in range(n_clusters)}
    for uuid, label in zip(uuids, result.labels):
        members[int(label)].append(uuid)
    matched = codes[result.flips, np.arange(codes.shape[1])]
    clustering = Clustering(labels=result.labels, centers=result.centers, members=members, inertia=result.inertia, method="flip-aware")
    return clustering, matched, result.flips


def flips_record(mode: str, matched: ArrayLike) -> dict:
    """What run.json records of a clustering under the flips: the mode and, with ``match``, how many subvolumes each flip matched."""
    from ..prep.flips import PROPER_FLIPS

    record = {"mode": mode, "flips": [[int(s) for s in signs] for signs in PROPER_FLIPS]}
    if mode == "match":
        record["matched"] = np.bincount(np.asarray(matched, dtype=np.int64), minlength=len(PROPER_FLIPS)).tolist()
    return record
