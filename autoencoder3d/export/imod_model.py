"""IMOD models of the particles (one object per cluster), to overlay in 3dmod.

Model coordinates put the first voxel centre at (0.5, 0.5, 0)
(:mod:`autoencoder3d.formats.imod`), so a particle at voxel (x, y, z) is the model
point (x + 0.5, y + 0.5, z). Written with the ``imodmodel`` package.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..formats.imod import voxels_to_model
from ..util.atomic import atomic_path


def write_model(path: str | os.PathLike, xyz: ArrayLike, clusters: Sequence[int] | np.ndarray,
                objects: Sequence[int] | None = None) -> None:
    """Write the points as a binary IMOD model, one object per cluster, atomically.

    Args:
        objects: the clusters the model's objects stand for, in order (object
            ``i + 1`` is ``objects[i]``, empty when no point is of it, named
            ``cluster NNN``), so that models of several tomograms number their
            objects alike; None: the clusters present, in order, unnamed.
    """
    import imodmodel

    points = voxels_to_model(xyz)
    order = {c: i for i, c in enumerate(sorted(set(int(c) for c in clusters)) if objects is None else objects)}
    object_id = np.array([order[int(c)] for c in clusters], dtype=int)
    with atomic_path(path, suffix=".mod") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imodmodel 0.1 calls a pydantic-1 method
        if objects is None:
            table = pd.DataFrame({"object_id": object_id, "contour_id": np.zeros(len(points), dtype=int),
                                  "x": points[:, 0], "y": points[:, 1], "z": points[:, 2]})
            imodmodel.write(table, tmp)
        else:
            _model_with_objects(points, object_id, objects).to_file(tmp)


def _model_with_objects(points, object_id, objects):
    """A model of scattered points: object ``i`` holds one contour of the points with ``object_id == i`` (maybe none)."""
    from imodmodel.models import Contour, ImodModel, Object

    model = ImodModel()
    by_object = np.argsort(object_id, kind="stable")
    bounds = np.searchsorted(object_id[by_object], np.arange(len(objects) + 1))
    for i, cluster in enumerate(objects):
        obj = Object()
        rows = by_object[bounds[i]:bounds[i + 1]]
        if len(rows):
            obj.contours.append(Contour(points=points[rows]))
        obj.header.flags.scattered = True
        obj.header.flags.open = False
        obj.header.name = f"cluster {int(cluster):03d}"
        obj.update_sizes()
        model.objects.append(obj)
    model.update_sizes()
    return model
