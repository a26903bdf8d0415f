"""Duplicate clusters: two decoded centres that show one structure, possibly turned.

Pose normalization fixes each subvolume's principal axes but not their signs:
the same structure can come out in any of four proper flips (the identity and
the 180-degree rotations about x, y and z), and k-means then splits one
structure into several clusters by orientation. :func:`find_duplicates`
compares every pair of decoded centres under the best of the 24 proper
90-degree rotations of the cube (which include the four flips): the
normalized cross-correlation of the standardized centres (zero mean, unit
standard deviation), maximised over the rotations of the second. Pairs above
``THRESHOLD`` are reported with the rotation that maps the second centre onto
the first.

Volumes are indexed ``[x, y, z]``; a rotation is named by its angle and axis
in that frame, e.g. ``180 deg about z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

THRESHOLD = 0.9
"""Centres correlating at least this much (under their best rotation) are flagged. docs/report.md gives the
measured correlations of centres of the same simulated class and of different classes this was chosen from."""

_GENERATORS = ((0, 1), (1, 2))  # np.rot90 about z (turns x into y) and about x (turns y into z)


@lru_cache(maxsize=1)
def rotations() -> tuple[tuple[tuple[tuple[int, int], ...], NDArray[np.int64]], ...]:
    """The 24 proper rotations of the cube: (np.rot90 steps as axes pairs, 3x3 integer matrix), identity first.

    Applying the steps to a volume ``v`` (``v = np.rot90(v, 1, axes)`` for each) gives the rotated volume
    ``w`` with ``w[R p] = v[p]`` (coordinates from the box centre), R the matrix.
    """
    found, frontier = {}, [()]
    probe = np.arange(27).reshape(3, 3, 3)
    while frontier:
        following = []
        for steps in frontier:
            key = _apply(probe, steps).tobytes()
            if key in found:
                continue
            found[key] = steps
            following += [steps + (axes,) for axes in _GENERATORS]
        frontier = following
    return tuple((steps, _matrix(steps)) for steps in sorted(found.values(), key=len))


def _apply(volume, steps, first_axis=0):
    for a, b in steps:
        volume = np.rot90(volume, 1, (a + first_axis, b + first_axis))
    return volume


def _matrix(steps):
    """R with w[R p] = v[p]: the new volume at R p holds the old coordinate p, so coordinate_i(w)[q] = (R^-1 q)_i."""
    grid = np.mgrid[-1:2, -1:2, -1:2]
    inverse = np.zeros((3, 3), dtype=np.int64)
    for i in range(3):
        moved = _apply(grid[i], steps)
        for j in range(3):
            q = [1, 1, 1]
            q[j] += 1
            inverse[i, j] = moved[tuple(q)]
    return inverse.T


def rotation_name(matrix: np.ndarray) -> str:
    """``identity``, ``180 deg about z``, ``90 deg about x``, ``120 deg about (1,1,-1)``, ...: angle and axis of a rotation."""
    matrix = np.asarray(matrix, dtype=np.float64)
    angle = int(round(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1)))))
    if angle == 0:
        return "identity"
    if angle == 180:
        sym = matrix + np.eye(3)
        axis = sym[:, int(np.argmax(np.abs(sym).sum(axis=0)))]
    else:
        axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    axis = np.round(axis / np.abs(axis[np.abs(axis) > 1e-9]).min()).astype(int)
    if angle == 180 and axis[np.nonzero(axis)[0][0]] < 0:
        axis = -axis  # a half turn about -a is the one about a
    names = {(1, 0, 0): "x", (0, 1, 0): "y", (0, 0, 1): "z", (-1, 0, 0): "-x", (0, -1, 0): "-y", (0, 0, -1): "-z"}
    where = names.get(tuple(int(a) for a in axis), "(" + ",".join(str(int(a)) for a in axis) + ")")
    return f"{angle} deg about {where}"


def rotate(volume: np.ndarray, index: int) -> np.ndarray:
    """``volume`` (n1, n2, n3) turned by rotation ``index`` of :func:`rotations`."""
    return _apply(np.asarray(volume), rotations()[index][0])


def _standardized(volume):
    v = np.asarray(volume, dtype=np.float64)
    std = v.std()
    return None if not np.isfinite(std) or std <= 0 else ((v - v.mean()) / std).astype(np.float32)


def correlations(centers: Mapping[int, np.ndarray]) -> tuple[list[int], NDArray[np.float32], NDArray[np.int64]]:
    """Best correlation of every pair of centres over the 24 rotations.

    Returns:
        (ids, best, which): ``best[i, j]`` is the largest normalized cross-correlation of centre ``ids[i]``
        with centre ``ids[j]`` turned by rotation ``which[i, j]`` of :func:`rotations` (rotations that
        would change a box that is not a cube are left out). Constant centres are left out of ``ids``.
    """
    ids, stack = [], []
    for k, volume in sorted(centers.items()):
        standardized = _standardized(volume)
        if standardized is not None:
            ids.append(int(k))
            stack.append(standardized)
    if not ids:
        return [], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    stack = np.stack(stack)
    flat = stack.reshape(len(ids), -1)
    best = np.full((len(ids), len(ids)), -np.inf, dtype=np.float32)
    which = np.zeros((len(ids), len(ids)), dtype=np.int64)
    for index, (steps, _) in enumerate(rotations()):
        turned = _apply(stack, steps, first_axis=1)
        if turned.shape != stack.shape:
            continue
        corr = flat @ np.ascontiguousarray(turned).reshape(len(ids), -1).T / flat.shape[1]
        better = corr > best
        best[better] = corr[better]
        which[better] = index
    return ids, best, which


def find_duplicates(centers: Mapping[int, np.ndarray], sizes: Mapping[int, int] | None = None,
                    threshold: float = THRESHOLD) -> list[dict[str, Any]]:
    """Pairs of non-empty clusters whose decoded centres correlate at least ``threshold`` under some rotation.

    Args:
        centers: cluster id -> decoded centre (n1, n2, n3).
        sizes: cluster id -> members; clusters without members are left out (all kept when None).
        threshold: the least correlation flagged.

    Returns:
        ``[{"clusters": [a, b], "correlation": r, "rotation": name, "matrix": 3x3}, ...]``, the highest
        correlation first: centre b turned by the rotation matches centre a with correlation r.
    """
    chosen = {k: v for k, v in centers.items() if sizes is None or sizes.get(k, 0) > 0}
    ids, best, which = correlations(chosen)
    pairs = []
    table = rotations()
    for i, j in zip(*np.triu_indices(len(ids), 1)):
        if best[i, j] >= threshold:
            matrix = table[which[i, j]][1]
            pairs.append({
                "clusters": [ids[i], ids[j]],
                "correlation": round(float(best[i, j]), 4),
                "rotation": rotation_name(matrix),
                "matrix": matrix.tolist(),
            })
    return sorted(pairs, key=lambda p: (-p["correlation"], p["clusters"]))


def duplicates_record(centers: Mapping[int, np.ndarray], sizes: Mapping[int, int], threshold: float = THRESHOLD) -> dict[str, Any]:
    """What run.json records: the threshold, how the centres were compared, and the flagged pairs."""
    return {
        "threshold": threshold,
        "method": "normalized cross-correlation of the standardized decoded centres, best of the 24 proper "
                  "90-degree rotations of the cube (the second centre turned onto the first)",
        "pairs": find_duplicates(centers, sizes, threshold),
    }
