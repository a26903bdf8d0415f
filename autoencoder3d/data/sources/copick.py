"""Jobs from a copick project, and copick tomograms read like MRC ones.

A copick project (the ``copick`` package) holds runs; each run has picks of
pickable objects (by user and session) and tomograms at voxel spacings, stored
as OME-zarr arrays indexed ``[z, y, x]``. Pick locations are in Angstrom from
the tomogram's corner, voxel ``i`` at ``i * voxel_spacing``; a pick's transform
adds a refinement shift (``CopickPicks.full_positions``). So the voxel centre
is ``full_position / voxel_spacing``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...volume import Tomogram
from .jobs import TomogramJob, check_jobs

if TYPE_CHECKING:
    import zarr
    from copick.models import CopickRoot

log = logging.getLogger("autoencoder3d")


COPICK_EXTRA = 'pip install "autoencoder3d[copick]"'


def import_copick() -> ModuleType:
    """The copick module; an InputError naming the extra that installs it when it is missing."""
    try:
        import copick
    except ImportError:
        raise InputError(
            f"copick is not installed: copick projects need the copick extra ({COPICK_EXTRA}, or pip install -e \".[copick]\" in a checkout)"
        ) from None
    return copick


def open_project(config: str | os.PathLike) -> CopickRoot:
    """The copick root of ``config`` (a copick config JSON)."""
    copick = import_copick()
    config = os.fspath(config)
    if not os.path.isfile(config):
        raise InputError(f"{config}: copick config not found")
    try:
        return copick.from_file(config)
    except Exception as err:  # noqa: BLE001 - pydantic, JSON and fsspec all raise their own kinds
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise InputError(f"{config}: not a readable copick config ({type(err).__name__}: {first})") from None


def _picks_of(run, config, object_name, user, session):
    found = run.get_picks(object_name=object_name, user_id=user, session_id=session)
    if len(found) > 1:
        sessions = ", ".join(sorted(p.session_id for p in found))
        raise InputError(f"{config}: run {run.name} has picks of {object_name} by {user} in several sessions ({sessions}); choose one with --session")
    return found[0] if found else None


def _tomogram_of(run, config, voxel_spacing, tomo_type):
    spacing = run.get_voxel_spacing(voxel_spacing)
    if spacing is None:
        have = ", ".join(f"{v.voxel_size:g}" for v in run.voxel_spacings) or "none"
        raise InputError(f"{config}: run {run.name} has no voxel spacing {voxel_spacing:g} A (it has: {have})")
    tomograms = spacing.get_tomograms(tomo_type)
    if not tomograms:
        have = ", ".join(sorted(t.tomo_type for t in spacing.tomograms)) or "none"
        raise InputError(f"{config}: run {run.name} has no {tomo_type} tomogram at {voxel_spacing:g} A (it has: {have})")
    return spacing


def jobs_from_copick(config: str | os.PathLike, object_name: str, user: str, voxel_spacing: float, tomo_type: str,
                     session: str | None = None) -> list[TomogramJob]:
    """One job per run with picks of ``object_name`` by ``user`` (runs in name order).

    Raises:
        InputError: an unknown object, no picks anywhere, a run whose tomogram is missing.
    """
    config = os.fspath(config)
    root = open_project(config)
    if root.get_object(object_name) is None:
        names = ", ".join(o.name for o in root.config.pickable_objects) or "none"
        raise InputError(f"{config}: no pickable object {object_name} (the project has: {names})")
    jobs = []
    for run in sorted(root.runs, key=lambda r: r.name):
        picks = _picks_of(run, config, object_name, user, session)
        if picks is None:
            continue
        spacing = _tomogram_of(run, config, voxel_spacing, tomo_type)
        centers = np.asarray(picks.full_positions(), dtype=float).reshape(-1, 3) / float(spacing.voxel_size)
        if len(centers) == 0:
            log.warning("%s: run %s has an empty pick set of %s by %s; skipped", config, run.name, object_name, user)
            continue
        opener = {"kind": "copick", "config": os.path.abspath(config), "run": run.name,
                  "voxel_spacing": float(spacing.voxel_size), "tomo_type": tomo_type}
        info = {"copick": {"run": run.name, "object": object_name, "user": user, "session": picks.session_id,
                           "voxel_spacing": float(spacing.voxel_size), "tomo_type": tomo_type}}
        jobs.append(TomogramJob(run.name, opener, centers, None, info))
    if not jobs:
        who = f"{user}" + (f" (session {session})" if session else "")
        raise InputError(f"{config}: no run has picks of {object_name} by {who}")
    return check_jobs(jobs, config)


class ZarrXYZ:
    """A ``[z, y, x]`` zarr array read as a ``[x, y, z]`` one: slicing reads only the chunks it needs.

    Decoded chunks are kept in a small least-recently-used cache (``cache_bytes``),
    since neighbouring boxes share chunks.
    """

    ndim = 3

    def __init__(self, array: zarr.Array, cache_bytes: int = 256 * 2**20) -> None:
        self._array = array
        self.shape = tuple(int(s) for s in array.shape[::-1])
        self.dtype = np.dtype(array.dtype)
        self._chunks = tuple(int(c) for c in array.chunks)
        self._cache = OrderedDict()
        self._limit = max(1, cache_bytes // max(1, int(np.prod(self._chunks)) * self.dtype.itemsize))

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(not isinstance(k, slice) for k in key) or len(key) > 3:
            raise TypeError("a copick tomogram is read by slices only")
        key = key + (slice(None),) * (3 - len(key))
        bounds = [k.indices(n) for k, n in zip(key, self.shape)]
        if any(step != 1 for _, _, step in bounds):
            raise TypeError("a copick tomogram is read by contiguous slices only")
        lo = [max(0, a) for a, _, _ in bounds]
        hi = [max(a, b) for (_, b, _), a in zip(bounds, lo)]
        return self._read_zyx(lo[::-1], hi[::-1]).transpose(2, 1, 0)

    def _read_zyx(self, lo, hi):
        out = np.empty([b - a for a, b in zip(lo, hi)], dtype=self.dtype)
        if out.size == 0:
            return out
        first = [a // c for a, c in zip(lo, self._chunks)]
        last = [(b - 1) // c for b, c in zip(hi, self._chunks)]
        for i in range(first[0], last[0] + 1):
            for j in range(first[1], last[1] + 1):
                for k in range(first[2], last[2] + 1):
                    self._copy_chunk((i, j, k), lo, hi, out)
        return out

    def _copy_chunk(self, index, lo, hi, out):
        start = [i * c for i, c in zip(index, self._chunks)]
        chunk = self._chunk(index, start)
        a = [max(s, l) for s, l in zip(start, lo)]
        b = [min(s + n, h) for s, n, h in zip(start, chunk.shape, hi)]
        out[tuple(slice(x - l, y - l) for x, y, l in zip(a, b, lo))] = chunk[tuple(slice(x - s, y - s) for x, y, s in zip(a, b, start))]

    def _chunk(self, index, start):
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        region = tuple(slice(s, s + c) for s, c in zip(start, self._chunks))
        chunk = np.asarray(self._array[region])
        self._cache[index] = chunk
        if len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return chunk


def open_copick_tomogram(opener: dict) -> Tomogram:
    """The copick tomogram an opener names, as a :class:`~autoencoder3d.volume.Tomogram` indexed [x, y, z]."""
    import zarr

    config = opener["config"]
    run = open_project(config).get_run(opener["run"])
    if run is None:
        raise InputError(f"{config}: run {opener['run']} not found")
    spacing = _tomogram_of(run, config, opener["voxel_spacing"], opener["tomo_type"])
    tomogram = spacing.get_tomograms(opener["tomo_type"])[0]
    where = f"{config}: run {opener['run']}, {opener['tomo_type']} at {opener['voxel_spacing']:g} A"
    try:
        array = zarr.open(tomogram.zarr(), mode="r")["0"]
    except Exception as err:  # zarr and fsspec raise many kinds
        raise InputError(f"{where}: unreadable OME-zarr tomogram ({type(err).__name__}: {err})") from None
    if array.ndim != 3:
        raise InputError(f"{where}: the tomogram has {array.ndim} dimensions, not 3")
    size = float(spacing.voxel_size)
    return Tomogram(data=ZarrXYZ(array), voxel_size=(size, size, size), path=where)


def copick_fingerprint(opener: dict, blocks: int = 8, side: int = 4) -> dict[str, object]:
    """Shape, dtype and a SHA-256 of ``blocks`` small cubes spread along the diagonal of a copick tomogram."""
    import hashlib

    tomogram = open_copick_tomogram(opener)
    data, shape = tomogram.data, tomogram.data.shape
    digest = hashlib.sha256(str(data.dtype).encode())
    for t in np.linspace(0.0, 1.0, blocks):
        lo = [int(t * max(0, n - side)) for n in shape]
        digest.update(np.ascontiguousarray(data[tuple(slice(a, a + side) for a in lo)]).tobytes())
    tomogram.close()
    return {"shape": list(shape), "sample": digest.hexdigest()[:32]}
