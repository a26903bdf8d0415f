"""Exports of a finished ``autoencoder3d train`` run for ChimeraX, IMOD, RELION, Warp and copick.

:func:`export_run` reads only the run folder (``run.json``, ``clus-center/*.pickle``,
``pose-normalized.pickle`` when pose normalization ran) and the inputs that
``run.json`` names, and writes:

- ``clus-center/mrc/NNN.mrc``: each decoded cluster centre, with the tomogram's
  voxel size so that it overlays in ChimeraX/IMOD;
- ``clus-center/particles/NNN.star`` (RELION 4 / Warp: ``rlnTomoName``,
  ``rlnMicrographName``, ``rlnCoordinateX/Y/Z`` in pixels from 0),
  ``NNN_relion5.star`` (``rlnCenteredCoordinateX/Y/ZAngst``, Angstrom from the
  tomogram centre at size/2) and ``NNN.csv`` (x, y, z, uuid, cluster) for every
  cluster, and ``all.*`` with every particle; with ``clusters=[...]`` only the
  chosen clusters and their union ``selected.*``;
- in every STAR table ``rlnClassNumber`` = cluster + 1 (RELION counts classes
  from 1; the CSV's ``cluster`` column is the run's own id), and when pose
  normalization ran, ``rlnAngleRot/Tilt/Psi``: each particle's PCA rotation in
  RELION's ZYZ convention, so that rotating the normalized (aligned) particle by
  these angles gives the particle as it lies in the tomogram. The coordinate is
  then the particle's centre of mass, the centre of that rotation.

RELION's angles "rotate the reference into the particle": with ``A`` the
matrix of :func:`relion_matrix`, the particle at ``r`` (relative to the box
centre) equals the reference at ``A^T r``. Pose normalization's output samples
the particle at ``rm (o - c) + c`` (spec section 3), i.e. the normalized volume
is the particle rotated by ``rm^T``; so ``A = rm`` and the exported angles are
those of ``rm`` (in the x, y, z axes of the MRC file).
"""

import json
import os

import numpy as np

from .errors import InputError

FORMATS = ("mrc", "star", "csv")


def relion_matrix(rot, tilt, psi):
    """RELION's rotation matrix for Euler angles in degrees (ZYZ: rot about Z, tilt about Y, psi about Z).

    ``A = Rz(psi) Ry(tilt) Rz(rot)`` written with coordinate-frame rotations,
    as in RELION's ``Euler_angles2matrix``; it rotates the reference into the particle.
    """
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def relion_angles(matrix):
    """Inverse of :func:`relion_matrix`: (rot, tilt, psi) in degrees, tilt in [0, 180].

    Raises:
        ValueError: if ``matrix`` is not a proper rotation (orthonormal, determinant +1).
    """
    a = np.asarray(matrix, dtype=float)
    if a.shape != (3, 3) or not np.allclose(a @ a.T, np.eye(3), atol=1e-4) or np.linalg.det(a) < 0:
        raise ValueError(f"not a proper rotation matrix: {a.tolist()}")
    tilt = np.arccos(np.clip(a[2, 2], -1.0, 1.0))
    if np.sin(tilt) > 1e-6:
        rot = np.arctan2(a[2, 1], a[2, 0])
        psi = np.arctan2(a[1, 2], -a[0, 2])
    elif a[2, 2] > 0:  # tilt 0: only rot + psi is defined
        rot, psi = 0.0, np.arctan2(a[0, 1], a[0, 0])
    else:  # tilt 180: only psi - rot is defined
        rot, psi = 0.0, np.arctan2(a[0, 1], a[1, 1])
    return tuple(float(v) for v in np.rad2deg([rot, tilt, psi]))


def _parse_clusters(clusters):
    if clusters is None:
        return None
    if isinstance(clusters, str):
        try:
            return sorted({int(c) for c in clusters.replace(" ", "").split(",") if c})
        except ValueError:
            raise InputError(f"--clusters {clusters!r}: expected cluster numbers separated by commas, e.g. 3,5,17") from None
    return sorted({int(c) for c in clusters})


