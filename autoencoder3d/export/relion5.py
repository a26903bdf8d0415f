"""RELION 5 particle list: ``rlnTomoName`` and ``rlnCenteredCoordinateX/Y/ZAngst``.

Angstrom from the tomogram centre, which RELION 5 takes as size / 2 pixels of
the unbinned tomogram (``ParticleSet::getParticleCoordDecenteredPixel``,
``particle_set.cpp``); the name must be the ``rlnTomoName`` of tomograms.star.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..formats.star import RELION5_COLUMNS

if TYPE_CHECKING:
    from .place import Placement


def relion5_table(xyz: np.ndarray, place: Placement, extra: Mapping[str, np.ndarray]) -> pd.DataFrame | None:
    """The RELION 5 table, or None when the voxel size or the centre is unknown."""
    if place.voxel_size is None or place.centre_angst is None:
        return None
    angst = xyz * place.voxel_size - place.centre_angst
    table = pd.DataFrame({"rlnTomoName": [place.tomo_name] * len(xyz)})
    for column, values in zip(RELION5_COLUMNS, angst.T):
        table[column] = values
    for key, values in extra.items():
        table[key] = values
    return table
