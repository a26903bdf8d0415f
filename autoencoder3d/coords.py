"""Particle coordinate files: read what the cryo-ET tools write, write what they read.

Inside the package a particle position is a tomogram voxel index ``(x, y, z)``
counted from 0, where ``x`` is the MRC file's fastest axis (its columns), the
same order as the published pickle's ``'center'``. The readers convert every
format below to that convention; the writers convert back.

Conventions of each format, as read and written here:

- **RELION 4 / Warp STAR** (``rlnCoordinateX/Y/Z``): pixels, counted from 0
  (RELION: "the origin is the first element of the MRC array"), not centred. The
  pixels may be those of another binning of the same tomogram: give their pixel
  size with ``coords_angpix`` and they are scaled to this tomogram's voxels.
  When the file lists several tomograms (``rlnTomoName`` or
  ``rlnMicrographName``), only the rows naming this tomogram are used.
- **RELION 5 STAR** (``rlnCenteredCoordinateX/Y/ZAngst``): Angstrom from the
  tomogram's centre, taken as ``size / 2`` voxels (not ``(size - 1) / 2``), as
  RELION 5 converts them; needs the tomogram's voxel size from its header.
- **CSV / TXT** (comma, tab or space separated): columns named ``x, y, z``
  (any case) when the first line is a header, else the first three columns;
  voxels counted from 0 unless ``one_based`` is set (then 1 is subtracted).
- **IMOD point list** from ``model2point`` (3, 4 or 5 whitespace-separated
  columns: ``[object] [contour] x y z``): the last three columns, IMOD model
  coordinates, which count from 0 (3dmod *displays* them from 1).

Only pandas (through starfile) parses STAR files; no hand-written STAR parser.
"""

import os

import numpy as np

from .atomic import atomic_path
from .errors import InputError

RELION4_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
RELION5_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
NAME_COLUMNS = ("rlnTomoName", "rlnMicrographName")


def tomo_stem(path):
    """The tomogram's name as RELION's ``rlnTomoName`` uses it: the file name without extension."""
    name = os.path.basename(os.fspath(path))
    for ext in (".gz", ".bz2"):
        name = name.removesuffix(ext)
    return os.path.splitext(name)[0]


def _star_table(path):
    import starfile

    try:
        data = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises many kinds on malformed files
        raise InputError(f"{path}: not a readable STAR file ({type(err).__name__}: {err})") from None
    tables = [t for t in data.values() if hasattr(t, "columns")]
    for table in tables:
        if set(RELION4_COLUMNS) <= set(table.columns) or set(RELION5_COLUMNS) <= set(table.columns):
            return table
    found = sorted({c for t in tables for c in t.columns})
    raise InputError(
        f"{path}: STAR file has no coordinate columns: expected rlnCoordinateX/Y/Z (pixels) or "
        f"rlnCenteredCoordinateX/Y/ZAngst (RELION 5); found {', '.join(found) or 'no table'}"
    )


def _rows_for_tomogram(table, path, tomo_name):
    for column in NAME_COLUMNS:
        if column not in table.columns:
            continue
        names = table[column].astype(str).map(tomo_stem)
        if names.nunique() <= 1 or tomo_name is None:
            if names.nunique() > 1:
                raise InputError(
                    f"{path}: lists particles of {names.nunique()} tomograms in {column}; "
                    "cannot tell which rows belong to this tomogram"
                )
            return table
        keep = names == tomo_stem(tomo_name)
        if not keep.any():
            raise InputError(
                f"{path}: no rows for tomogram '{tomo_stem(tomo_name)}' in {column} "
                f"(it lists: {', '.join(sorted(names.unique())[:5])})"
            )
        return table[keep.values]
    return table


def _numeric(values, path, what):
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} are not all numbers") from None
    if not np.all(np.isfinite(out)):
        raise InputError(f"{path}: {what} contain missing or non-finite values")
    return out


def read_star(path, shape=None, voxel_size=None, coords_angpix=None, tomo_name=None):
    """Particle positions from a RELION 4 / Warp or RELION 5 STAR file.

    Args:
        path: the STAR file.
        shape: the tomogram's (x, y, z) size in voxels (needed for RELION 5 centred coordinates).
        voxel_size: the tomogram's voxel size in Angstrom (one number or (x, y, z)).
        coords_angpix: pixel size of ``rlnCoordinate*`` when they refer to another binning.
        tomo_name: the tomogram's file name, to pick its rows from a multi-tomogram file.

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z) in this tomogram.

    Raises:
        InputError: unreadable file, missing columns, or a voxel size that is needed but 0.
    """
    path = os.fspath(path)
    table = _rows_for_tomogram(_star_table(path), path, tomo_name)
    vs = None if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if set(RELION4_COLUMNS) <= set(table.columns):
        xyz = _numeric(table[list(RELION4_COLUMNS)].to_numpy(), path, "rlnCoordinateX/Y/Z")
        if coords_angpix is not None:
            if vs is None or np.any(vs <= 0):
                raise InputError(
                    f"{path}: --coords-angpix {coords_angpix} needs the tomogram's voxel size, "
                    "but its header says 0"
                )
            xyz = xyz * (float(coords_angpix) / vs)
        return xyz
    if vs is None or np.any(vs <= 0):
        raise InputError(
            f"{path}: RELION 5 centred coordinates (Angstrom) need the tomogram's voxel size, but its header says 0"
        )
    if shape is None:
        raise InputError(f"{path}: RELION 5 centred coordinates need the tomogram's size")
    angst = _numeric(table[list(RELION5_COLUMNS)].to_numpy(), path, "rlnCenteredCoordinateX/Y/ZAngst")
    return angst / vs + np.asarray(shape, dtype=float) / 2.0


