"""Particle positions from STAR files as RELION 3/4/5, WarpTools and M write them.

Positions come back as 0-based voxel indices (x, y, z) of the tomogram at hand
(the centre of voxel 0 is at 0). What each program means by its columns, and
the source that says so:

- ``rlnCenteredCoordinateX/Y/ZAngst`` (RELION 5): Angstrom from the tomogram
  centre, which is ``size / 2`` pixels of the unbinned tomogram
  (``ParticleSet::getParticleCoordDecenteredPixel`` in
  ``src/jaz/tomography/particle_set.cpp``).
- ``rlnCoordinateX/Y/Z`` (RELION 3/4, WarpTools, M): pixels counted from 0, of
  a pixel size the file may state (RELION 4: the optics table's
  ``rlnTomoTiltSeriesPixelSize``; WarpTools' 3D export: each row's
  ``rlnPixelSize``; WarpTools' optics table: ``rlnImagePixelSize``).
- ``rlnOriginX/Y/ZAngst`` (Angstrom) and ``rlnOriginX/Y/Z`` (RELION 3, pixels):
  refinement shifts. The particle sits at coordinate minus origin, the origin
  first rotated by the ``rlnTomoSubtomogramRot/Tilt/Psi`` matrix when the file
  has one (``ParticleSet::getPosition``; WarpTools
  ``ExportParticlesTiltseries.GetInputCoordinates`` subtracts the same shift
  divided by ``rlnPixelSize``).
- ``rlnTomoName`` / ``rlnMicrographName`` name the tomogram; see :func:`tomo_key`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError

if TYPE_CHECKING:
    import pandas as pd

RELION4_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
RELION5_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
ORIGIN_ANGST = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
ORIGIN_PIXELS = ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
SUBTOMO_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
NAME_COLUMNS = ("rlnTomoName", "rlnMicrographName")
EXTENSIONS = (".gz", ".bz2", ".mrc", ".rec", ".st", ".ali", ".map", ".mrcs", ".tomostar", ".star", ".xml")
_PIXEL_SUFFIX = re.compile(r"_\d+(\.\d+)?Apx$")
_HALF_SUFFIX = re.compile(r"_half[12]$")


def tomo_key(name: str | os.PathLike[str]) -> str:
    """The tomogram name that RELION, WarpTools and M files share, from any of their spellings.

    RELION 5 reconstructs ``TS_01`` as ``rec_TS_01.mrc``
    (``reconstruct_tomogram.cpp``; ``rec_TS_01_half1.mrc`` for denoising halves);
    WarpTools names the series ``TS_01.tomostar``
    and its reconstruction ``TS_01_10.00Apx.mrc``; RELION 4 writes
    ``TS_01.st:mrc``. All of them give ``TS_01``: the file name without folder,
    ``:mrc`` tag, extensions, ``rec_`` prefix and ``_N.NNApx`` / ``_half1|2`` suffixes.
    """
    base = os.path.basename(os.fspath(name).strip())
    base = base.split(":")[0]
    changed = True
    while changed:
        changed = False
        for ext in EXTENSIONS:
            if base.lower().endswith(ext) and len(base) > len(ext):
                base, changed = base[: -len(ext)], True
    base = _HALF_SUFFIX.sub("", _PIXEL_SUFFIX.sub("", base))
    if base.startswith("rec_") and len(base) > 4:
        base = base[4:]
    return base


def read_star_tables(path: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """All tables of a STAR file (name -> DataFrame), through starfile."""
    import starfile

    try:
        data = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises many kinds on malformed files
        raise InputError(f"{path}: not a readable STAR file ({type(err).__name__}: {err})") from None
    return {name: t for name, t in data.items() if hasattr(t, "columns")}


def _coordinate_table(tables, path):
    for table in tables.values():
        if set(RELION4_COLUMNS) <= set(table.columns) or set(RELION5_COLUMNS) <= set(table.columns):
            return table
    found = sorted({c for t in tables.values() for c in t.columns})
    raise InputError(
        f"{path}: STAR file has no coordinate columns: expected rlnCoordinateX/Y/Z (pixels) or "
        f"rlnCenteredCoordinateX/Y/ZAngst (RELION 5); found {', '.join(found) or 'no table'}"
    )


def rows_for_tomogram(
    table: pd.DataFrame, path: str | os.PathLike[str], tomogram: str | os.PathLike[str] | None, tomo_name: str | None = None,
) -> pd.DataFrame:
    """The rows of ``table`` that belong to the tomogram.

    Args:
        table: particle table.
        path: the STAR file, for messages.
        tomogram: the tomogram's file name (matched through :func:`tomo_key`).
        tomo_name: a name given by the user, which wins over the file name.

    Raises:
        InputError: no row matches; the message lists the names in the file.
    """
    columns = [c for c in NAME_COLUMNS if c in table.columns]
    if not columns:
        return table
    wanted = tomo_key(tomo_name) if tomo_name else (tomo_key(tomogram) if tomogram else None)
    names = {c: table[c].astype(str).map(tomo_key) for c in columns}
    if wanted is None:
        if any(n.nunique() > 1 for n in names.values()):
            raise InputError(f"{path}: lists particles of several tomograms; name the one to use (--tomo-name)")
        return table
    for column in columns:
        keep = (names[column] == wanted).to_numpy()
        if keep.any():
            return table[keep]
    listed = sorted(table[columns[0]].astype(str).unique())
    if not listed:
        raise InputError(f"{path}: lists no particles (its table has a header and no rows)")
    more = f" and {len(listed) - 8} more" if len(listed) > 8 else ""
    raise InputError(
        f"{path}: no rows for tomogram '{wanted}' in {' or '.join(columns)} (the file names: "
        f"{', '.join(listed[:8])}{more}); give the name with --tomo-name"
    )


def numeric_array(values: ArrayLike, path: str | os.PathLike[str], what: str) -> np.ndarray:
    """``values`` as a finite float array, or InputError naming the file and ``what``."""
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} are not all numbers") from None
    if not np.all(np.isfinite(out)):
        raise InputError(f"{path}: {what} contain missing or non-finite values")
    return out


def _columns(table, names, path):
    if set(names) <= set(table.columns):
        return numeric_array(table[list(names)].to_numpy(), path, "/".join(names))
    return None


def optics_value(tables: Mapping[str, pd.DataFrame], table: pd.DataFrame, column: str, path: str | os.PathLike[str]) -> np.ndarray | None:
    """Per-row values of an optics-table column (joined on ``rlnOpticsGroup``), or None."""
    optics = next((t for name, t in tables.items() if name == "optics" and column in t.columns), None)
    if optics is None:
        return None
    values = numeric_array(optics[column].to_numpy(), path, column)
    if len(optics) == 1 or "rlnOpticsGroup" not in table.columns or "rlnOpticsGroup" not in optics.columns:
        return np.full(len(table), values[0])
    lookup = dict(zip(optics["rlnOpticsGroup"].astype(int), values))
    groups = table["rlnOpticsGroup"].astype(int)
    missing = sorted(set(groups) - set(lookup))
    if missing:
        raise InputError(f"{path}: optics groups {missing} of the particles are not in the optics table")
    return groups.map(lookup).to_numpy(dtype=float)


def euler_matrices(rot: ArrayLike, tilt: ArrayLike, psi: ArrayLike) -> np.ndarray:
    """RELION's ``Euler_angles2matrix`` for arrays of angles in degrees: (N, 3, 3)."""
    a, b, g = (np.deg2rad(np.asarray(v, dtype=float)) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
    return np.moveaxis(np.array(rows, dtype=float), (0, 1), (-2, -1))


def origin_shift_angst(table: pd.DataFrame, path: str | os.PathLike[str]) -> np.ndarray | None:
    """``A_subtomogram @ rlnOriginX/Y/ZAngst`` per row (Angstrom, (N, 3)), or None without shifts."""
    origin = _columns(table, ORIGIN_ANGST, path)
    if origin is None:
        return None
    angles = _columns(table, SUBTOMO_ANGLES, path)
    if angles is None:
        return origin
    return np.einsum("nij,nj->ni", euler_matrices(*angles.T), origin)


def coordinate_pixel_size(
    tables: Mapping[str, pd.DataFrame], table: pd.DataFrame, path: str | os.PathLike[str], coords_angpix: float | None = None,
    tomograms_entry: Mapping[str, Any] | None = None,
) -> np.ndarray | None:
    """Pixel size (Angstrom, per row) of ``rlnCoordinateX/Y/Z``, or None when nothing states it.

    Order: the user's ``coords_angpix``; the optics table's ``rlnTomoTiltSeriesPixelSize``
    (RELION 4); each row's ``rlnPixelSize`` (WarpTools' 3D export); the optics
    table's ``rlnImagePixelSize`` (WarpTools' 2D export); ``tomograms.star``.
    """
    if coords_angpix is not None:
        return np.full(len(table), float(coords_angpix))
    found = optics_value(tables, table, "rlnTomoTiltSeriesPixelSize", path)
    if found is None and "rlnPixelSize" in table.columns:
        found = numeric_array(table["rlnPixelSize"].to_numpy(), path, "rlnPixelSize")
    if found is None:
        found = optics_value(tables, table, "rlnImagePixelSize", path)
    if found is None and tomograms_entry is not None:
        found = np.full(len(table), tomograms_entry["pixel_size"])
    if found is not None and not np.all(found > 0):
        raise InputError(f"{path}: the pixel size the file states for its coordinates is not positive")
    return found


def read_tomograms_star(
    path: str | os.PathLike[str], tomogram: str | os.PathLike[str] | None = None, tomo_name: str | None = None,
) -> dict[str, Any]:
    """This tomogram's row of RELION 5's ``tomograms.star``.

    Returns:
        dict with ``name`` (rlnTomoName), ``pixel_size`` (rlnTomoTiltSeriesPixelSize),
        ``binning`` (rlnTomoTomogramBinning, or None) and ``size`` (rlnTomoSizeX/Y/Z:
        the unbinned tomogram, in tilt-series pixels).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: tomograms.star not found")
    tables = read_star_tables(path)
    need = ("rlnTomoName", "rlnTomoTiltSeriesPixelSize", "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ")
    table = next((t for t in tables.values() if set(need) <= set(t.columns)), None)
    if table is None:
        raise InputError(f"{path}: not a RELION 5 tomograms.star (needs the columns {', '.join(need)})")
    rows = rows_for_tomogram(table[list(need) + [c for c in table.columns if c not in need]], path, tomogram, tomo_name)
    if len(rows) != 1:
        raise InputError(f"{path}: {len(rows)} rows for one tomogram; name it with --tomo-name")
    return tomograms_star_entry(rows.iloc[0], path)


def tomograms_star_entry(row: pd.Series, path: str | os.PathLike[str]) -> dict[str, Any]:
    """One row of ``tomograms.star`` checked: name, pixel_size, binning (None without the column) and size."""
    name = str(row["rlnTomoName"])
    size = numeric_array([row["rlnTomoSizeX"], row["rlnTomoSizeY"], row["rlnTomoSizeZ"]], path, f"tomogram {name}: rlnTomoSizeX/Y/Z")
    pixel = float(numeric_array([row["rlnTomoTiltSeriesPixelSize"]], path, f"tomogram {name}: rlnTomoTiltSeriesPixelSize")[0])
    binning = None
    if "rlnTomoTomogramBinning" in row.index:
        binning = float(numeric_array([row["rlnTomoTomogramBinning"]], path, f"tomogram {name}: rlnTomoTomogramBinning")[0])
    if pixel <= 0 or np.any(size <= 0) or (binning is not None and binning <= 0):
        raise InputError(f"{path}: tomogram {name}: pixel size, binning and size must be positive")
    return {"name": name, "pixel_size": pixel, "binning": binning, "size": size}


def _voxel_size(voxel_size, tomograms_entry):
    vs = None if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if (vs is None or np.any(vs <= 0)) and tomograms_entry and tomograms_entry.get("binning"):
        vs = np.full(3, tomograms_entry["pixel_size"] * tomograms_entry["binning"])
    return vs if vs is not None and np.all(vs > 0) else None


def _refuse_normalized(xyz, shape, path):
    if len(xyz) > 1 and shape is not None and max(shape) > 4 and xyz.min() >= 0 and xyz.max() <= 1:
        raise InputError(
            f"{path}: every coordinate lies between 0 and 1: normalized coordinates (as WarpTools' template "
            "matching writes them), not pixels; read them with --normalized-coords and --coords-angpix "
            "(the tilt-series pixel size) or --tomograms"
        )


def _normalized_voxels(table, path, shape, vs, coords_angpix, tomograms_entry):
    """WarpTools' normalized coordinates (``ts_export_particles --normalized_coords``).

    ``ExportParticlesTiltseries`` multiplies them by ``DimensionsX/Y/Z - 1`` (the
    unbinned tomogram, in tilt-series pixels) and by the tilt-series pixel size.
    Without tomograms.star the unbinned size is this tomogram's extent in
    tilt-series pixels of ``coords_angpix``.
    """
    xyz = _columns(table, RELION4_COLUMNS, path)
    if vs is None:
        raise InputError(f"{path}: normalized coordinates need the tomogram's voxel size, but its header says 0")
    if tomograms_entry is not None:
        size, pixel = tomograms_entry["size"], tomograms_entry["pixel_size"]
    elif coords_angpix and shape is not None:
        pixel = float(coords_angpix)
        size = np.rint(np.asarray(shape, dtype=float) * vs / pixel)
    else:
        raise InputError(
            f"{path}: normalized coordinates need the tilt-series pixel size: give --coords-angpix or --tomograms"
        )
    return xyz * (size - 1) * pixel / vs


def _relion5_voxels(tables, table, path, shape, vs, shift, tomograms_entry):
    angst = _columns(table, RELION5_COLUMNS, path)
    if vs is None:
        raise InputError(
            f"{path}: RELION 5 centred coordinates (Angstrom) need the tomogram's voxel size, but its header says 0"
        )
    if shift is not None:
        angst = angst - shift
    if tomograms_entry is not None:  # exactly getPosition: pixels of the particles' optics group, size / 2 centre
        ts = optics_value(tables, table, "rlnTomoTiltSeriesPixelSize", path)
        ts = ts[:, None] if ts is not None else tomograms_entry["pixel_size"]
        pixels = angst / ts + tomograms_entry["size"] / 2.0
        return pixels * tomograms_entry["pixel_size"] / vs
    if shape is None:
        raise InputError(f"{path}: RELION 5 centred coordinates need the tomogram's size")
    return angst / vs + np.asarray(shape, dtype=float) / 2.0


def _pixel_voxels(tables, table, path, shape, vs, shift, coords_angpix, tomograms_entry):
    xyz = _columns(table, RELION4_COLUMNS, path)
    pixel = coordinate_pixel_size(tables, table, path, coords_angpix, tomograms_entry)
    if pixel is None:
        _refuse_normalized(xyz, shape, path)
    origin_px = _columns(table, ORIGIN_PIXELS, path)
    if origin_px is not None:
        xyz = xyz - origin_px
    if shift is not None:
        if pixel is None and vs is None:
            raise InputError(
                f"{path}: rlnOriginX/Y/ZAngst need the pixel size of the coordinates; give --coords-angpix"
            )
        xyz = xyz - shift / (pixel[:, None] if pixel is not None else vs)
    if pixel is None:
        return xyz
    if vs is None:
        raise InputError(
            f"{path}: coordinates are in pixels of {pixel[0]:g} A, but the tomogram's header gives no voxel size"
        )
    return xyz * pixel[:, None] / vs


def read_star(
    path: str | os.PathLike[str], shape: Sequence[int] | None = None, voxel_size: float | Sequence[float] | None = None,
    coords_angpix: float | None = None, tomogram: str | os.PathLike[str] | None = None, tomo_name: str | None = None,
    tomograms_entry: Mapping[str, Any] | None = None, normalized: bool = False,
) -> np.ndarray:
    """Particle positions from a RELION 3/4/5, WarpTools or M STAR file.

    Args:
        path: the STAR file.
        shape: the tomogram's (x, y, z) size in voxels.
        voxel_size: the tomogram's voxel size in Angstrom (one number or (x, y, z)).
        coords_angpix: pixel size of ``rlnCoordinate*``, overriding what the file states.
        tomogram: the tomogram's file name, to pick its rows (see :func:`tomo_key`).
        tomo_name: the tomogram's name in the file, when its file name does not tell.
        tomograms_entry: :func:`read_tomograms_star`'s answer, when given.
        normalized: ``rlnCoordinateX/Y/Z`` are WarpTools' normalized [0, 1] coordinates.

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z) in this tomogram,
        refinement shifts applied.
    """
    path = os.fspath(path)
    tables = read_star_tables(path)
    table = rows_for_tomogram(_coordinate_table(tables, path), path, tomogram, tomo_name)
    return table_voxels(tables, table, path, shape, voxel_size, coords_angpix, tomograms_entry, normalized)


def coordinate_table(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> pd.DataFrame:
    """The particle table of a STAR file's tables (the one with coordinate columns)."""
    return _coordinate_table(tables, path)


def table_voxels(
    tables: Mapping[str, pd.DataFrame], table: pd.DataFrame, path: str | os.PathLike[str], shape: Sequence[int] | None = None,
    voxel_size: float | Sequence[float] | None = None, coords_angpix: float | None = None,
    tomograms_entry: Mapping[str, Any] | None = None, normalized: bool = False,
) -> np.ndarray:
    """:func:`read_star` for rows already chosen: ``table`` (one tomogram's rows) of the file's ``tables``."""
    vs = _voxel_size(voxel_size, tomograms_entry)
    shift = origin_shift_angst(table, path)
    if normalized:
        return _normalized_voxels(table, path, shape, vs, coords_angpix, tomograms_entry)
    if set(RELION5_COLUMNS) <= set(table.columns):
        return _relion5_voxels(tables, table, path, shape, vs, shift, tomograms_entry)
    return _pixel_voxels(tables, table, path, shape, vs, shift, coords_angpix, tomograms_entry)
