"""Clustering the encodings and writing the published ``clus-center`` pickles (section 6)."""

import os
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .io import save_pickle


@dataclass
class Clustering:
    """k-means of the encodings.

    Attributes:
        labels: cluster of every subvolume, in sample order (N,).
        centers: cluster centres in encoding space (k, encoding_dim).
        members: cluster id -> list of uuids (the published ``kmeans.pickle``).
        inertia: k-means objective.
    """

    labels: np.ndarray
    centers: np.ndarray
    members: dict
    inertia: float

    def sizes(self):
        """Cluster id -> number of members."""
        return {k: len(v) for k, v in self.members.items()}


def cluster_encodings(codes, uuids, n_clusters, *, n_init=100, seed=None):
    """k-means of the encodings, as published (scikit-learn KMeans, ``n_init=100``).

    Args:
        codes: (N, encoding_dim) encodings.
        uuids: the N subvolume ids, in the same order.
        n_clusters: number of clusters.
        n_init: k-means restarts (published: 100).
        seed: random state, for reproducible clusters.

    Returns:
        :class:`Clustering`; cluster ids are plain ints 0..k-1.

    Raises:
        InputError: fewer subvolumes than clusters.
    """
    from sklearn.cluster import KMeans

    codes = np.asarray(codes, dtype=np.float64)
    if n_clusters < 1:
        raise InputError(f"number of clusters must be a positive integer, got {n_clusters}")
    if len(codes) < n_clusters:
        raise InputError(f"n_samples={len(codes)} usable subvolumes should be >= n_clusters={n_clusters}")
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(codes)
    labels = kmeans.labels_.astype(int)
    members = {int(k): [] for k in range(n_clusters)}
    for uuid, label in zip(uuids, labels):
        members[int(label)].append(uuid)
    return Clustering(labels=labels, centers=kmeans.cluster_centers_, members=members, inertia=float(kmeans.inertia_))


def write_cluster_pickles(clus_dir, clustering, decoded_centers):
    """Write ``kmeans.pickle``, ``ccents.pickle`` and ``ccents_d.pickle`` (atomically).

    Args:
        clus_dir: the ``clus-center`` folder.
        clustering: a :class:`Clustering`.
        decoded_centers: (k, n1, n2, n3) decoded cluster centres.
    """
    os.makedirs(clus_dir, exist_ok=True)
    save_pickle(os.path.join(clus_dir, "kmeans.pickle"), clustering.members)
    ccents = {int(k): np.asarray(decoded_centers[k], dtype=np.float32) for k in range(len(decoded_centers))}
    save_pickle(os.path.join(clus_dir, "ccents.pickle"), ccents)
    save_pickle(os.path.join(clus_dir, "ccents_d.pickle"), np.asarray(clustering.centers, dtype=np.float32))
