"""export_run: a finished run's clusters as files for RELION, WarpTools/M, IMOD and ChimeraX."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..runs.folder import RunFolder
from .angles import relion_angles
from .geometry import pose_position
from .many import particles_from_rows, store_particles, store_placements, store_unit_notes, write_imod_models, write_store_lists
from .place import make_placement
from .relion5 import relion5_table
from .run_files import center_of, cluster_members, particle_records
from .warp import pixel_table, pixel_units

FORMATS = ("mrc", "star", "csv", "imod", "copick")
DEFAULT_FORMATS = ("mrc", "star", "csv", "imod")


def _parse_formats(formats):
    formats = [formats] if isinstance(formats, str) else list(formats)
    formats = [f.strip().lower() for item in formats for f in item.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"--format {','.join(unknown)}: unknown; choose from {', '.join(FORMATS)}")
    return set(formats)


def _tomogram_info(run_dir, run, tomogram, note):
    """(path, shape or None, voxel size or None) of the run's tomogram."""
    from ..formats.mrc import read_tomogram

    path = tomogram or RunFolder(run_dir).resolve(run["inputs"].get("tomogram"))
    voxel_size, shape = run.get("voxel_size"), None
    if voxel_size is not None and not np.all(np.asarray(voxel_size, dtype=float) > 0):
        voxel_size = None
    if path and os.path.isfile(path):
        tomo = read_tomogram(path)
        shape = tomo.shape
        if voxel_size is None and np.all(np.asarray(tomo.voxel_size) > 0):
            voxel_size = tomo.voxel_size
        tomo.close()
    elif path:
        note(f"{path}: tomogram not found; RELION 5 centred coordinates need its size and are skipped")
    return path, shape, voxel_size


def _write_centres(run_dir, selected, voxel_size, note):
    from ..formats.mrc import write_mrc

    folder = RunFolder(run_dir)
    clus_dir, ccents = folder.clus_dir, folder.centers()
    if voxel_size is None:
        note("voxel size unknown (no tomogram, or 0 in its header): cluster-centre MRCs carry voxel size 0")
    written = []
    for cid in selected:
        if cid not in ccents:
            note(f"cluster {cid}: no decoded centre in ccents.pickle")
            continue
        out = os.path.join(clus_dir, "mrc", f"{cid:03d}.mrc")
        write_mrc(out, ccents[cid], voxel_size)
        written.append(out)
    return written


def particle_rows(run_dir: str | os.PathLike, inputs: Mapping[str, Any], members: Mapping[int, Sequence[str]],
                  selected: Sequence[int], note: Callable[[str], object]
                  ) -> tuple[list[tuple[int, str, np.ndarray, tuple[float, float, float] | None, np.ndarray | None]], bool]:
    """(rows, whether poses were read): a row (cluster, uuid, position, angles or None, rotation or None) per exported particle.

    With pose normalization the position is where the normalized volume's voxel
    ``n // 2`` lies in the tomogram (:func:`~.geometry.pose_position`) and the
    angles are those of its rotation; without, the subvolume's centre.
    """
    poses, records, shape = {}, {}, None
    pose_path = RunFolder(run_dir).pose_pickle
    if inputs.get("pose") and os.path.isfile(pose_path):
        pose_records, shape = particle_records(pose_path)
        poses = {u: r for u, r in pose_records.items() if r.get("rotation") is not None}
    elif inputs.get("pose"):
        note(f"{pose_path}: not found; particle lists are written without angles")
    wanted = [u for cid in selected for u in members[cid]]
    if any(center_of(poses.get(u)) is None for u in wanted):
        data_path = RunFolder(run_dir).recorded_input("data", inputs)
        records, data_shape = particle_records(data_path)  # the published format has no index: read whole
        shape = shape or data_shape
    rows, missing = [], 0
    for cid in selected:
        for uuid in members[cid]:
            pose = poses.get(uuid)
            xyz = center_of(pose) if center_of(pose) is not None else center_of(records.get(uuid))
            if xyz is None:
                missing += 1
                continue
            angles = rm = None
            if pose is not None:
                rm = np.asarray(pose["rotation"], dtype=float)
                if pose.get("center_of_mass") is not None:
                    xyz = pose_position(xyz, np.asarray(pose["center_of_mass"], dtype=float), rm, shape)
                angles = relion_angles(rm)
            rows.append((cid, uuid, xyz, angles, rm))
    if missing:
        note(f"{missing} particles have no centre in {data_path}; left out of the particle lists")
    return rows, bool(poses)


