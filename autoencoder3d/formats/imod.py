"""IMOD models: binary ``.mod`` files and ``model2point`` lists.

IMOD model coordinates put the corner of the first voxel at (0, 0) in x and y
and the centre of the first section at z = 0 (3dmod draws a point at x = 0.5
in the middle of the first pixel, as the ``imodmodel`` package's note "A note
about 3dmod's coordinate system" shows, and the model header flag
``IMODF_Z_FROM_MINUSPT5`` says for z). The package counts voxel centres from 0 on every axis,
so a model point (x, y, z) is the voxel position (x - 0.5, y - 0.5, z).
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError

MODEL_ORIGIN = np.array([0.5, 0.5, 0.0])  # model coordinates of the centre of voxel (0, 0, 0)
MAGIC = b"IMOD"


def is_binary_model(path: str | os.PathLike[str]) -> bool:
    """True when the file starts like a binary IMOD model (``IMODV1.2``)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def model_to_voxels(points: ArrayLike) -> np.ndarray:
    """IMOD model coordinates (N, 3) -> 0-based voxel positions."""
    return np.asarray(points, dtype=float).reshape(-1, 3) - MODEL_ORIGIN


def voxels_to_model(xyz: ArrayLike) -> np.ndarray:
    """0-based voxel positions (N, 3) -> IMOD model coordinates."""
    return np.asarray(xyz, dtype=float).reshape(-1, 3) + MODEL_ORIGIN


def read_model(path: str | os.PathLike[str]) -> np.ndarray:
    """Every point of a binary IMOD model (all objects and contours) as 0-based voxel positions.

    Raises:
        InputError: unreadable model, or one without points.
    """
    import imodmodel

    path = os.fspath(path)
    try:
        table = imodmodel.read(path)
    except Exception as err:  # the parser raises several kinds on damaged files
        raise InputError(f"{path}: not a readable IMOD model ({type(err).__name__}: {err})") from None
    if len(table) == 0:
        raise InputError(f"{path}: the IMOD model holds no points")
    points = table[["x", "y", "z"]].to_numpy(dtype=float)
    if not np.all(np.isfinite(points)):
        raise InputError(f"{path}: the IMOD model holds non-finite points")
    return model_to_voxels(points)
