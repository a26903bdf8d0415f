"""Clustering the encodings and writing the published ``clus-center`` pickles (section 6)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..formats.subvolume_pickle import save_pickle
from ..runs.folder import CENTER_CODES, CENTERS, MEMBERS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

log = logging.getLogger("autoencoder3d")


@dataclass
class Clustering:
    """k-means of the encodings.

    Attributes:
        labels: cluster of every subvolume, in sample order (N,).
        centers: cluster centres in encoding space (k, encoding_dim).
        members: cluster id -> list of uuids (the published ``kmeans.pickle``).
        inertia: k-means objective.
        method: ``"full"`` (KMeans), ``"minibatch"`` (MiniBatchKMeans) or ``"flip-aware"`` (:mod:`.flip_kmeans`).
        merged: kept cluster id -> the k-means ids merged into it (:mod:`.merge`); empty without a merge.
    """

    labels: np.ndarray
    centers: np.ndarray
    members: dict
    inertia: float
    method: str = "full"
    merged: dict = field(default_factory=dict)

    def sizes(self) -> dict[int, int]:
        """Cluster id -> number of members."""
        return {k: len(v) for k, v in self.members.items()}


# Above this many samples x clusters, KMeans(n_init=100) takes minutes to hours: measured on 2 cores,
# 10,000 codes at k=100 took 80 s (see README, "Many tomograms"), and the time grows with N x k.
MINIBATCH_ABOVE = 4_000_000
MINIBATCH_SIZE = 4096
KMEANS_METHODS = ("auto", "full", "minibatch")


MINIBATCH_CODES = 100_000
"""Above this many codes MiniBatchKMeans runs whatever the number of clusters: KMeans(n_init=100) passes over
every code in every iteration of every restart, so its time grows with N, while MiniBatchKMeans's per-step
cost does not."""


def too_many_codes(n_samples: int, minibatch_codes: int = MINIBATCH_CODES) -> bool:
    """Whether ``n_samples`` codes are too many for the full KMeans, whatever the number of clusters."""
    return int(n_samples) > int(minibatch_codes)


def kmeans_method(n_samples: int, n_clusters: int, method: str = "auto", *, minibatch_codes: int = MINIBATCH_CODES) -> str:
    """``"full"`` (the published KMeans) or ``"minibatch"`` (MiniBatchKMeans) for this many codes and clusters.

    ``"auto"`` is MiniBatchKMeans above ``MINIBATCH_ABOVE`` codes x clusters or above ``minibatch_codes`` codes.
    """
    if method not in KMEANS_METHODS:
        raise InputError(f"--kmeans {method}: choose from {', '.join(KMEANS_METHODS)}")
    if method != "auto":
        return method
    large = n_samples * n_clusters > MINIBATCH_ABOVE or too_many_codes(n_samples, minibatch_codes)
    return "minibatch" if large else "full"


def make_kmeans(method: str, n_clusters: int, n_init: int, seed: int | None) -> Any:
    """An unfitted scikit-learn ``KMeans`` (``method="full"``) or ``MiniBatchKMeans`` (batches of 4096, at most 3 restarts)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if method == "minibatch":
        return MiniBatchKMeans(n_clusters=n_clusters, batch_size=MINIBATCH_SIZE, n_init=min(n_init, 3), random_state=seed)
    return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)


def cluster_encodings(codes: ArrayLike, uuids: Sequence[str], n_clusters: int, *, n_init: int = 100, seed: int | None = None,
                      method: str = "auto", minibatch_codes: int = MINIBATCH_CODES) -> Clustering:
    """k-means of the encodings, as published (scikit-learn KMeans, ``n_init=100``) up to a size.

    Above ``MINIBATCH_ABOVE`` samples x clusters, or above ``minibatch_codes`` samples
    (``method="auto"``), scikit-learn's MiniBatchKMeans (batches of 4096, at most 3
    restarts, seeded by ``seed``) replaces it.

    Args:
        codes: (N, encoding_dim) encodings.
        uuids: the N subvolume ids, in the same order.
        n_clusters: number of clusters.
        n_init: k-means restarts (published: 100).
        seed: random state, for reproducible clusters.
        method: ``"auto"``, ``"full"`` (always KMeans) or ``"minibatch"``.
        minibatch_codes: ``"auto"`` takes MiniBatchKMeans above this many samples (default :data:`MINIBATCH_CODES`).

    Returns:
        :class:`Clustering`; cluster ids are plain ints 0..k-1.

    Raises:
        InputError: fewer subvolumes than clusters.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if n_clusters < 1:
        raise InputError(f"number of clusters must be a positive integer, got {n_clusters}")
    if len(codes) < n_clusters:
        raise InputError(f"n_samples={len(codes)} usable subvolumes should be >= n_clusters={n_clusters}")
    with _convergence_warnings_logged(codes, n_clusters) as fitted:
        method = kmeans_method(len(codes), n_clusters, method, minibatch_codes=minibatch_codes)
        kmeans = make_kmeans(method, n_clusters, n_init, seed).fit(codes)
        labels = fitted["labels"] = kmeans.labels_.astype(int)
    members = {int(k): [] for k in range(n_clusters)}
    for uuid, label in zip(uuids, labels):
        members[int(label)].append(uuid)
    return Clustering(labels=labels, centers=kmeans.cluster_centers_, members=members, inertia=float(kmeans.inertia_), method=method)


@contextlib.contextmanager
def _convergence_warnings_logged(codes, n_clusters):
    """scikit-learn's ConvergenceWarning becomes one line in the tool's words; other warnings pass on."""
    from sklearn.exceptions import ConvergenceWarning

    fitted = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield fitted
    said = False
    for warning in caught:
        if not issubclass(warning.category, ConvergenceWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif not said:
            said = True
            _say_convergence(codes, n_clusters, fitted.get("labels"), str(warning.message))


def _say_convergence(codes, n_clusters, labels, message):
    distinct = len(np.unique(codes, axis=0))
    filled = len(np.unique(labels)) if labels is not None else distinct
    if distinct < n_clusters:
        log.warning(
            "k-means: the %d codes take only %d distinct value%s, so only %d of the %d clusters have members "
            "and the other %d are empty", len(codes), distinct, "" if distinct == 1 else "s", filled, n_clusters, n_clusters - filled,
        )
    else:
        log.warning("k-means did not converge (%s); the clusters may change with --n-init or --seed", message.strip())


def write_cluster_pickles(clus_dir: str | os.PathLike, clustering: Clustering, decoded_centers: np.ndarray) -> None:
    """Write ``kmeans.pickle``, ``ccents.pickle`` and ``ccents_d.pickle`` (atomically).

    Args:
        clus_dir: the ``clus-center`` folder.
        clustering: a :class:`Clustering`.
        decoded_centers: (k, n1, n2, n3) decoded cluster centres, indexed by cluster id.
    """
    os.makedirs(clus_dir, exist_ok=True)
    save_pickle(os.path.join(clus_dir, MEMBERS), clustering.members)
    # one centre per cluster id: after a merge, the ids merged into another have none
    ccents = {int(k): np.asarray(decoded_centers[k], dtype=np.float32) for k in sorted(clustering.members)}
    save_pickle(os.path.join(clus_dir, CENTERS), ccents)
    save_pickle(os.path.join(clus_dir, CENTER_CODES), np.asarray(clustering.centers, dtype=np.float32))
