"""Each cluster's stability: how often k-means, rerun with other seeds the way the run clustered, finds it again.

The run's clusterer is rerun ``STABILITY_RESTARTS`` times on the codes it
clustered, each rerun from one k-means++ seeding (the original non-greedy
one): scikit-learn's KMeans (Lloyd) of the codes as they are (``--flips off``)
or averaged over the four flips (``average``), and flip-aware k-means
(:func:`~autoencoder3d.clustering.flip_kmeans.flip_aware_kmeans`) of the codes
of the four flips under ``match``, where plain k-means of the matched codes
would find again whatever frames the run itself chose. For each rerun, a
cluster's overlap with the rerun's cluster that shares most of it is the
Jaccard index ``|A & B| / |A | B|``; its stability is the mean over the
reruns (1.0: every rerun finds the same cluster). Above
``STABILITY_MAX_CODES`` subvolumes the reruns use a sample (every cluster
keeps at least ``STABILITY_MIN_PER_CLUSTER`` members, or all of them).

This is measured when a run clusters, and recorded with its encodings for
the report (``clus-center/encodings.pickle``), since the codes of the four
flips are not kept. The partition-wide stability of the run and of its PCA
baseline (mean ARI between seeds) is :func:`~autoencoder3d.clustering.baseline.stability`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .flip_kmeans import clustered_features, unflipped_rows

STABILITY_RESTARTS = 3
STABILITY_MAX_CODES = 20_000
STABILITY_MIN_PER_CLUSTER = 20


def best_jaccard(labels: ArrayLike, other: ArrayLike) -> dict[int, float]:
    """Cluster id of ``labels`` -> the largest Jaccard index ``|A & B| / |A | B|`` with any cluster B of ``other``."""
    labels, other = np.asarray(labels), np.asarray(other)
    ids, a = np.unique(labels, return_inverse=True)
    _, b = np.unique(other, return_inverse=True)
    nb = int(b.max()) + 1 if len(b) else 0
    both = np.bincount(a * nb + b, minlength=len(ids) * nb).reshape(len(ids), nb).astype(np.float64)
    union = both.sum(axis=1, keepdims=True) + both.sum(axis=0, keepdims=True) - both
    return {int(k): float((both[i] / np.maximum(union[i], 1)).max()) for i, k in enumerate(ids)}


def stability_sample(labels: ArrayLike, max_codes: int = STABILITY_MAX_CODES, seed: int | None = 0) -> NDArray[np.int64]:
    """Rows the stability reruns use: all of them up to ``max_codes``, else a random sample keeping every cluster represented."""
    labels = np.asarray(labels)
    if len(labels) <= max_codes:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    rows = []
    for k in np.unique(labels):
        own = np.flatnonzero(labels == k)
        take = min(len(own), max(STABILITY_MIN_PER_CLUSTER, round(len(own) * max_codes / len(labels))))
        rows.append(rng.choice(own, take, replace=False))
    return np.sort(np.concatenate(rows))


def cluster_stability(codes: ArrayLike, labels: ArrayLike, flips: str = "off", *, restarts: int = STABILITY_RESTARTS,
                      seed: int | None = 0, max_codes: int = STABILITY_MAX_CODES) -> dict[int, float]:
    """Cluster id -> mean over ``restarts`` reruns (seeds ``seed + 1 ... seed + restarts``) of its best Jaccard overlap.

    Args:
        codes: (N, d) codes clustered as they are; or (4, N, d), the codes of the four proper flips
            (identity first), clustered under ``flips`` as the run did
            (:func:`~autoencoder3d.clustering.flip_kmeans.clustered_features`).
        labels: (N,) the clusters to measure (after any merge: the reruns look for as many clusters).
        flips: the run's flip mode (:data:`~autoencoder3d.clustering.flip_kmeans.FLIP_MODES`).
        seed: the run's seed (0 when None): the sample's, and the reruns' from ``seed + 1``.
        max_codes: above this many subvolumes the reruns use :func:`stability_sample`.
    """
    base = 0 if seed is None else int(seed)
    rows = stability_sample(labels, max_codes, base)
    codes = np.asarray(codes, dtype=np.float32)
    views = (codes if codes.ndim == 3 else codes[None])[:, rows]
    labels = np.asarray(labels)[rows]
    clustered = views.transpose(1, 0, 2).reshape(len(rows), -1) if flips == "match" else unflipped_rows(views, flips)
    n_clusters = min(len(np.unique(labels)), len(np.unique(clustered, axis=0)))
    if n_clusters < 2:
        return {int(k): 1.0 for k in np.unique(labels)}
    totals: dict[int, float] = {}
    for r in range(1, restarts + 1):
        rerun = clustered_features(views, flips, n_clusters, base + r, 1, lambda points, s=base + r: _plain_rerun(points, n_clusters, s))[1]
        for k, j in best_jaccard(labels, rerun).items():
            totals[k] = totals.get(k, 0.0) + j / restarts
    return totals


def _plain_rerun(points, n_clusters, seed):
    """KMeans (Lloyd) from one k-means++ seeding without the greedy local trials (as fast at 1,000 clusters as a few Lloyd steps)."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    points = np.asarray(points, dtype=np.float32)
    init, _ = kmeans_plusplus(points, n_clusters, random_state=seed, n_local_trials=1)
    return KMeans(n_clusters=n_clusters, init=init, n_init=1).fit_predict(points)
