"""Particle lists of a run whose DATA is a store of many tomograms: each row carries its own tomogram.

The store (:mod:`autoencoder3d.dataset`) holds each particle's uuid, tomogram
name, centre and pose; only those are read, never the volumes. Each
tomogram gets its own :class:`~.place.Placement` (name, size and voxel size
from the store's tomogram table, the tomogram file's header when the table
lacks them, and RELION 5's ``tomograms.star`` when one is known), so RELION 5's
centred Angstrom use that tomogram's centre and pixel size. Files:

- ``NNN.star`` / ``NNN_relion5.star``: one table, ``rlnTomoName`` and
  ``rlnMicrographName`` per row, rows grouped by tomogram in the store's order;
- ``NNN.csv``: a ``tomogram`` column first;
- ``all_imod/TOMO.mod`` (``selected_imod/`` with ``--clusters``): one IMOD
  model per tomogram, named like it, to open over it (``3dmod TOMO.rec
  all_imod/TOMO.mod``); object ``i + 1`` is the ``i``-th exported cluster in
  every model (empty where the tomogram has none of it) and is named after it.

A stored subvolume that was pose-normalized when the store was built is placed
as the single-tomogram export places one (:func:`~.geometry.pose_position`),
whether or not the run's POSE was True: the stored volume is the normalized one.
"""

import os
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .angles import relion_angles
from .geometry import pose_position
from .place import make_placement


class Row(NamedTuple):
    """One exported particle."""

    cluster: int
    uuid: str
    xyz: np.ndarray
    angles: tuple = None
    rotation: np.ndarray = None
    tomogram: str = None


def store_rows(subvolumes, members, selected, note):
    """Rows of the chosen clusters (cluster by cluster, each in the store's order), and whether any has a pose."""
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    shape = subvolumes.v_siz
    rows, missing = [], 0
    for cid in selected:
        found = sorted(index[u] for u in members[cid] if u in index)
        missing += len(members[cid]) - len(found)
        for i in found:
            xyz = np.asarray(subvolumes.centers[i], dtype=float)
            if not np.all(np.isfinite(xyz)):
                missing += 1
                continue
            rotation, com = subvolumes.pose_of(i)
            angles = None
            if rotation is not None:
                rotation = np.asarray(rotation, dtype=float)
                if com is not None and np.all(np.isfinite(com)):
                    xyz = pose_position(xyz, np.asarray(com, dtype=float), rotation, shape)
                angles = relion_angles(rotation)
            rows.append(Row(cid, subvolumes.uuids[i], xyz, angles, rotation, subvolumes.tomogram_of(i)))
    if missing:
        note(f"{missing} particles of the run have no centre in {subvolumes.source}; left out of the particle lists")
    return rows, any(r.angles is not None for r in rows)


def _header(path):
    """(shape, voxel size) from the tomogram file's header, or (None, None)."""
    from ..io import read_tomogram

    if not path or not os.path.isfile(path):
        return None, None
    try:
        tomo = read_tomogram(path)
    except InputError:
        return None, None
    shape, voxel_size = tomo.shape, tomo.voxel_size
    tomo.close()
    return shape, voxel_size


def build_tomograms_star(subvolumes, tomograms_star, note):
    """The tomograms.star to use: the one given, else the one the store was built from (when it is still there)."""
    if tomograms_star:
        return tomograms_star
    source = ((subvolumes.manifest or {}).get("sources") or {}).get("source") or {}
    stars = source.get("star") if source.get("kind") == "relion" else None
    if stars and isinstance(stars[0], str) and os.path.isfile(stars[0]):
        note(f"{stars[0]}: the tomograms.star the data set was built from gives each tomogram's RELION centre")
        return stars[0]
    return None