def _write_lists(base, part, place, formats, with_angles):
    import pandas as pd

    from ..formats.coords import write_csv, write_star
    from .imod_model import write_model

    xyz = np.array([r[2] for r in part], dtype=float)
    cluster = np.array([r[0] for r in part])
    extra = {"rlnClassNumber": cluster + 1}
    if with_angles:
        ang = np.array([r[3] if r[3] is not None else (np.nan,) * 3 for r in part])
        extra.update(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
    out = []
    if "star" in formats:
        write_star(base + ".star", pixel_table(xyz, place, extra))
        out.append(("star", base + ".star"))
        table = relion5_table(xyz, place, extra)
        if table is not None:
            write_star(base + "_relion5.star", table)
            out.append(("star", base + "_relion5.star"))
    if "csv" in formats:
        table = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], **extra})
        table["uuid"], table["cluster"] = [r[1] for r in part], cluster
        write_csv(base + ".csv", table)
        out.append(("csv", base + ".csv"))
    if "imod" in formats:
        write_model(base + ".mod", xyz, cluster)
        out.append(("imod", base + ".mod"))
    return out


def _unit_notes(place, formats, note):
    if "star" not in formats:
        return
    pixel, tilt_series = pixel_units(place)
    if tilt_series:
        note(f"NNN.star: rlnCoordinateX/Y/Z in tilt-series pixels of {pixel:g} A (rlnPixelSize), "
             f"tomogram '{place.tomo_name}', series '{place.series_name}'")
    elif pixel:
        note(f"tilt-series pixel size unknown (--ts-angpix or --tomograms): NNN.star holds pixels of this "
             f"tomogram ({pixel:g} A), which RELION's import does not rescale")
    if place.voxel_size is None or place.centre_angst is None:
        note("RELION 5 STAR files skipped: they need the tomogram's size and voxel size")


def export_run(run_dir: str | os.PathLike, *, formats: str | Iterable[str] = DEFAULT_FORMATS,
               clusters: str | Sequence[int] | None = None, tomogram: str | None = None, tomo_name: str | None = None,
               series_name: str | None = None, ts_angpix: float | None = None,
               tomograms_star: str | os.PathLike | None = None, copick_config: str | os.PathLike | None = None,
               copick_user: str | None = None, copick_session: str | int | None = None,
               log: Callable[[str], object] | None = print, lock: bool = True) -> dict[str, list[str]]:
    """Write the cluster centres and particle lists of a finished run (see the package docstring).

    Args:
        run_dir: the run folder of ``autoencoder3d train``.
        formats: any of ``'mrc'``, ``'star'``, ``'csv'``, ``'imod'``, ``'copick'``.
        clusters: cluster ids (list or ``'3,5,17'``) to export alone, or None for all.
        tomogram: the tomogram file, when ``run.json`` names none or it has moved.
        tomo_name: RELION's tomogram name (default: tomograms.star's, or from the file name).
        series_name: WarpTools' / M's series name (default: tomogram name + ``.tomostar``).
        ts_angpix: tilt-series (unbinned) pixel size in Angstrom, for pixel coordinates.
        tomograms_star: RELION 5's tomograms.star, for the name, pixel size and unbinned size.
        copick_config: the copick project to write picks into (format ``'copick'``; :mod:`.copick_out`);
            by default the one a store was built from.
        copick_user, copick_session: the picks' user id (default ``autoencoder3d``) and session id
            (default: one more than the largest number this user has used in the project; 1 at first).
        log: function called with one line per note (``None`` for silence).
        lock: hold ``run_dir``'s lock while files are written there (``train`` passes False: it holds it
            already); copick picks are written under the lock of the project's overlay folder.

    With a store of many tomograms as the run's DATA, every particle carries its
    own tomogram (:mod:`.many`); ``tomogram``, ``tomo_name`` and ``series_name`` are not used.

    Returns:
        dict format -> list of written paths, plus ``'notes'``: what was skipped and why.
    """
    from ..util.lock import locked_if

    run_dir = os.fspath(run_dir)
    formats = _parse_formats(formats)
    with locked_if(run_dir, lock and bool(formats - {"copick"}), advice="wait for it to finish"):
        return _export(run_dir, formats, clusters, tomogram=tomogram, tomo_name=tomo_name, series_name=series_name,
                       ts_angpix=ts_angpix, tomograms_star=tomograms_star, copick_config=copick_config,
                       copick_user=copick_user, copick_session=copick_session, log=log)


def _export(run_dir, formats, clusters, *, tomogram, tomo_name, series_name, ts_angpix, tomograms_star, copick_config,
            copick_user, copick_session, log):
    run = RunFolder(run_dir).finished_record()
    written = {f: [] for f in FORMATS}
    notes = []

    def note(text):
        notes.append(text)
        if log:
            log(text)

    clus_dir = RunFolder(run_dir).clus_dir
    members, selected, chosen = cluster_members(clus_dir, clusters)
    store = _store_of(run_dir, run)
    copick_lock = contextlib.nullcontext()
    if "copick" in formats:
        from .copick_out import check_copick_options, project_lock, source_config

        copick_config = copick_config or source_config(store, note)
        check_copick_options(copick_config, copick_user, copick_session)
        copick_lock = project_lock(copick_config)  # before any file is written: a refusal leaves nothing behind
    with copick_lock:
        if store is None:
            particles, name_of = _export_one(run_dir, run, formats, (members, selected, chosen), written, note,
                                             tomogram=tomogram, tomo_name=tomo_name, series_name=series_name,
                                             ts_angpix=ts_angpix, tomograms_star=tomograms_star)
        else:
            if tomogram or tomo_name or series_name:
                note("--tomogram, --tomo-name and --series-name are not used: each particle's tomogram is in the data set")
            particles, name_of = _export_many(run_dir, run, store, formats, (members, selected, chosen), written, note,
                                              ts_angpix=ts_angpix, tomograms_star=tomograms_star)
        if "copick" in formats:
            from .copick_out import write_copick

            written["copick"] = write_copick(copick_config, particles, name_of, selected, user=copick_user,
                                             session=copick_session, radius=_radius(run), note=note, lock=False)
    written["notes"] = notes
    return written


