"""RELION 5 particle list: ``rlnTomoName`` and ``rlnCenteredCoordinateX/Y/ZAngst``.

Angstrom from the tomogram centre, which RELION 5 takes as size / 2 pixels of
the unbinned tomogram (``ParticleSet::getParticleCoordDecenteredPixel``,
``particle_set.cpp``); the name must be the ``rlnTomoName`` of tomograms.star.
"""

import pandas as pd

from ..formats.star import RELION5_COLUMNS


def relion5_table(xyz, place, extra):
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
