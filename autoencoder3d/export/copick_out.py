"""copick write-back: one pick set per chosen cluster and copick run (tomogram), under a new user and session.

- Project: ``--copick-config``, by default the project a store was built from
  (``dataset build --copick``).
- Runs: each particle's tomogram name must be a run of the project (a store
  built from copick uses the run names); otherwise one error line lists the
  unknown names and nothing is written.
- Objects: cluster ``NNN`` (the id of the ``NNN.*`` files) is the object
  ``cluster-NNN``. Objects the project does not declare are added to the
  config's ``pickable_objects`` (the JSON rewritten atomically, other keys
  kept): particles, labels after the largest one there, tab20 colours, radius
  half the box. Declared ones are used as they are (they must be particles).
- User and session: ``--copick-user`` (default ``autoencoder3d``) and
  ``--copick-session`` (default one more than the largest number this user
  has used, 1 at first, as copick's own tools number user sessions); a session that already
  holds picks of these objects by this user is refused, so no export overwrites another.
- Points: location in Angstrom = voxel position (x, y, z from voxel 0's
  centre) x the tomogram's voxel size, as copick places picks; the transform
  is the identity, or with pose normalization the pose rotation ``rm`` with
  no translation. copick's transform maps object space into the tomogram
  (``CopickPoint``), and the pose-normalized volume's voxel ``n // 2 + u`` lies
  at ``position + rm u``, so ``rm`` is that map; copick's RELION writer
  (``copick.util.formats._relion_eulers``) turns it into the same angles as
  ``rlnAngleRot/Tilt/Psi`` of the STAR files. Empty pick sets are not written.
- Concurrency: the export holds a lock on the project's overlay folder (where
  the picks go; beside the config for a remote overlay) from choosing the
  session to the last pick written, so two exports into one project never
  take the same session or rewrite the config over each other; the second is
  refused with one line naming the first.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from copick.models import CopickRoot

    from ..util.lock import RunFolderLock
    from .many import Particles

DEFAULT_USER = "autoencoder3d"


def object_name(cluster: int) -> str:
    """The copick object of a cluster: ``cluster-003``."""
    return f"cluster-{int(cluster):03d}"


def _check_name(value, option):
    from ..data.sources.copick import import_copick

    import_copick()
    from copick.util.escape import sanitize_name

    try:
        clean = sanitize_name(str(value), suppress_warnings=True)
    except ValueError:
        clean = None
    if clean != str(value):
        raise InputError(f"{option} {value!r}: copick ids allow no spaces, underscores or any of <>:\"/\\|?*")


def source_config(store: str | os.PathLike | None, note: Callable[[str], object]) -> str | None:
    """The copick config a store was built from (``dataset build --copick``), or None (also for no store)."""
    from ..data.store import read_manifest

    source = ((read_manifest(store) if store else {}).get("sources") or {}).get("source") or {}
    config = source.get("config") if source.get("kind") == "copick" else None
    if config:
        note(f"{config}: the copick project the data set was built from receives the picks")
    return config


def check_copick_options(config: str | os.PathLike | None, user: str | None, session: str | int | None) -> None:
    """The options of ``--format copick``, checked before anything is written."""
    if not config:
        raise InputError("--format copick: give the project's config with --copick-config CONFIG")
    if not os.path.isfile(config):
        raise InputError(f"{config}: copick config not found")
    _check_name(user or DEFAULT_USER, "--copick-user")
    if session is not None:
        _check_name(session, "--copick-session")


def _open(config):
    from ..data.sources.copick import open_project

    return open_project(config)


def _points_by_run(particles, name_of, config):
    """{(copick run, cluster): (positions in Angstrom, transforms)}; InputError for unknown voxel sizes."""
    by_tomogram = {}
    for i, tomogram in enumerate(particles.tomogram):
        by_tomogram.setdefault(tomogram, []).append(i)
    grouped = {}
    for tomogram, rows in by_tomogram.items():
        run, voxel_size = name_of[tomogram]
        if voxel_size is None:
            raise InputError(f"{config}: tomogram {run}: voxel size unknown, so its picks cannot be placed in Angstrom")
        rows = np.array(rows)
        transforms = np.tile(np.eye(4), (len(rows), 1, 1))
        posed = np.all(np.isfinite(particles.rotation[rows].reshape(-1, 9)), axis=1)
        transforms[posed, :3, :3] = particles.rotation[rows][posed]
        positions = particles.xyz[rows] * np.asarray(voxel_size, dtype=float)
        for cluster in np.unique(particles.cluster[rows]):
            mine = particles.cluster[rows] == cluster
            grouped[(run, int(cluster))] = (positions[mine], transforms[mine])
    return grouped


def _check_runs(root, wanted, config):
    have = {run.name for run in root.runs}
    unknown = sorted(set(wanted) - have)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise InputError(f"{config}: the project has no run named {shown}; the data set's tomogram names must be its run names")


def _session(root, user, session, objects, config):
    """The session id to write: the one given (checked unused for these objects) or the next free number."""
    used = {}
    for run in root.runs:
        for picks in run.get_picks(user_id=user):
            used.setdefault(picks.session_id, []).append((run.name, picks.pickable_object_name))
    if session is None:
        numbers = [int(s) for s in used if s.isdigit()]
        return str(max(numbers + [0]) + 1)
    clash = [(run, obj) for run, obj in used.get(str(session), []) if obj in objects]
    if clash:
        raise InputError(f"{config}: user {user} already has picks in session {session} (e.g. {clash[0][1]} in run "
                         f"{clash[0][0]}); choose another --copick-session or leave it out for a new one")
    return str(session)


def _add_objects(config, root, objects, radius):
    """Declare the missing objects in the config (atomically); returns the names added."""
    from matplotlib import colormaps

    from ..util.atomic import atomic_open

    declared = {o.name: o for o in root.config.pickable_objects}
    for name in objects:
        if name in declared and not declared[name].is_particle:
            raise InputError(f"{config}: object {name} is declared as a segmentation (is_particle false); picks need a particle")
    missing = [name for name in objects if name not in declared]
    if not missing:
        return []
    with open(config, encoding="utf-8") as handle:
        data = json.load(handle)
    labels = [int(o.label) for o in root.config.pickable_objects if o.label is not None]
    next_label = max(labels + [0]) + 1
    palette = colormaps["tab20"]
    for i, name in enumerate(missing):
        cluster = int(name.split("-")[1])
        colour = [int(round(255 * c)) for c in palette(cluster % 20)[:3]] + [255]
        entry = {"name": name, "is_particle": True, "label": next_label + i, "color": colour}
        if radius:
            entry["radius"] = float(radius)
        data.setdefault("pickable_objects", []).append(entry)
    with atomic_open(config, "w") as handle:
        json.dump(data, handle, indent=4)
    return missing


def write_copick(config: str | os.PathLike, particles: Particles, name_of: Mapping[str | None, tuple[str, np.ndarray | None]],
                 selected: Sequence[int], *, user: str | None = None, session: str | int | None = None,
                 radius: float | None = None, note: Callable[[str], object] = print, lock: bool = True) -> list[str]:
    """Write the particles as copick picks (see the module docstring); returns the written pick files.

    Args:
        particles: :class:`~.many.Particles` of the chosen clusters.
        name_of: the particles' tomogram -> (copick run name, voxel size in Angstrom or None).
        selected: the chosen cluster ids.
        radius: the objects' radius in Angstrom for newly declared objects (or None).
        lock: hold the project's lock (:func:`project_lock`) while writing; False when the caller holds it.
    """
    user = user or DEFAULT_USER
    check_copick_options(config, user, session)
    with project_lock(config) if lock else contextlib.nullcontext():
        return _write_locked(config, particles, name_of, selected, user, session, radius, note)


def project_lock(config: str | os.PathLike) -> RunFolderLock:
    """The lock of a copick project's picks: a :class:`~autoencoder3d.util.lock.RunFolderLock` on its overlay folder."""
    from ..util.lock import RunFolderLock

    return RunFolderLock(overlay_folder(_open(config), config), what="this copick project's picks", advice="wait for it to finish")


