"""IMOD models of the particles (one object per cluster), to overlay in 3dmod.

Model coordinates put the first voxel centre at (0.5, 0.5, 0)
(:mod:`autoencoder3d.imod`), so a particle at voxel (x, y, z) is the model
point (x + 0.5, y + 0.5, z). Written with the ``imodmodel`` package.
"""

import warnings

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..imod import voxels_to_model


def write_model(path, xyz, clusters):
    """Write the points as a binary IMOD model, one object per cluster (in cluster order), atomically."""
    import imodmodel

    points = voxels_to_model(xyz)
    order = {c: i for i, c in enumerate(sorted(set(int(c) for c in clusters)))}
    table = pd.DataFrame({
        "object_id": np.array([order[int(c)] for c in clusters], dtype=int),
        "contour_id": np.zeros(len(points), dtype=int),
        "x": points[:, 0], "y": points[:, 1], "z": points[:, 2],
    })
    with atomic_path(path, suffix=".mod") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imodmodel 0.1 calls a pydantic-1 method
        imodmodel.write(table, tmp)
