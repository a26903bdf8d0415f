"""Augmented views of pose-normalized subvolumes: sign flips of the pose axes, shifts, noise.

Pose normalization fixes each subvolume's principal axes only up to their
signs, which it chooses from the third moment of the mass; in noisy data that
choice is unreliable, so copies of one structure arrive in several flipped
orientations. A view flips the box by one of the four *proper* sign changes
(identity or a 180-degree turn about x, y or z: two axes at once, determinant
+1, so nothing is mirrored), rolls it by a few voxels and adds Gaussian noise.
A circular roll changes only the phases of the Fourier transform, so the
missing-wedge mask of a view is that of its flip alone.

Every draw comes from ``(seed, epoch, batch)``, so a resumed run sees the same
views as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..prep.flips import PROPER_FLIPS, apply_flip

MAX_SHIFT_FRACTION = 1 / 16  # largest roll, as a fraction of the box edge (1 voxel at 16^3, 2 at 32^3)
NOISE_STD = 0.3  # added noise, in standardized units (the data's own standard deviation is 1)


def draw_views(rng: np.random.Generator, n: int, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Random flips ``(n, 3)`` and integer shifts ``(n, 3)`` for ``n`` subvolumes."""
    flips = PROPER_FLIPS[rng.integers(0, len(PROPER_FLIPS), size=n)]
    reach = max(1, int(round(min(shape) * MAX_SHIFT_FRACTION)))
    shifts = rng.integers(-reach, reach + 1, size=(n, 3))
    return flips, shifts


def geometric_view(volumes: np.ndarray, flips: np.ndarray, shifts: np.ndarray) -> NDArray[np.float32]:
    """Each volume of ``(B, n1, n2, n3)`` flipped, then rolled (float32, same shape)."""
    out = np.empty(volumes.shape, dtype=np.float32)
    for i, volume in enumerate(volumes):
        out[i] = np.roll(apply_flip(volume, flips[i]), tuple(int(s) for s in shifts[i]), axis=(0, 1, 2))
    return out


def noisy(rng: np.random.Generator, volumes: np.ndarray, std: float = NOISE_STD) -> NDArray[np.float32]:
    """``volumes`` plus Gaussian noise of ``std`` (float32)."""
    return (volumes + rng.standard_normal(volumes.shape) * std).astype(np.float32)


def batch_rng(seed: int, epoch: int, batch: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one batch of one epoch (independent of the process and of resuming)."""
    return np.random.default_rng([int(seed), int(epoch), int(batch), int(stream), 18])