def _read_run(run_dir):
    path = os.path.join(run_dir, "run.json")
    try:
        with open(path, encoding="utf-8") as handle:
            run = json.load(handle)
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror}); is {run_dir} a finished 'autoencoder3d train' run?") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(run, dict) or not isinstance(run.get("inputs"), dict):
        raise InputError(f"{path}: has no 'inputs' section")
    return run


def _resolve(run_dir, path):
    if not path:
        return None
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(run_dir, path)


def _particle_records(path):
    """uuid -> record dict of a published subvolume pickle (volumes are not kept)."""
    from .io import load_pickle

    d = load_pickle(path)
    if not isinstance(d, dict) or not isinstance(d.get("vs"), dict):
        raise InputError(f"{path}: not a subvolume pickle (expected a dict with 'v_siz' and 'vs')")
    n = int(np.asarray(d.get("v_siz", [0])).ravel()[0])
    out = {}
    for key, rec in d["vs"].items():
        if isinstance(rec, dict) and rec.get("v") is not None:
            out[str(key)] = {k: v for k, v in rec.items() if k != "v"}
    return out, n


def _center(rec):
    c = rec.get("center")
    if c is None:
        return None
    c = np.asarray(c, dtype=float).ravel()
    return c if c.shape == (3,) and np.all(np.isfinite(c)) else None


