"""Merging clusters by hand: ``autoencoder3d cluster ... --merge 1,3,5 --merge 2,7``.

The rule: after k-means, each group becomes one cluster with the group's
lowest id; the other ids of the group are gone from the run (no members, no
centre, no files); every other cluster keeps its id and its members. The
merged cluster's centre code is the mean code of all its members, and its
decoded centre is decoded from that code. Groups may not share an id, must
name at least two clusters, and may name only clusters of the run (0 to
N_CLUSTERS - 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .kmeans import Clustering

RULE = ("each group becomes one cluster with the group's lowest id; the group's other ids have no members or centre; "
        "every other cluster keeps its id; the merged centre is decoded from the mean code of its members")


def parse_merge(items: Iterable[str] | None) -> list[list[int]]:
    """Groups from ``--merge`` values such as ``["1,3,5", "2,7"]`` (each sorted); ``[]`` for None.

    Raises:
        InputError: a value that is not cluster ids separated by commas, or a group of fewer than two clusters.
    """
    groups = []
    for item in items or ():
        try:
            group = sorted({int(c) for c in str(item).replace(" ", "").split(",") if c})
        except ValueError:
            raise InputError(f"--merge {item!r}: expected cluster ids separated by commas, e.g. --merge 1,3,5") from None
        if len(group) < 2:
            raise InputError(f"--merge {item!r}: a merge needs at least two different clusters, e.g. --merge 1,3")
        groups.append(group)
    return groups


def check_merge(groups: Sequence[Sequence[int]], n_clusters: int) -> None:
    """Refuse ids outside ``0..n_clusters-1`` and groups that share an id (one line each)."""
    seen = {}
    for group in groups:
        outside = [c for c in group if not 0 <= c < n_clusters]
        if outside:
            raise InputError(f"--merge {','.join(map(str, group))}: cluster{'s' if len(outside) > 1 else ''} "
                             f"{', '.join(map(str, outside))} not in this run (clusters 0..{n_clusters - 1})")
        for c in group:
            if c in seen:
                raise InputError(f"--merge: cluster {c} is in two groups ({','.join(map(str, seen[c]))} and "
                                 f"{','.join(map(str, group))}); give each cluster in one --merge only")
            seen[c] = group


def merge_clusters(clustering: Clustering, groups: Sequence[Sequence[int]], codes: ArrayLike) -> Clustering:
    """The clustering with each group merged into its lowest id (see the module's rule).

    Args:
        clustering: the k-means :class:`~autoencoder3d.clustering.kmeans.Clustering`.
        groups: lists of cluster ids (checked with :func:`check_merge`).
        codes: (N, d) codes of the clustered subvolumes, in sample order.

    Returns:
        A new Clustering: ``labels`` with the merged ids replaced by the kept one, ``members`` without
        the merged-away ids, ``centers`` (still indexed by the k-means ids) whose kept and merged-away rows
        hold the mean code of the merged cluster, and ``merged`` {kept id: group}.
    """
    if not groups:
        return clustering
    check_merge(groups, len(clustering.centers))
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.array(clustering.labels, copy=True)
    centers = np.array(clustering.centers, dtype=np.float64, copy=True)
    members = {k: list(v) for k, v in clustering.members.items()}
    merged = {}
    for group in groups:
        group = sorted(int(c) for c in group)
        kept = group[0]
        inside = np.isin(clustering.labels, group)
        labels[inside] = kept
        members[kept] = [u for c in group for u in clustering.members.get(c, [])]
        for c in group[1:]:
            members.pop(c, None)
        if inside.any():
            centers[group] = codes[inside].mean(axis=0)
        merged[kept] = group
    return replace(clustering, labels=labels, centers=centers, members=dict(sorted(members.items())), merged=merged)


def merge_record(clustering: Clustering) -> dict:
    """What run.json records of a merge: the groups, the kept ids and the rule."""
    return {
        "groups": [list(g) for _, g in sorted(clustering.merged.items())],
        "kept": {str(k): list(g) for k, g in sorted(clustering.merged.items())},
        "rule": RULE,
    }
