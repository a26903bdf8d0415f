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


def write_model(path, xyz, clusters, objects=None):
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
    table = pd.DataFrame({
        "object_id": np.array([order[int(c)] for c in clusters], dtype=int),
        "contour_id": np.zeros(len(points), dtype=int),
        "x": points[:, 0], "y": points[:, 1], "z": points[:, 2],
    })
    with atomic_path(path, suffix=".mod") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imodmodel 0.1 calls a pydantic-1 method
        if objects is None:
            imodmodel.write(table, tmp)
        else:
            _model_with_objects(table, objects).to_file(tmp)


def _model_with_objects(table, objects):
    """The scattered-point model of ``table`` with one (possibly empty) object per entry of ``objects``."""
    from imodmodel.models import ImodModel, Object

    present = ImodModel.from_dataframe(table)
    filled = iter(present.objects)
    used = set(int(i) for i in table["object_id"])
    model_objects = []
    for i, cluster in enumerate(objects):
        obj = next(filled) if i in used else _empty_object(Object)
        obj.header.name = f"cluster {int(cluster):03d}"
        model_objects.append(obj)
    present.objects = model_objects
    present.update_sizes()
    return present


def _empty_object(object_type):
    obj = object_type()
    obj.header.flags.scattered = True
    obj.header.flags.open = False
    obj.update_sizes()
    return obj