def export_run(run_dir, *, formats=FORMATS, clusters=None, tomogram=None, tomo_name=None, log=print):
    """Write the cluster centres and particle lists of a finished run (see the module docstring).

    Args:
        run_dir: the run folder of ``autoencoder3d train``.
        formats: any of ``'mrc'``, ``'star'``, ``'csv'``.
        clusters: cluster ids (list or ``'3,5,17'``) to export alone, or None for all.
        tomogram: the tomogram file, when ``run.json`` names none or it has moved;
            needed for RELION 5 coordinates (its size) and the voxel size.
        tomo_name: name for ``rlnTomoName`` / ``rlnMicrographName`` (default: the tomogram's file name).
        log: function called with one line per note (``None`` for silence).

    Returns:
        dict format -> list of written paths, plus ``'notes'``: what was skipped and why.

    Raises:
        InputError: missing or unreadable run files, unknown formats or clusters.
    """
    from .coords import particle_tables, write_csv, write_star
    from .io import load_pickle, read_tomogram, write_mrc

    run_dir = os.fspath(run_dir)
    formats = [formats] if isinstance(formats, str) else list(formats)
    formats = [f.strip().lower() for item in formats for f in item.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"--format {','.join(unknown)}: unknown; choose from {', '.join(FORMATS)}")
    run = _read_run(run_dir)
    inputs = run["inputs"]
    written = {f: [] for f in FORMATS}
    notes = []

    def note(text):
        notes.append(text)
        if log:
            log(text)

    clus_dir = os.path.join(run_dir, "clus-center")
    kmeans = load_pickle(os.path.join(clus_dir, "kmeans.pickle"))
    if not isinstance(kmeans, dict):
        raise InputError(f"{os.path.join(clus_dir, 'kmeans.pickle')}: expected a dict cluster -> list of uuids")
    members = {int(k): [str(u) for u in v] for k, v in kmeans.items()}
    chosen = _parse_clusters(clusters)
    if chosen is not None:
        missing = [c for c in chosen if c not in members]
        if missing:
            raise InputError(
                f"--clusters: {', '.join(map(str, missing))} not in this run (clusters {min(members)}..{max(members)})"
            )
    selected = sorted(members) if chosen is None else chosen

    # Tomogram: its voxel size, size and name.
    tomo_path = tomogram or _resolve(run_dir, inputs.get("tomogram"))
    voxel_size = run.get("voxel_size")
    shape = None
    if tomo_path and os.path.isfile(tomo_path):
        tomo = read_tomogram(tomo_path)
        shape = tomo.shape
        if voxel_size is None or not np.all(np.asarray(voxel_size, dtype=float) > 0):
            voxel_size = tomo.voxel_size
        tomo.close()
    elif tomo_path:
        note(f"{tomo_path}: tomogram not found; RELION 5 centred coordinates need its size and are skipped")
    if voxel_size is not None and not np.all(np.asarray(voxel_size, dtype=float) > 0):
        voxel_size = None
    name = tomo_name or tomo_path

    if "mrc" in formats:
        ccents = load_pickle(os.path.join(clus_dir, "ccents.pickle"))
        if voxel_size is None:
            note("voxel size unknown (no tomogram, or 0 in its header): cluster-centre MRCs carry voxel size 0")
        for cid in selected:
            if cid not in ccents:
                note(f"cluster {cid}: no decoded centre in ccents.pickle")
                continue
            out = os.path.join(clus_dir, "mrc", f"{cid:03d}.mrc")
            write_mrc(out, np.asarray(ccents[cid], dtype=np.float32), voxel_size)
            written["mrc"].append(out)

    if "star" not in formats and "csv" not in formats:
        written["notes"] = notes
        return written

    data_path = _resolve(run_dir, inputs.get("data"))
    rotations, records, box = {}, {}, 0
    pose_path = os.path.join(run_dir, "pose-normalized.pickle")
    if inputs.get("pose") and os.path.isfile(pose_path):
        pose_records, box = _particle_records(pose_path)
        rotations = {u: r for u, r in pose_records.items() if r.get("rotation") is not None}
    elif inputs.get("pose"):
        note(f"{pose_path}: not found; particle lists are written without angles")
    wanted = [u for cid in selected for u in members[cid]]
    if any(u not in rotations or _center(rotations[u]) is None for u in wanted):
        # the input pickle holds the centres (read whole: the published format has no index)
        records, data_box = _particle_records(data_path)
        box = box or data_box

    rows = []  # (cluster, uuid, xyz, angles or None)
    no_center = 0
    for cid in selected:
        for uuid in members[cid]:
            rec = rotations.get(uuid) or records.get(uuid)
            xyz = _center(rec) if rec is not None else None
            if xyz is None and uuid in records:
                xyz = _center(records[uuid])
            if xyz is None:
                no_center += 1
                continue
            angles = None
            if uuid in rotations:
                com = rotations[uuid].get("center_of_mass")
                if com is not None:
                    xyz = xyz + (np.asarray(com, dtype=float) - box // 2)
                angles = relion_angles(rotations[uuid]["rotation"])
            rows.append((cid, uuid, xyz, angles))
    if no_center:
        note(f"{no_center} particles have no centre in {data_path}; left out of the particle lists")

    particle_dir = os.path.join(clus_dir, "particles")
    with_angles = bool(rotations)

    def write_lists(stem, part):
        if not part:
            return
        xyz = np.array([r[2] for r in part])
        cluster = np.array([r[0] for r in part])
        extra = {"rlnClassNumber": cluster + 1}
        if with_angles:
            ang = np.array([r[3] if r[3] is not None else (np.nan,) * 3 for r in part])
            extra.update(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
        extra.update(uuid=[r[1] for r in part], cluster=cluster)
        tables = particle_tables(xyz, name, shape, voxel_size, extra)
        base = os.path.join(particle_dir, stem)
        if "star" in formats:
            write_star(base + ".star", tables["relion4"])
            written["star"].append(base + ".star")
            if tables["relion5"] is not None:
                write_star(base + "_relion5.star", tables["relion5"])
                written["star"].append(base + "_relion5.star")
        if "csv" in formats:
            write_csv(base + ".csv", tables["csv"])
            written["csv"].append(base + ".csv")

    for cid in selected:
        write_lists(f"{cid:03d}", [r for r in rows if r[0] == cid])
    write_lists("all" if chosen is None else "selected", rows)
    if "star" in formats and (shape is None or voxel_size is None):
        note("RELION 5 STAR files skipped: they need the tomogram's size and voxel size")
    written["notes"] = notes
    return written
