"""The four proper sign flips that pose normalization leaves open, and choosing one per subvolume.

Pose normalization turns each subvolume onto its principal axes, but an axis
and its opposite are equally principal: the signs come from the third moment
of the mass, which noise decides as often as the structure does. Copies of one
structure therefore arrive in any of four *proper* flips (the identity or a
180-degree turn about x, y or z: two axes negated at once, determinant +1, so
nothing is mirrored). Mirror images stay apart, since a structure and its
mirror image are different structures.

:func:`canonical_flips` removes that freedom without labels: every subvolume
is turned to the flip that best matches the mean of all subvolumes (so
turned), iterated until no subvolume changes its flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from ..volume import Volumes

PROPER_FLIPS = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.int64)
CANONICAL_ROUNDS = 20  # enough to settle: measured runs stop changing after 3 to 8 rounds


def flip_matrix(signs: Sequence[int] | np.ndarray) -> NDArray[np.float64]:
    """The 3x3 rotation ``diag(signs)`` (a proper rotation for every row of :data:`PROPER_FLIPS`)."""
    return np.diag(np.asarray(signs, dtype=np.float64))


def apply_flip(volume: np.ndarray, signs: Sequence[int] | np.ndarray) -> np.ndarray:
    """``volume`` mirrored about its centre along each axis whose sign is -1."""
    axes = tuple(a for a, s in enumerate(signs) if s < 0)
    return np.flip(volume, axis=axes) if axes else volume


def flip_each(volumes: ArrayLike, choice: ArrayLike) -> NDArray[np.float32]:
    """Each of ``(N, n1, n2, n3)`` turned by its own flip, ``PROPER_FLIPS[choice[i]]`` (float32)."""
    volumes = np.asarray(volumes)
    choice = np.asarray(choice, dtype=np.int64)
    out = np.empty(volumes.shape, dtype=np.float32)
    for index, signs in enumerate(PROPER_FLIPS):
        chosen = np.flatnonzero(choice == index)
        out[chosen] = apply_flip(volumes[chosen], (1, *signs))
    return out


def flipped_copies(volumes: ArrayLike) -> NDArray[np.float32]:
    """All four flips of every subvolume: ``(4, N, n1, n2, n3)``, the identity first."""
    volumes = np.asarray(volumes, dtype=np.float32)
    return np.stack([apply_flip(volumes, (1, *signs)) for signs in PROPER_FLIPS])


def _standardized_rows(volumes: np.ndarray) -> NDArray[np.float32]:
    flat = volumes.reshape(len(volumes), -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), np.float32(1e-12))


def canonical_flips(volumes: ArrayLike, rounds: int = CANONICAL_ROUNDS) -> NDArray[np.int64]:
    """For each subvolume, the index in :data:`PROPER_FLIPS` of the flip that best matches the common mean.

    Starts from the identity; each round correlates every subvolume's four
    flips with the mean of all subvolumes in their current flips, and takes the
    best (ties keep the lowest index). Stops when no choice changes. The
    result depends on the data alone (no random draw).
    """
    volumes = np.asarray(volumes, dtype=np.float32)
    copies = np.stack([_standardized_rows(apply_flip(volumes, (1, *signs))) for signs in PROPER_FLIPS])  # (4, N, V)
    choice = np.zeros(len(volumes), dtype=np.int64)
    for _ in range(rounds):
        mean = copies[choice, np.arange(len(volumes))].mean(axis=0)
        best = np.argmax(copies @ mean, axis=0)
        if np.array_equal(best, choice):
            break
        choice = best
    return choice


class FlippedVolumes:
    """``volumes`` (an array, or a store's volumes read by index) seen in one proper flip; read by index like them.

    Nothing is copied up front: each read flips the subvolumes it returns.
    """

    ndim = 4

    def __init__(self, volumes: Volumes, signs: Sequence[int] | np.ndarray) -> None:
        self.volumes = volumes
        self.signs = tuple(int(s) for s in signs)
        self.shape = tuple(volumes.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: object) -> np.ndarray:
        block = np.asarray(self.volumes[index], dtype=np.float32)
        return np.ascontiguousarray(apply_flip(block, (1,) * (block.ndim - 3) + self.signs))

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)


def flipped_views(volumes: Volumes) -> list[FlippedVolumes]:
    """``volumes`` in each of the four proper flips, the identity first (views read on demand)."""
    return [FlippedVolumes(volumes, signs) for signs in PROPER_FLIPS]
