"""Pixel-coordinate particle list for RELION 4, RELION 5's import, WarpTools and M.

``rlnCoordinateX/Y/Z`` are pixels counted from 0 of the tilt series (unbinned):
what RELION 4 and RELION 5's particle import expect, and what WarpTools'
``ts_export_particles --coords_angpix`` and M's ``--angpix_coords`` are told.
The pixel size goes in each row's ``rlnPixelSize`` (WarpTools reads it for
shifts) and, as ``rlnDetectorPixelSize`` with ``rlnMagnification`` 10000, in
the form M's ``create_species`` derives its coordinate pixel size from
(``MTools/Commands/CreateSpecies.cs``; WarpTools' own 3D export writes the same
three columns). ``rlnTomoName`` is RELION's name, ``rlnMicrographName`` the
series name WarpTools and M match particles by (``TS_01.tomostar``). Without a
tilt-series pixel size the coordinates stay in pixels of this tomogram.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..formats.star import RELION4_COLUMNS

if TYPE_CHECKING:
    from .place import Placement


def pixel_units(place: Placement) -> tuple[float | None, bool]:
    """(Angstrom per written pixel, or None; True when they are tilt-series pixels)."""
    if place.ts_pixel and place.voxel_size is not None:
        return place.ts_pixel, True
    if place.voxel_size is not None:
        return float(place.voxel_size[0]), False
    return None, False


def pixel_table(xyz: np.ndarray, place: Placement, extra: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The table, in tilt-series pixels when their size is known."""
    pixel, _ = pixel_units(place)
    coords = xyz * place.voxel_size / pixel if pixel and place.ts_pixel else xyz
    table = pd.DataFrame({"rlnTomoName": [place.tomo_name] * len(xyz), "rlnMicrographName": [place.series_name] * len(xyz)})
    for column, values in zip(RELION4_COLUMNS, coords.T):
        table[column] = values
    if pixel:
        table["rlnPixelSize"] = pixel
        table["rlnDetectorPixelSize"] = pixel  # micrometres / magnification = Angstrom, as M computes it
        table["rlnMagnification"] = 10000.0
    for key, values in extra.items():
        table[key] = values
    return table