def _radius(run):
    """Half the box in Angstrom, when the run knows its voxel size."""
    voxel_size, v_siz = run.get("voxel_size"), run.get("v_siz")
    if voxel_size and v_siz and float(voxel_size[0]) > 0:
        return float(v_siz[0]) / 2 * float(voxel_size[0])
    return None


def _store_of(run_dir, run):
    """The run's DATA when it is a store of many tomograms (a folder), else None."""
    from ..data.store import is_store

    data = RunFolder(run_dir).resolve(run["inputs"].get("data"))
    return data if data and is_store(data) else None


def _export_one(run_dir, run, formats, clustering, written, note, *, tomogram, tomo_name, series_name, ts_angpix,
                tomograms_star):
    """The published single-tomogram export; returns the rows and tomogram name -> (copick name, voxel size)."""
    members, selected, chosen = clustering
    clus_dir = RunFolder(run_dir).clus_dir
    tomo_path, shape, voxel_size = _tomogram_info(run_dir, run, tomogram, note)
    place = make_placement(tomo_path, shape, voxel_size, tomo_name=tomo_name, series_name=series_name,
                           ts_angpix=ts_angpix, tomograms_star=tomograms_star)
    if not (tomo_path or tomo_name or tomograms_star) and formats & {"star", "imod", "copick"}:
        note("no tomogram known: the particle lists name it 'tomogram'; give --tomo-name (or --tomogram)")
    rows = []
    if formats & {"star", "csv", "imod", "copick"}:  # read before any file is written: a refusal changes nothing
        rows, with_angles = particle_rows(run_dir, run["inputs"], members, selected, note)
    if "mrc" in formats:
        written["mrc"] = _write_centres(run_dir, selected, place.voxel_size, note)
    if formats & {"star", "csv", "imod"}:
        particle_dir = os.path.join(clus_dir, "particles")
        groups = [(f"{cid:03d}", [r for r in rows if r[0] == cid]) for cid in selected]
        groups.append(("all" if chosen is None else "selected", rows))
        for stem, part in groups:
            if part:
                for kind, path in _write_lists(os.path.join(particle_dir, stem), part, place, formats, with_angles):
                    written[kind].append(path)
        _unit_notes(place, formats, note)
    return particles_from_rows(rows), {None: (place.tomo_name, place.voxel_size)}


def _export_many(run_dir, run, store, formats, clustering, written, note, *, ts_angpix, tomograms_star):
    """The export of a run on a store: per-tomogram names, sizes and pixel sizes (:mod:`.many`).

    The store is opened (uuids, names, centres, poses; never the volumes) only for particle lists.
    """
    from ..data.open import open_data

    members, selected, chosen = clustering
    clus_dir = RunFolder(run_dir).clus_dir
    lists = formats & {"star", "csv", "imod", "copick"}
    if lists:  # the store is read before any file is written: a refusal changes nothing
        subvolumes = open_data(store)
        order = list(subvolumes.tomogram_table or dict.fromkeys(subvolumes.tomograms))
        particles = store_particles(subvolumes, members, selected, order, note)
        present = set(particles.tomogram)
        names = [n for n in order if n in present]
        places = store_placements(subvolumes, names, tomograms_star=tomograms_star, ts_angpix=ts_angpix, note=note)
    if "mrc" in formats:  # train records the store's voxel size when all its tomograms share one
        written["mrc"] = _write_centres(run_dir, selected, run.get("voxel_size"), note)
    if not lists:
        return None, {}
    particle_dir = os.path.join(clus_dir, "particles")
    last = "all" if chosen is None else "selected"
    with_angles = bool(np.isfinite(particles.angles).any())
    if formats & {"star", "csv"} and len(particles):
        for kind, path in write_store_lists(particle_dir, particles, places, names, selected, last, formats, with_angles):
            written[kind].append(path)
    if "imod" in formats and len(particles):
        written["imod"] = write_imod_models(os.path.join(particle_dir, f"{last}_imod"), particles, selected, names, note)
    store_unit_notes(places, formats, note)
    return particles, {n: (n, places[n].voxel_size) for n in names}