def _split(line):
    return line.replace(",", " ").replace(";", " ").split()


def read_table(path, one_based=False):
    """Particle positions from a CSV/TXT of x y z, or an IMOD ``model2point`` list.

    Args:
        path: the text file. A header line naming ``x``, ``y`` and ``z`` selects
            those columns; without a header, 3 columns are x y z and 4 or 5 columns
            are IMOD's ``[object] contour x y z``.
        one_based: the file counts voxels from 1 (subtract 1).

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [ln.strip() for ln in handle if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as err:
        raise InputError(f"{path}: cannot read coordinate file ({err.strerror})") from None
    if not lines:
        raise InputError(f"{path}: coordinate file is empty")
    first = _split(lines[0])
    try:
        [float(v) for v in first]
        header = None
    except ValueError:
        header = [h.strip().strip('"').lower() for h in first]
        lines = lines[1:]
    if header is not None:
        missing = [c for c in "xyz" if c not in header]
        if missing:
            raise InputError(
                f"{path}: header has no column named {', '.join(missing)} (columns: {', '.join(header)}); "
                "name the coordinate columns x, y, z"
            )
        cols = [header.index(c) for c in "xyz"]
    rows = []
    for number, line in enumerate(lines, start=2 if header else 1):
        fields = _split(line)
        if header is None:
            if len(fields) == 3:
                cols = [0, 1, 2]
            elif len(fields) in (4, 5):
                cols = [len(fields) - 3, len(fields) - 2, len(fields) - 1]
            else:
                raise InputError(
                    f"{path}: line {number} has {len(fields)} columns; expected x y z (3 columns), an IMOD "
                    "model2point list (4 or 5), or a header line naming x, y, z"
                )
        elif len(fields) < len(header):
            raise InputError(f"{path}: line {number} has {len(fields)} columns, the header names {len(header)}")
        try:
            rows.append([float(fields[c]) for c in cols])
        except ValueError:
            raise InputError(f"{path}: line {number}: x y z are not numbers: {line[:80]!r}") from None
    if not rows:
        raise InputError(f"{path}: no coordinates in the file")
    xyz = _numeric(rows, path, "coordinates")
    return xyz - 1.0 if one_based else xyz


def read_coordinates(path, shape=None, voxel_size=None, coords_angpix=None, tomo_name=None, one_based=False):
    """Read a coordinate file of any supported kind (chosen by its ``.star`` extension or else as text).

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z) in the tomogram.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: coordinate file not found")
    if path.lower().endswith(".star"):
        return read_star(path, shape, voxel_size, coords_angpix, tomo_name)
    xyz = read_table(path, one_based)
    if coords_angpix is not None:
        vs = np.broadcast_to(np.asarray(voxel_size if voxel_size is not None else 0, dtype=float), (3,))
        if np.any(vs <= 0):
            raise InputError(f"{path}: --coords-angpix needs the tomogram's voxel size, but its header says 0")
        xyz = xyz * (float(coords_angpix) / vs)
    return xyz


def inside(xyz, shape):
    """Boolean mask of the coordinates that lie inside a tomogram of ``shape`` (after rounding)."""
    idx = np.rint(np.asarray(xyz, dtype=float))
    return np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)


def write_star(path, table):
    """Write a pandas DataFrame as a one-table STAR file (``data_particles``), atomically."""
    import starfile

    with atomic_path(path) as tmp:
        starfile.write({"particles": table}, tmp, overwrite=True)


def write_csv(path, table):
    """Write a pandas DataFrame as CSV with a header, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def particle_tables(xyz, tomogram_path=None, shape=None, voxel_size=None, extra=None):
    """Tables of particles in the formats of :func:`write_star` / :func:`write_csv`.

    Args:
        xyz: (N, 3) 0-based voxel coordinates (x, y, z).
        tomogram_path: the tomogram file, for ``rlnTomoName``/``rlnMicrographName``.
        shape, voxel_size: the tomogram's, for RELION 5 centred Angstrom.
        extra: dict of further columns: STAR labels (starting with ``rln``) go
            into the STAR tables, all of them into the CSV.

    Returns:
        dict with ``'relion4'`` (pixels), ``'relion5'`` (centred Angstrom, or None
        when the voxel size or shape is unknown) and ``'csv'`` DataFrames.
    """
    import pandas as pd

    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    extra = extra or {}
    star_extra = {k: v for k, v in extra.items() if k.startswith("rln")}
    names = {}
    if tomogram_path:
        names = {"rlnTomoName": tomo_stem(tomogram_path), "rlnMicrographName": os.path.basename(tomogram_path)}
    r4 = pd.DataFrame({**{k: [v] * len(xyz) for k, v in names.items()}, **dict(zip(RELION4_COLUMNS, xyz.T))})
    for k, v in star_extra.items():
        r4[k] = v
    r5 = None
    vs = None if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if vs is not None and np.all(vs > 0) and shape is not None:
        angst = (xyz - np.asarray(shape, dtype=float) / 2.0) * vs
        r5 = pd.DataFrame({k: v for k, v in names.items() if k == "rlnTomoName"}, index=range(len(xyz)))
        for k, v in zip(RELION5_COLUMNS, angst.T):
            r5[k] = v
        for k, v in star_extra.items():
            r5[k] = v
    csv = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    for k, v in extra.items():
        csv[k] = v
    return {"relion4": r4, "relion5": r5, "csv": csv}
