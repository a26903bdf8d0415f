"""Where a pose-normalized subvolume sits in its tomogram.

Pose normalization (:func:`autoencoder3d.prep.pose.normalize_one`) cuts a box of
side ``side`` starting at ``rint(center) - ceil(side / 2)``, rotates it about
the box point ``(side - 1) / 2 + rm^T (mid - c)`` and keeps a central block;
output voxel ``o`` samples the tomogram at ``start + c1 + rm (o + crop - c1 - loc_r)``.
That is a rotation ``rm`` about one tomogram point per particle, which this
module computes exactly. The simple guess, centre + centre of mass - box // 2,
misses it by half a voxel when ``side`` is even and by up to about 1.4 voxels
when it is odd, depending on the rotation.

The reference point of the normalized volume is voxel ``n // 2``: the centre
RELION rotates a reference about (``ParticleSet::getMatrix4x4`` subtracts
``(int) w / 2``), as do WarpTools and M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def rotation_box(shape: Sequence[int] | np.ndarray, c: ArrayLike, rm: np.ndarray) -> tuple[int, np.ndarray]:
    """The rotation box of :func:`autoencoder3d.prep.pose.normalize_one`: (side, loc_r)."""
    shape = np.asarray(shape)
    loc_r = rm.T @ ((shape - 1) / 2.0 - c)
    side = int(math.ceil((shape.max() + 2 * np.abs(loc_r).max()) * np.abs(rm @ np.ones(3)).max()))
    return side, loc_r


def normalized_to_tomogram(center: ArrayLike, c: ArrayLike, rm: ArrayLike, shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """The affine map of the pose-normalized volume into the tomogram: ``p(o) = offset + rm @ o``.

    Args:
        center: the subvolume's centre in the tomogram (voxels, x, y, z).
        c: the centre of mass in subvolume coordinates.
        rm: the pose rotation (3x3).
        shape: the subvolume's shape.

    Returns:
        offset (3,) such that normalized voxel ``o`` was sampled at tomogram point ``offset + rm @ o``.
    """
    rm = np.asarray(rm, dtype=float)
    c = np.asarray(c, dtype=float)
    shape = np.asarray(shape)
    side, loc_r = rotation_box(shape, c, rm)
    start = np.rint(np.asarray(center, dtype=float)) - math.ceil(side / 2)
    c1 = np.full(3, (side - 1) / 2.0)
    crop = np.array([side // 2 - math.ceil(n / 2) for n in shape], dtype=float)
    return start + c1 + rm @ (crop - c1 - loc_r)


def pose_position(center: ArrayLike, c: ArrayLike, rm: ArrayLike, shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """Tomogram position (voxels) of the normalized volume's reference voxel ``shape // 2``.

    With the exported rotation ``rm``, normalized voxel ``o`` lies at
    ``pose_position + rm @ (o - shape // 2)`` in the tomogram.
    """
    offset = normalized_to_tomogram(center, c, rm, shape)
    return offset + np.asarray(rm, dtype=float) @ (np.asarray(shape) // 2).astype(float)


def pose_positions(centers: ArrayLike, cs: ArrayLike, rms: ArrayLike, shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """:func:`pose_position` of many particles at once: (N, 3) centres and centres of mass, (N, 3, 3) rotations."""
    centers, cs, rms = (np.asarray(a, dtype=float) for a in (centers, cs, rms))
    shape = np.asarray(shape)
    loc_r = np.einsum("nji,nj->ni", rms, (shape - 1) / 2.0 - cs)  # rm^T (mid - c)
    side = np.ceil((shape.max() + 2 * np.abs(loc_r).max(axis=1)) * np.abs(rms.sum(axis=2)).max(axis=1))
    start = np.rint(centers) - np.ceil(side / 2)[:, None]
    c1 = (side - 1) / 2.0
    crop = (side // 2)[:, None] - np.array([math.ceil(n / 2) for n in shape], dtype=float)
    offset = start + c1[:, None] + np.einsum("nij,nj->ni", rms, crop - c1[:, None] - loc_r)
    return offset + np.einsum("nij,j->ni", rms, (shape // 2).astype(float))
