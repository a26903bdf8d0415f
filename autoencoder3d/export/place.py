"""The tomogram the particles are exported for: its names, size and pixel sizes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..formats.star import read_tomograms_star, tomo_key


@dataclass
class Placement:
    """What each format needs to place a particle.

    Attributes:
        tomo_name: RELION's ``rlnTomoName`` (the tomograms.star name, e.g. ``TS_01``).
        series_name: WarpTools' and M's ``rlnMicrographName`` (e.g. ``TS_01.tomostar``).
        shape: the tomogram's size in voxels (x, y, z), or None when it cannot be read.
        voxel_size: (3,) Angstrom per voxel of the tomogram, or None when unknown.
        ts_pixel: Angstrom per tilt-series (unbinned) pixel, or None when unknown.
        centre_angst: (3,) the tomogram centre RELION 5 measures from, in Angstrom
            from the centre of voxel 0: unbinned size / 2 pixels (tomograms.star) or
            size / 2 voxels; None when unknown.
    """

    tomo_name: str
    series_name: str
    shape: tuple = None
    voxel_size: np.ndarray = None
    ts_pixel: float = None
    centre_angst: np.ndarray = None


def make_placement(tomogram: str | None, shape: Sequence[int] | None, voxel_size: float | Sequence[float] | np.ndarray | None, *,
                   tomo_name: str | None = None, series_name: str | None = None, ts_angpix: float | None = None,
                   tomograms_star: str | os.PathLike | None = None) -> Placement:
    """Names and units for the export, from the user's options, tomograms.star and the tomogram.

    Names: ``--tomo-name``, else tomograms.star's ``rlnTomoName``, else the tomogram's
    file name without ``rec_``, ``_N.NNApx`` and extensions (:func:`tomo_key`); the
    series name is ``--series-name`` or the tomogram name plus ``.tomostar``.
    """
    vs = None if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,)).copy()
    if vs is not None and not np.all(vs > 0):
        vs = None
    entry = read_tomograms_star(tomograms_star, tomogram, tomo_name) if tomograms_star else None
    name = tomo_name or (entry["name"] if entry else None) or (tomo_key(tomogram) if tomogram else "tomogram")
    ts = float(ts_angpix) if ts_angpix else (entry["pixel_size"] if entry else None)
    if vs is None and entry and entry.get("binning"):
        vs = np.full(3, entry["pixel_size"] * entry["binning"])
    centre = None
    if entry is not None:
        centre = entry["size"] * entry["pixel_size"] / 2.0
    elif shape is not None and vs is not None:
        centre = np.asarray(shape, dtype=float) * vs / 2.0
    series = series_name or os.path.basename(name) + ".tomostar"
    return Placement(name, series, None if shape is None else tuple(shape), vs, ts, centre)
