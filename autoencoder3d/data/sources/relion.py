"""Jobs from a RELION 5 project: ``tomograms.star`` and ``particles.star``.

``tomograms.star`` gives each tomogram's name (``rlnTomoName``), tilt-series
pixel size, binning, unbinned size and, when reconstructed by RELION, its file
(``rlnTomoReconstructedTomogram``, a path relative to the RELION project
folder). ``particles.star`` names each particle's tomogram in ``rlnTomoName``;
its coordinates are converted exactly as ``autoencoder3d extract --tomograms``
does (:func:`~autoencoder3d.formats.star.table_voxels`: centred Angstrom,
refinement shifts subtracted).
"""

from __future__ import annotations

import os

from ...errors import InputError
from ...formats.mrc import read_tomogram
from ...formats.star import coordinate_table, read_star_tables, table_voxels, tomo_key, tomograms_star_entry
from .jobs import TomogramJob, absent, check_jobs, find_tomogram, mrc_opener

NEED = ("rlnTomoName", "rlnTomoTiltSeriesPixelSize", "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ")
PARTICLE_NAME = "rlnTomoParticleName"


def read_tomograms_table(path: str | os.PathLike) -> dict[str, dict[str, object]]:
    """Every row of RELION 5's ``tomograms.star``: tomo_key(name) -> entry.

    Each entry is what :func:`~autoencoder3d.formats.star.read_tomograms_star`
    gives for one tomogram (name, pixel_size, binning, size) plus
    ``reconstructed`` (the file named in ``rlnTomoReconstructedTomogram``, or None).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: tomograms.star not found")
    tables = read_star_tables(path)
    table = next((t for t in tables.values() if set(NEED) <= set(t.columns)), None)
    if table is None:
        raise InputError(f"{path}: not a RELION 5 tomograms.star (needs the columns {', '.join(NEED)})")
    entries = {}
    for _, row in table.iterrows():
        entry = tomograms_star_entry(row, path)
        file = row.get("rlnTomoReconstructedTomogram")
        if tomo_key(entry["name"]) in entries:
            raise InputError(f"{path}: tomogram {entry['name']} is listed twice")
        entries[tomo_key(entry["name"])] = {**entry, "reconstructed": None if file is None else str(file)}
    return entries


def _reconstructed_file(entry, tomograms_star, tomogram_dir):
    """The tomogram's file: by name under ``tomogram_dir``, else ``rlnTomoReconstructedTomogram``.

    RELION writes that path relative to its project folder, which is usually a
    folder or two above ``tomograms.star``; it is looked for relative to the
    current folder and to each folder above the star file.
    """
    if tomogram_dir is not None:
        return find_tomogram(entry["name"], tomogram_dir, tomograms_star)
    file = entry["reconstructed"]
    if not file:
        raise InputError(f"{tomograms_star}: tomogram {entry['name']} has no rlnTomoReconstructedTomogram; "
                         "give --tomogram-dir to find the tomograms by name")
    if os.path.isabs(file):
        candidates = [file]
    else:
        folder = os.path.dirname(os.path.abspath(tomograms_star))
        bases = [os.getcwd()]
        while True:
            bases.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        candidates = [os.path.join(base, file) for base in bases]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    folder = next((c for c in candidates if os.path.isdir(c)), None)
    if found is None and folder is not None:
        raise InputError(f"{tomograms_star}: tomogram {entry['name']}: {folder} {absent(folder)}; give the tomogram's MRC file")
    if found is None:
        raise InputError(f"{tomograms_star}: tomogram {entry['name']}: file {file} not found (looked relative to the "
                         "current folder and the folders above this file); give --tomogram-dir")
    return found


def _particle_names(table, path):
    if "rlnTomoName" not in table.columns:
        raise InputError(f"{path}: the particles have no rlnTomoName column; a data set of several tomograms needs it")
    return table["rlnTomoName"].astype(str).map(tomo_key).to_numpy()


def _job(rows, tables, particles_star, entry, file):
    tomogram = read_tomogram(file)
    try:
        xyz = table_voxels(tables, rows, particles_star, tomogram.shape, tomogram.voxel_size, tomograms_entry=entry)
        voxel_size = [float(v) for v in tomogram.voxel_size]
    finally:
        tomogram.close()
    uuids = None
    if PARTICLE_NAME in rows.columns:
        uuids = [str(u) for u in rows[PARTICLE_NAME]]
    info = {"relion_name": entry["name"], "voxel_size": voxel_size}
    return TomogramJob(entry["name"], mrc_opener(file, particles_star), xyz, uuids, info)


def jobs_from_relion(tomograms_star: str | os.PathLike, particles_star: str | os.PathLike,
                     tomogram_dir: str | os.PathLike | None = None) -> list[TomogramJob]:
    """One job per tomogram of ``particles.star`` that has particles, in the order they first appear there.

    Raises:
        InputError: a particle's tomogram is not in ``tomograms.star``, a tomogram
            file is missing, or the star files are malformed.
    """
    tomograms_star, particles_star = os.fspath(tomograms_star), os.fspath(particles_star)
    entries = read_tomograms_table(tomograms_star)
    if not os.path.isfile(particles_star):
        raise InputError(f"{particles_star}: particles.star not found")
    tables = read_star_tables(particles_star)
    table = coordinate_table(tables, particles_star)
    names = _particle_names(table, particles_star)
    unknown = sorted(set(names) - set(entries))
    if unknown:
        raise InputError(f"{particles_star}: tomogram {unknown[0]} (and {len(unknown) - 1} more) is not in {tomograms_star}"
                         if len(unknown) > 1 else f"{particles_star}: tomogram {unknown[0]} is not in {tomograms_star}")
    order = list(dict.fromkeys(names))
    if PARTICLE_NAME in table.columns and table[PARTICLE_NAME].astype(str).duplicated().any():
        table = table.drop(columns=[PARTICLE_NAME])  # not ids after all: fall back to <tomogram>_<row>
    jobs = []
    for key in order:
        entry = entries[key]
        file = _reconstructed_file(entry, tomograms_star, tomogram_dir)
        jobs.append(_job(table[names == key], tables, particles_star, entry, file))
    return check_jobs(jobs, particles_star)
