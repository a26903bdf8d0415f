"""RELION's Euler angles (ZYZ, reference-to-particle), as WarpTools and M read them too."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..formats.star import euler_matrices


def relion_matrix(rot: ArrayLike, tilt: ArrayLike, psi: ArrayLike) -> np.ndarray:
    """RELION's rotation matrix for Euler angles in degrees (ZYZ: rot about Z, tilt about Y, psi about Z).

    ``A = Rz(psi) Ry(tilt) Rz(rot)`` written with coordinate-frame rotations,
    as in RELION's ``Euler_angles2matrix``; it rotates the reference into the particle.
    """
    return euler_matrices(rot, tilt, psi)


def relion_angles(matrix: ArrayLike) -> tuple[float, float, float]:
    """Inverse of :func:`relion_matrix`: (rot, tilt, psi) in degrees, tilt in [0, 180].

    Raises:
        ValueError: if ``matrix`` is not a proper rotation (orthonormal, determinant +1).
    """
    a = np.asarray(matrix, dtype=float)
    if a.shape != (3, 3) or not np.allclose(a @ a.T, np.eye(3), atol=1e-4) or np.linalg.det(a) < 0:
        raise ValueError(f"not a proper rotation matrix: {a.tolist()}")
    tilt = np.arccos(np.clip(a[2, 2], -1.0, 1.0))
    if np.sin(tilt) > 1e-6:
        rot = np.arctan2(a[2, 1], a[2, 0])
        psi = np.arctan2(a[1, 2], -a[0, 2])
    elif a[2, 2] > 0:  # tilt 0: only rot + psi is defined
        rot, psi = 0.0, np.arctan2(a[0, 1], a[0, 0])
    else:  # tilt 180: only psi - rot is defined
        rot, psi = 0.0, np.arctan2(a[0, 1], a[1, 1])
    return tuple(float(v) for v in np.rad2deg([rot, tilt, psi]))


def relion_angles_many(matrices: ArrayLike) -> np.ndarray:
    """:func:`relion_angles` of (N, 3, 3) rotations at once: (N, 3) degrees (rot, tilt, psi).

    Raises:
        ValueError: if a matrix is not a proper rotation.
    """
    a = np.asarray(matrices, dtype=float).reshape(-1, 3, 3)
    if len(a) and (not np.allclose(a @ a.transpose(0, 2, 1), np.eye(3), atol=1e-4) or np.any(np.linalg.det(a) < 0)):
        raise ValueError("not proper rotation matrices")
    tilt = np.arccos(np.clip(a[:, 2, 2], -1.0, 1.0))
    general = np.sin(tilt) > 1e-6
    rot = np.where(general, np.arctan2(a[:, 2, 1], a[:, 2, 0]), 0.0)
    psi = np.where(general, np.arctan2(a[:, 1, 2], -a[:, 0, 2]),
                   np.where(a[:, 2, 2] > 0, np.arctan2(a[:, 0, 1], a[:, 0, 0]), np.arctan2(a[:, 0, 1], a[:, 1, 1])))
    return np.rad2deg(np.stack([rot, tilt, psi], axis=1))
