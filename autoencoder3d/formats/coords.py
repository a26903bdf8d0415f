"""Particle coordinate files: read what the cryo-ET tools write, write what they read.

Inside the package a particle position is a tomogram voxel index ``(x, y, z)``
counted from 0 (the centre of the first voxel is 0), where ``x`` is the MRC
file's fastest axis (its columns), the same order as the published pickle's
``'center'``. The readers convert every format below to that convention; the
writers convert back.

- **STAR** (RELION 3/4/5, WarpTools, M): see :mod:`autoencoder3d.formats.star`
  (units, centre, refinement shifts and tomogram names of each).
- **CSV / TXT** (comma, tab or space separated): columns named ``x, y, z``
  (any case) when the first line is a header, else the first three columns;
  voxels counted from 0 unless ``one_based`` is set (then 1 is subtracted).
- **IMOD**: a binary model (``.mod``, read with the ``imodmodel`` package) or a
  ``model2point`` list (4 or 5 whitespace-separated columns ``[object] contour
  x y z``, or 3 columns with ``imod=True``): IMOD model coordinates, whose
  first voxel centre is (0.5, 0.5, 0); see :mod:`autoencoder3d.formats.imod`.

Only pandas (through starfile) parses STAR files; no hand-written STAR parser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ..util.atomic import atomic_path
from .imod import is_binary_model, model_to_voxels, read_model
from .star import RELION4_COLUMNS, RELION5_COLUMNS, numeric_array, read_star, read_tomograms_star, tomo_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_coordinates", "read_star", "read_table", "read_tomograms_star", "tomo_key", "tomo_stem"]


def tomo_stem(path: str | os.PathLike[str]) -> str:
    """The tomogram's file name without folder and extension (e.g. ``rec_TS_01`` for ``rec_TS_01.mrc``)."""
    name = os.path.basename(os.fspath(path))
    for ext in (".gz", ".bz2"):
        name = name.removesuffix(ext)
    return os.path.splitext(name)[0]


def _split(line):
    return line.replace(",", " ").replace(";", " ").split()



_TRAILING_COMMENT = re.compile(r"\s+#.*$")  # "10 12 14  # a ribosome"; a '#' inside a name (TS#1.mrc) stays


def content_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    """The stripped non-blank lines of a text file, ``#`` comments left out (whole lines, and the rest of a line
    after whitespace and ``#``); InputError naming ``what`` if unreadable or empty."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(2)
        # the byte-order mark of spreadsheet exports (Excel's CSV UTF-8 and Unicode text) is no part of the first column
        encoding = "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        with open(path, encoding=encoding, errors="replace") as handle:
            lines = [ln for ln in (_TRAILING_COMMENT.sub("", raw).strip() for raw in handle) if ln and not ln.startswith("#")]
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    if not lines:
        raise InputError(f"{path}: {what} is empty")
    return lines

def read_table(path: str | os.PathLike[str], one_based: bool = False, imod: bool = False) -> np.ndarray:
    """Particle positions from a CSV/TXT of x y z, or an IMOD ``model2point`` list.

    Args:
        path: the text file. A header line naming ``x``, ``y`` and ``z`` selects
            those columns; without a header, 3 columns are x y z and 4 or 5 columns
            are IMOD's ``[object] contour x y z`` (IMOD model coordinates).
        one_based: the file counts voxels from 1 (subtract 1).
        imod: 3-column lines are IMOD model coordinates too (``model2point``
            without object and contour numbers).

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z).
    """
    path = os.fspath(path)
    lines = content_lines(path, "coordinate file")
    header = _header(lines[0], path)
    if header is not None:
        lines = lines[1:]
    rows, model = [], []
    for number, line in enumerate(lines, start=2 if header else 1):
        fields = _split(line)
        cols = _row_columns(fields, header, path, number)
        try:
            rows.append([float(fields[c]) for c in cols])
        except ValueError:
            raise InputError(f"{path}: line {number}: x y z are not numbers: {line[:80]!r}") from None
        model.append(header is None and (imod or len(fields) > 3))
    if not rows:
        raise InputError(f"{path}: no coordinates in the file")
    xyz = numeric_array(rows, path, "coordinates")
    model = np.array(model)
    xyz[model] = model_to_voxels(xyz[model])
    return xyz - 1.0 if one_based else xyz


def _header(first_line, path):
    fields = _split(first_line)
    try:
        [float(v) for v in fields]
        return None
    except ValueError:
        header = [h.strip().strip('"').lower() for h in fields]
    missing = [c for c in "xyz" if c not in header]
    if missing:
        raise InputError(
            f"{path}: header has no column named {', '.join(missing)} (columns: {', '.join(header)}); "
            "name the coordinate columns x, y, z"
        )
    return header


def _row_columns(fields, header, path, number):
    if header is not None:
        if len(fields) < len(header):
            raise InputError(f"{path}: line {number} has {len(fields)} columns, the header names {len(header)}")
        return [header.index(c) for c in "xyz"]
    if len(fields) in (3, 4, 5):
        return [len(fields) - 3, len(fields) - 2, len(fields) - 1]
    raise InputError(
        f"{path}: line {number} has {len(fields)} columns; expected x y z (3 columns), an IMOD "
        "model2point list (4 or 5), or a header line naming x, y, z"
    )


def read_coordinates(
    path: str | os.PathLike[str], shape: Sequence[int] | None = None, voxel_size: float | Sequence[float] | None = None,
    coords_angpix: float | None = None, tomogram: str | os.PathLike[str] | None = None, one_based: bool = False, *,
    tomo_name: str | None = None, tomograms_star: str | os.PathLike[str] | None = None, imod: bool = False,
    normalized: bool = False,
) -> np.ndarray:
    """Read a coordinate file of any supported kind.

    The kind comes from the content: a binary IMOD model (``IMOD`` magic), a
    ``.star`` file, or else a text list (:func:`read_table`).

    Args:
        path: the coordinate file.
        shape, voxel_size: the tomogram's size (x, y, z) and voxel size (Angstrom).
        coords_angpix: pixel size of the coordinates, overriding what a STAR file states.
        tomogram: the tomogram's file name, to pick its rows from a STAR file.
        one_based: text lists count voxels from 1.
        tomo_name: the tomogram's name in the STAR file, when its file name does not tell.
        tomograms_star: RELION 5's ``tomograms.star``, for the tilt-series pixel size,
            binning and unbinned size of the tomogram.
        imod: 3-column text lists hold IMOD model coordinates.
        normalized: a STAR file holds WarpTools' normalized [0, 1] coordinates.

    Returns:
        float array (N, 3) of 0-based voxel coordinates (x, y, z) in the tomogram.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: coordinate file not found")
    if is_binary_model(path):
        xyz = read_model(path)
    elif path.lower().endswith(".star"):
        entry = read_tomograms_star(tomograms_star, tomogram, tomo_name) if tomograms_star else None
        return read_star(path, shape, voxel_size, coords_angpix, tomogram, tomo_name, entry, normalized)
    else:
        xyz = read_table(path, one_based, imod)
    if coords_angpix is not None:
        vs = np.broadcast_to(np.asarray(voxel_size if voxel_size is not None else 0, dtype=float), (3,))
        if np.any(vs <= 0):
            raise InputError(f"{path}: --coords-angpix needs the tomogram's voxel size, but its header says 0")
        xyz = xyz * (float(coords_angpix) / vs)
    return xyz


