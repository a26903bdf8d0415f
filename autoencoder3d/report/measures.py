"""Per-cluster measures a scientist can rank clusters by: spread, stability, and the structure of the decoded centre.

- **spread**: the mean Euclidean distance of the members' codes to the cluster's
  centre in code space (code units; the k-means centre of ``ccents_d.pickle``,
  else the members' mean code).
- **stability**: how often the run's own clusterer, rerun with other seeds,
  finds the cluster again (mean best Jaccard overlap); measured when the run
  clusters (:mod:`autoencoder3d.clustering.stability`, flip-aware under
  ``--flips match``) and read from ``encodings.pickle``; None when the run
  recorded none.
- **structure**: how much structure the decoded centre has, in units of the
  noise of one of its members (see :func:`structure_score`); a centre below
  ``FLAT_BELOW`` is marked *flat*: no more structure than noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..volume import SubvolumeSet
    from .page import RunOutputs

MEASURE_MEMBERS = 16   # members read per cluster to measure their noise
MEASURE_MAX_VOLUMES = 16_000  # ... and at most this many in all (at least MEASURE_MIN_MEMBERS per cluster)
MEASURE_MIN_MEMBERS = 3
MEASURE_READ_BYTES = 256 * 2**20  # members are read in batches of about this many bytes (a store: one read per batch)
FLAT_BELOW = 1.0


@dataclass
class ClusterMeasures:
    """The measures of one cluster (None where they cannot be measured)."""

    spread: float | None = None
    stability: float | None = None
    structure: float | None = None

    @property
    def flat(self) -> bool | None:
        """True when the decoded centre has no more structure than noise (structure below FLAT_BELOW)."""
        return None if self.structure is None else bool(self.structure < FLAT_BELOW)


# ---------------------------------------------------------------- in code space


def code_spread(codes: ArrayLike, labels: ArrayLike, centers_code: ArrayLike | None = None) -> dict[int, float]:
    """Cluster id -> mean distance of its members' codes to its centre (``centers_code[k]``, else their mean)."""
    codes, labels = np.asarray(codes, dtype=np.float64), np.asarray(labels)
    centers = None if centers_code is None else np.asarray(centers_code, dtype=np.float64)
    spread = {}
    for k in np.unique(labels):
        own = codes[labels == k]
        usable = centers is not None and centers.ndim == 2 and 0 <= k < len(centers) and centers.shape[1] == codes.shape[1]
        centre = centers[k] if usable else own.mean(axis=0)
        spread[int(k)] = float(np.linalg.norm(own - centre, axis=1).mean())
    return spread


# ---------------------------------------------------------------- the decoded centre against its members' noise


def _shells(shape):
    """Each voxel's radial shell (distance to the box centre, rounded) and which voxels lie in the inscribed sphere."""
    grid = np.indices(shape, dtype=np.float64)
    middle = (np.asarray(shape, dtype=np.float64) - 1) / 2
    radius = np.sqrt(sum((g - m) ** 2 for g, m in zip(grid, middle)))
    shell = np.rint(radius).astype(np.int64)
    return shell, radius <= min(shape) / 2