def store_placements(subvolumes, names, *, tomograms_star=None, ts_angpix=None, note):
    """tomogram name -> :class:`~.place.Placement`, from the store's tomogram table (and the files it names)."""
    table = subvolumes.tomogram_table or {}
    tomograms_star = build_tomograms_star(subvolumes, tomograms_star, note)
    places, unknown = {}, []
    for name in names:
        info = table.get(name) or {}
        shape, voxel_size = info.get("shape"), info.get("voxel_size")
        if shape is None or voxel_size is None:
            file_shape, file_voxel_size = _header(info.get("path"))
            shape = shape if shape is not None else file_shape
            voxel_size = voxel_size if voxel_size is not None else file_voxel_size
        place = make_placement(info.get("path"), shape, voxel_size, tomo_name=info.get("relion_name") or name,
                               ts_angpix=ts_angpix, tomograms_star=tomograms_star)
        if place.voxel_size is None or place.centre_angst is None:
            unknown.append(name)
        places[name] = place
    if unknown:
        note(f"{len(unknown)} tomograms without a known size or voxel size (e.g. {unknown[0]}): "
             "their particles are left out of the RELION 5 lists")
    return places


def store_unit_notes(places, formats, note):
    """Say which unit NNN.star's pixel coordinates are in, tomogram by tomogram."""
    from .warp import pixel_units

    if "star" not in formats or not places:
        return
    tilt_series = [name for name, place in places.items() if pixel_units(place)[1]]
    own = len(places) - len(tilt_series)
    if tilt_series:
        note(f"NNN.star: rlnCoordinateX/Y/Z in tilt-series pixels (rlnPixelSize on each row) for {len(tilt_series)} tomograms")
    if own:
        note(f"tilt-series pixel size unknown for {own} tomograms (--ts-angpix or --tomograms): their NNN.star rows "
             "hold pixels of the tomogram (rlnPixelSize), which RELION's import does not rescale")


def _by_tomogram(rows, order):
    """[(tomogram name, rows)] in the store's tomogram order."""
    groups = {}
    for row in rows:
        groups.setdefault(row.tomogram, []).append(row)
    return [(name, groups[name]) for name in order if name in groups]


def _extra(part, with_angles):
    cluster = np.array([r.cluster for r in part])
    extra = {"rlnClassNumber": cluster + 1}
    if with_angles:
        ang = np.array([r.angles if r.angles is not None else (np.nan,) * 3 for r in part])
        extra.update(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
    return extra


def write_store_lists(base, part, places, order, formats, with_angles):
    """The STAR and CSV files of one group of rows (a cluster, or all); returns [(kind, path)]."""
    import pandas as pd

    from ..coords import write_csv, write_star
    from .relion5 import relion5_table
    from .warp import pixel_table

    groups = _by_tomogram(part, order)
    pixel, relion5, csv = [], [], []
    for name, rows in groups:
        xyz = np.array([r.xyz for r in rows], dtype=float)
        extra = _extra(rows, with_angles)
        pixel.append(pixel_table(xyz, places[name], extra))
        table = relion5_table(xyz, places[name], extra)
        if table is not None:
            relion5.append(table)
        frame = pd.DataFrame({"tomogram": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], **extra})
        frame["uuid"], frame["cluster"] = [r.uuid for r in rows], [r.cluster for r in rows]
        csv.append(frame)
    out = []
    if "star" in formats:
        write_star(base + ".star", pd.concat(pixel, ignore_index=True))
        out.append(("star", base + ".star"))
        if relion5:
            write_star(base + "_relion5.star", pd.concat(relion5, ignore_index=True))
            out.append(("star", base + "_relion5.star"))
    if "csv" in formats:
        write_csv(base + ".csv", pd.concat(csv, ignore_index=True))
        out.append(("csv", base + ".csv"))
    return out


def safe_file_name(name):
    """A tomogram name usable as a file name (folder separators and leading dots replaced)."""
    cleaned = "".join("_" if c in '/\\:*?"<>|' or ord(c) < 32 else c for c in str(name)).lstrip(".")
    return cleaned or "tomogram"


def write_imod_models(folder, rows, clusters, order):
    """One IMOD model per tomogram under ``folder``, object ``i + 1`` = ``clusters[i]``; returns the paths."""
    from .imod_model import write_model

    paths = []
    for name, part in _by_tomogram(rows, order):
        path = os.path.join(folder, safe_file_name(name) + ".mod")
        write_model(path, np.array([r.xyz for r in part], dtype=float), [r.cluster for r in part], objects=clusters)
        paths.append(path)
    return paths