def inside(xyz: ArrayLike, shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """Boolean mask of the coordinates that lie inside a tomogram of ``shape`` (after rounding)."""
    idx = np.rint(np.asarray(xyz, dtype=float))
    return np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)


def write_star(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write a pandas DataFrame as a one-table STAR file (``data_particles``), atomically."""
    import starfile

    with atomic_path(path) as tmp:
        starfile.write({"particles": table}, tmp, overwrite=True)


def write_csv(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write a pandas DataFrame as CSV with a header, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def particle_tables(
    xyz: ArrayLike, tomogram_path: str | os.PathLike[str] | None = None, shape: Sequence[int] | None = None,
    voxel_size: float | Sequence[float] | None = None, extra: Mapping[str, Any] | None = None,
) -> dict[str, pd.DataFrame | None]:
    """Tables of particles in the formats of :func:`write_star` / :func:`write_csv`.

    Args:
        xyz: (N, 3) 0-based voxel coordinates (x, y, z).
        tomogram_path: the tomogram file, for ``rlnTomoName``/``rlnMicrographName``.
        shape, voxel_size: the tomogram's, for RELION 5 centred Angstrom.
        extra: dict of further columns: STAR labels (starting with ``rln``) go
            into the STAR tables, all of them into the CSV.

    Returns:
        dict with ``'relion4'`` (pixels of this tomogram, their size in ``rlnPixelSize``
        when the voxels are known and cubic), ``'relion5'`` (centred Angstrom, or None
        when the voxel size or shape is unknown) and ``'csv'`` DataFrames.
    """
    import pandas as pd

    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    extra = extra or {}
    star_extra = {k: v for k, v in extra.items() if k.startswith("rln")}
    names = {}
    if tomogram_path:
        names = {"rlnTomoName": tomo_key(tomogram_path), "rlnMicrographName": os.path.basename(tomogram_path)}
    r4 = pd.DataFrame({**{k: [v] * len(xyz) for k, v in names.items()}, **dict(zip(RELION4_COLUMNS, xyz.T))})
    vs = None if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if vs is not None and np.all(vs > 0) and np.all(vs == vs[0]):
        r4["rlnPixelSize"] = float(vs[0])  # the unit of the coordinates, where WarpTools looks for it
    for k, v in star_extra.items():
        r4[k] = v
    r5 = None
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