def overlay_folder(root: CopickRoot, config: str | os.PathLike) -> str:
    """The local folder that receives the project's picks (its overlay), or the config's folder for a remote overlay."""
    overlay = str(getattr(root.config, "overlay_root", None) or "")
    for prefix in ("local://", "file://"):
        if overlay.startswith(prefix):
            return overlay[len(prefix):]
    if overlay and "://" not in overlay:
        return overlay
    return os.path.dirname(os.path.abspath(config))


def _write_locked(config, particles, name_of, selected, user, session, radius, note):
    root = _open(config)  # read again under the lock: an export that just ended may have added sessions or objects
    points = _points_by_run(particles, name_of, config)
    _check_runs(root, {run for run, _ in points}, config)
    objects = [object_name(c) for c in selected]
    session = _session(root, user, session, objects, config)
    added = _add_objects(config, root, objects, radius)
    if added:
        note(f"{config}: declared {len(added)} new pickable objects ({added[0]} .. {added[-1]})")
        root = _open(config)
    runs = {run.name: run for run in root.runs}
    written = []
    for (run, cluster), (positions, transforms) in sorted(points.items()):
        try:
            picks = runs[run].new_picks(object_name(cluster), session_id=session, user_id=user)
            picks.from_numpy(positions, transforms)
        except OSError as err:
            raise InputError(f"{config}: cannot write the picks of run {run} ({err}); {len(written)} pick sets of "
                             f"session {session} were written before") from None
        written.append(getattr(picks, "path", f"{run}/{object_name(cluster)}"))
    note(f"{config}: {len(written)} pick sets by user {user}, session {session}, in {len({r for r, _ in points})} runs")
    return written