def _binned(volumes):
    """2 x 2 x 2 block means of (m, n1, n2, n3) volumes (odd edges dropped)."""
    m, *sides = volumes.shape
    cut = [s - s % 2 for s in sides]
    if min(cut) < 2:
        return volumes
    v = volumes[:, : cut[0], : cut[1], : cut[2]]
    return v.reshape(m, cut[0] // 2, 2, cut[1] // 2, 2, cut[2] // 2, 2).mean(axis=(2, 4, 6))


def structure_score(center: ArrayLike, members: ArrayLike) -> float | None:
    """The decoded centre's structure in units of its members' noise; below 1: no more structure than one member's noise.

    Two views, the larger counts:

    - binned: the standard deviation over the box of the centre in 2 x 2 x 2
      voxel blocks, divided by the members' noise in such blocks (the root mean
      square over blocks of the standard deviation across members, each member
      less its own mean);
    - radial: the centre's radial profile (mean over 1-voxel shells around the
      box centre, inside the inscribed sphere, less the sphere's mean), each shell
      divided by the standard deviation across members of the same shell of
      theirs (each less its own sphere mean); the root mean square over shells.

    A single member of pure noise scores about 1 in both views, so a centre
    below 1 would be lost in the noise of one of its members.

    Returns:
        The score, or None with fewer than MEASURE_MIN_MEMBERS members, other shapes, or members without noise.
    """
    center = np.asarray(center, dtype=np.float64)
    members = np.asarray(members, dtype=np.float64)
    if len(members) < MEASURE_MIN_MEMBERS or members.shape[1:] != center.shape or center.ndim != 3:
        return None
    scores = []
    binned_c, binned_m = _binned(center[None])[0], _binned(members)
    deviation = binned_m - binned_m.mean(axis=(1, 2, 3), keepdims=True)
    noise = float(np.sqrt(np.mean(deviation.var(axis=0, ddof=1))))
    if noise > 0:
        scores.append(float(binned_c.std()) / noise)
    shell, inside = _shells(center.shape)
    shell = shell[inside]
    counts = np.bincount(shell)
    used = counts > 0

    def profile(volume):
        values = volume[inside]
        return (np.bincount(shell, weights=values, minlength=len(counts))[used] / counts[used]) - values.mean()

    spread = np.std([profile(v) for v in members], axis=0, ddof=1)
    z = profile(center)[spread > 0] / spread[spread > 0]
    if len(z):
        scores.append(float(np.sqrt(np.mean(z**2))))
    return max(scores) if scores else None


def _measure_rows(run, subvolumes, seed):
    """Cluster id -> rows of ``subvolumes`` of up to MEASURE_MEMBERS members drawn at random (fewer for very many clusters)."""
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    per = max(MEASURE_MIN_MEMBERS, min(MEASURE_MEMBERS, MEASURE_MAX_VOLUMES // max(len(run.members), 1)))
    rng = np.random.default_rng(seed)
    rows = {}
    for k in sorted(run.members):
        own = np.array([index[u] for u in run.members[k] if u in index], dtype=np.int64)
        rows[k] = np.sort(rng.choice(own, min(per, len(own)), replace=False)) if len(own) else own
    return rows


def structure_scores(run: RunOutputs, subvolumes: SubvolumeSet | None, seed: int | None = 0) -> dict[int, float | None]:
    """Cluster id -> :func:`structure_score` of its decoded centre against up to MEASURE_MEMBERS of its members (read by index)."""
    if subvolumes is None:
        return {}
    wanted = {k: rows for k, rows in _measure_rows(run, subvolumes, seed).items() if k in run.centers and len(rows) >= MEASURE_MIN_MEMBERS}
    per_batch = max(1, MEASURE_READ_BYTES // (4 * int(np.prod(subvolumes.volumes.shape[1:]))))
    scores, batch = {}, []
    for k in [*wanted, None]:
        if k is not None and sum(len(wanted[c]) for c in batch) + len(wanted[k]) <= per_batch:
            batch.append(k)
            continue
        if batch:  # one read of the batch's rows, in order
            rows = np.unique(np.concatenate([wanted[c] for c in batch]))
            volumes = subvolumes.volumes[rows]
            for c in batch:
                scores[c] = structure_score(run.centers[c], volumes[np.searchsorted(rows, wanted[c])])
        batch = [k]
    return scores


def fill_stability(run: RunOutputs, measure: Callable[..., Mapping[int, float]] | None, seed: int | None = 0) -> None:
    """Give a run that recorded no stability (clustered by an earlier version) one measured now, or a note why not.

    ``measure(codes, labels, seed=...)`` reruns k-means on the saved codes (the
    CLI passes :func:`autoencoder3d.clustering.stability.cluster_stability`). A run
    clustered with ``--flips match`` is left unmeasured: the codes of its four
    flips were not kept, and plain reruns of its matched codes would overstate it.
    """
    if run.stability is not None or run.codes is None or run.labels is None:
        return
    if measure is not None and run.flips is None:
        run.stability = {int(k): float(v) for k, v in measure(run.codes, run.labels, seed=seed).items()}
        run.notes.append("the run recorded no stability of its clusters: measured now, by k-means reruns on its saved codes")
    else:
        run.notes.append("the run recorded no stability of its clusters (it is measured when 'train' or 'cluster' clusters)")


def cluster_measures(run: RunOutputs, subvolumes: SubvolumeSet | None, *, seed: int | None = 0,
                     measure_stability: Callable[..., Mapping[int, float]] | None = None) -> dict[int, ClusterMeasures]:
    """Every cluster's :class:`ClusterMeasures`: spread from the codes, stability as the run recorded it
    (or measured now by ``measure_stability``: :func:`fill_stability`), structure from the centre and members."""
    fill_stability(run, measure_stability, seed)
    measures = {k: ClusterMeasures() for k in run.centers}
    if run.codes is not None and run.labels is not None and len(run.codes):
        for k, value in code_spread(run.codes, run.labels, run.centers_code).items():
            measures.setdefault(k, ClusterMeasures()).spread = value
    for k, value in (run.stability or {}).items():
        if k in measures:
            measures[k].stability = value
    for k, value in structure_scores(run, subvolumes, seed).items():
        measures.setdefault(k, ClusterMeasures()).structure = value
    return measures


def measures_table(measures: Mapping[int, ClusterMeasures]) -> dict[str, dict[str, float | bool | None]]:
    """The measures as plain JSON-able values, by cluster id (a string)."""
    def plain(value):
        return None if value is None or not np.isfinite(value) else float(value)

    return {str(k): {"spread": plain(m.spread), "stability": plain(m.stability), "structure": plain(m.structure), "flat": m.flat}
            for k, m in sorted(measures.items())}
