"""The PCA baseline of every clustering: what k-means finds without the autoencoder.

Every ``train`` and ``cluster`` run also clusters the same subvolumes, as the
autoencoder sees them (pose-normalized when the run was, and standardized with
the encoder's own mean and standard deviation), by k-means with the same k and
seed on a PCA of their voxels to the code length. run.json's ``baseline``
says how the two partitions agree (adjusted Rand index and the k x k
contingency table) and how stable each is (mean ARI between k-means runs with
three seeds on the same features): two partitions that disagree, one of them
stable and the other not, tell a scientist which to trust.

The voxels are read by index in batches (a store is never read whole): the
PCA is fitted on a bounded random sample of the subvolumes
(``FIT_MAX_VALUES`` voxel values at most) and every subvolume is then
projected batch by batch.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..prep.flips import PROPER_FLIPS, apply_flip
from .flip_kmeans import clustered_features
from .kmeans import kmeans_method, make_kmeans

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ..volume import Volumes

FIT_MAX_VALUES = 1 << 25
"""The PCA is fitted on at most this many voxel values (128 MiB of float32): 1024 subvolumes of 32^3."""
BATCH = 256
"""Subvolumes read and projected at a time."""
N_INIT = 10
"""k-means restarts of the baseline and of every stability run (the autoencoder's own clustering keeps --n-init)."""
FLIP_METHOD = {"off": "", "average": "the four flips' PCA features averaged, then ", "match": "flip-aware "}
STABILITY_SEEDS = 3
"""k-means runs, with seeds seed, seed+1, seed+2, whose mean pairwise ARI is a partition's stability."""


def pca_features(volumes: Volumes, n_components: int, *, mean: float = 0.0, std: float = 1.0, seed: int = 0,
                 fit_max_values: int = FIT_MAX_VALUES, batch: int = BATCH,
                 flips: Sequence[Sequence[int]] | np.ndarray | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
    """PCA of ``(volumes - mean) / std`` (flattened), fitted on a bounded sample, every row projected in batches.

    Args:
        volumes: ``(N, n1, n2, n3)`` array, or a store's volumes read by index.
        n_components: at most this many components (fewer when there are fewer samples or voxels).
        mean, std: the standardization the encoder applies.
        seed: which subvolumes the sample holds.
        fit_max_values: the sample holds at most this many voxel values (at least ``n_components + 1`` subvolumes).
        batch: subvolumes read at a time.
        flips: sign triples (rows of :data:`~autoencoder3d.prep.flips.PROPER_FLIPS`): the PCA is fitted on
            the sampled subvolumes in every one of these flips and each subvolume is projected in each,
            every row read once; the features are then ``(len(flips), N, components)``.

    Returns:
        ((N, components) float32 features, or (flips, N, components);
        facts: components, fitted_on, explained_variance).
    """
    signs = [None] if flips is None else [(1, *(int(s) for s in row)) for row in flips]
    n = len(volumes)
    shape = tuple(volumes.shape[1:])
    voxels = int(np.prod(shape))
    n_fit = min(n, max(n_components + 1, fit_max_values // max(voxels * len(signs), 1)))
    rows = np.arange(n) if n_fit == n else np.sort(np.random.default_rng(seed).choice(n, n_fit, replace=False))
    sample = np.empty((len(signs), n_fit, voxels), dtype=np.float32)  # flip-major, as the flips' rows one after another
    for lo in range(0, n_fit, batch):
        sample[:, lo:lo + batch] = _read_flipped(volumes, rows[lo:lo + batch], mean, std, signs, shape)
    sample = sample.reshape(len(signs) * n_fit, voxels)
    components = max(1, min(n_components, len(sample), voxels))
    center, axes, explained = _fit_pca(sample, components, seed)
    del sample
    features = np.empty((len(signs), n, len(axes)), dtype=np.float32)
    for lo in range(0, n, batch):
        index = np.arange(lo, min(lo + batch, n))
        features[:, index] = (_read_flipped(volumes, index, mean, std, signs, shape) - center) @ axes.T
    facts = {"components": int(len(axes)), "fitted_on": int(n_fit), "explained_variance": round(explained, 4)}
    return (features[0] if flips is None else features), facts


def _read_flipped(volumes, index, mean, std, signs, shape):
    """``(len(signs), len(index), voxels)``: the rows read once, standardized, in each flip."""
    block = _read(volumes, index, mean, std).reshape((len(index),) + shape)
    return np.stack([(block if flip is None else apply_flip(block, flip)).reshape(len(index), -1) for flip in signs])


GRAM_MAX = 2048
"""Up to this many sampled subvolumes (and no more than voxels), the PCA comes from their Gram matrix."""


def _fit_pca(sample, components, seed):
    """(mean row, (c, voxels) unit principal axes, fraction of the variance they explain) of ``sample``."""
    center = sample.mean(axis=0)
    centred = sample - center
    total = float(np.einsum("ij,ij->", centred, centred, dtype=np.float64))
    if len(sample) <= min(GRAM_MAX, sample.shape[1]):
        # few rows, many voxels: eigenvectors of the (n, n) Gram matrix give the axes in one pass
        values, vectors = np.linalg.eigh((centred @ centred.T).astype(np.float64))
        order = np.argsort(values)[::-1][:components]
        values = values[order]
        keep = values > values[0] * 1e-10 if len(values) and values[0] > 0 else np.zeros(len(values), bool)
        keep[0] = True
        values, vectors = np.maximum(values[keep], 1e-30), vectors[:, order][:, keep]
        axes = ((centred.T @ vectors.astype(np.float32)) / np.sqrt(values).astype(np.float32)).T
        explained = float(values.sum() / total) if total > 0 else 0.0
        return center, np.ascontiguousarray(axes, dtype=np.float32), explained
    from sklearn.decomposition import PCA

    pca = PCA(n_components=components, svd_solver="randomized", random_state=seed).fit(sample)
    return center, pca.components_.astype(np.float32), float(np.sum(pca.explained_variance_ratio_))


def _read(volumes, index, mean, std):
    block = np.asarray(volumes[index], dtype=np.float32).reshape(len(index), -1)
    return (block - np.float32(mean)) / np.float32(std)


def kmeans_labels(features: ArrayLike, k: int, seed: int, *, n_init: int = N_INIT) -> NDArray[np.int64]:
    """k-means labels of ``features`` (MiniBatchKMeans above the size where the clustering switches to it)."""
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float64)
    method = kmeans_method(len(features), k)
    # a small problem runs fastest on one thread: on a busy machine, OpenMP threads waiting for each other
    # made k-means of 300 codes 10 to 30 times slower (measured on 2 shared cores)
    with threadpool_limits(1) if len(features) * k <= SMALL else contextlib.nullcontext():
        return make_kmeans(method, k, n_init, seed).fit(features).labels_.astype(np.int64)


SMALL = 1_000_000
"""k-means of at most this many samples x clusters runs on one thread."""
SMALL_DATA = 1 << 28
"""The PCA of at most this many voxel values (8192 subvolumes of 32^3) runs on one thread, for the same reason."""


def ari(a: ArrayLike, b: ArrayLike) -> float:
    """Adjusted Rand index of two partitions of the same items."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(a), np.asarray(b)))


def stability(features: ArrayLike, k: int, seed: int, *, first: ArrayLike | None = None, runs: int = STABILITY_SEEDS,
              n_init: int = N_INIT, flips: str = "off") -> float:
    """Mean ARI between the partitions of k-means runs with seeds ``seed .. seed + runs - 1``.

    ``first``: the labels of the run with ``seed`` when already computed.
    ``flips``: with ``off``, ``features`` are ``(N, D)``; otherwise ``(4, N, D)``, clustered as
    :func:`~autoencoder3d.clustering.flip_kmeans.clustered_features` does.
    """
    labelings = [np.asarray(first) if first is not None else labels_under(features, k, seed, flips, n_init)]
    labelings += [labels_under(features, k, seed + i, flips, n_init) for i in range(1, runs)]
    return float(np.mean([ari(a, b) for a, b in itertools.combinations(labelings, 2)]))


def labels_under(features: ArrayLike, k: int, seed: int, flips: str = "off", n_init: int = N_INIT) -> NDArray[np.int64]:
    """k-means labels of ``features``: ``(N, D)`` with ``flips`` off, else ``(4, N, D)`` clustered under that flip mode."""
    if flips == "off" and np.ndim(features) == 2:
        return kmeans_labels(features, k, seed, n_init=n_init)
    return clustered_features(features, flips, k, seed, n_init, lambda rows: kmeans_labels(rows, k, seed, n_init=n_init))[1]


def contingency_table(rows: ArrayLike, columns: ArrayLike, row_ids: Sequence[int], column_ids: Sequence[int]) -> NDArray[np.int64]:
    """``table[i, j]``: items with ``rows == row_ids[i]`` and ``columns == column_ids[j]``."""
    row_of = {c: i for i, c in enumerate(row_ids)}
    col_of = {c: j for j, c in enumerate(column_ids)}
    table = np.zeros((len(row_ids), len(column_ids)), dtype=np.int64)
    np.add.at(table, ([row_of[int(r)] for r in np.asarray(rows)], [col_of[int(c)] for c in np.asarray(columns)]), 1)
    return table


def compare_partitions(autoencoder: ArrayLike, baseline: ArrayLike, autoencoder_ids: Sequence[int], baseline_ids: Sequence[int]) -> dict[str, Any]:
    """ARI and contingency table (rows: the autoencoder's clusters, columns: the baseline's) of two partitions."""
    table = contingency_table(autoencoder, baseline, autoencoder_ids, baseline_ids)
    return {
        "ari": round(ari(autoencoder, baseline), 4),
        "contingency": {"rows": [int(c) for c in autoencoder_ids], "columns": [int(c) for c in baseline_ids], "counts": table.tolist()},
    }


def run_baseline(volumes: Volumes, uuids: Sequence[str], codes: ArrayLike, labels: ArrayLike, label_ids: Sequence[int], k: int, *,
                 seed: int | None = None, mean: float = 0.0, std: float = 1.0, flips: str = "off",
                 ) -> tuple[dict[str, Any], dict[int, list[str]]]:
    """The PCA baseline of a clustering, compared with it.

    Args:
        volumes: the clustered subvolumes, as the encoder reads them (before its standardization).
        uuids: their ids, in the same order.
        codes: their (N, d) codes; the PCA keeps ``d`` components (fewer when there are fewer samples or voxels).
            With ``flips`` other than off, the codes of their four flips, (4, N, d).
        labels: the autoencoder's cluster of each subvolume (after any merge).
        label_ids: the autoencoder's cluster ids (the contingency table's rows, empty clusters included).
        k: k-means clusters of the baseline (the run's N_CLUSTERS).
        seed: the run's seed (0 when None).
        mean, std: the encoder's standardization.
        flips: how the run treated the four proper flips (:data:`~autoencoder3d.clustering.flip_kmeans.FLIP_MODES`);
            the baseline treats them the same way: its PCA is fitted on the sampled subvolumes in all four flips.

    Returns:
        (record for run.json, baseline members {cluster: [uuids]}).
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    seed = 0 if seed is None else int(seed)
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    small = len(volumes) * int(np.prod(volumes.shape[1:])) <= SMALL_DATA
    with threadpool_limits(1) if small else contextlib.nullcontext():
        features, facts = pca_features(volumes, codes.shape[-1], mean=mean, std=std, seed=seed, flips=None if flips == "off" else PROPER_FLIPS)
    base = labels_under(features, k, seed, flips)
    members = {c: [] for c in range(k)}
    for uuid, label in zip(uuids, base):
        members[int(label)].append(str(uuid))
    record = {
        "method": f"{FLIP_METHOD[flips]}k-means (k={k}, {N_INIT} starts, seed {seed}) on PCA ({facts['components']} components, "
                  f"fitted on {facts['fitted_on']} subvolumes{'' if flips == 'off' else ' in their four flips'}) of the standardized "
                  "subvolumes the autoencoder read",
        "flips": flips,
        **facts,
        "k": int(k),
        "seed": seed,
        "sizes": {str(c): len(v) for c, v in members.items()},
        **compare_partitions(labels, base, list(label_ids), list(range(k))),
        "stability": {
            "autoencoder": round(stability(codes, k, seed, flips=flips), 4),
            "baseline": round(stability(features, k, seed, first=base, flips=flips), 4),
            "runs": STABILITY_SEEDS,
            "n_init": N_INIT,
        },
    }
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record, members
