"""Building a store from many tomograms: one part per tomogram, in parallel, resumable.

Each tomogram is one job (:mod:`.sources`): a worker process opens the
tomogram (memory-mapped MRC, or a copick OME-zarr read chunk by chunk), picks
its particles if asked, cuts the boxes exactly as ``autoencoder3d extract``
does, pose-normalizes them exactly as ``autoencoder3d train ... True`` does
(against that tomogram), and writes them with a
:class:`~autoencoder3d.data.store.store.PartWriter`, ``block`` subvolumes at a
time, so a worker never holds more than one block of a tomogram's subvolumes.

Pose normalization needs two numbers of the whole tomogram's set before the
first subvolume is normalized: the largest (polarity-signed) voxel value of all
its boxes, which sets the mass, and the tomogram's mean, which fills the
outside. A first pass over the boxes finds the first (and the boxes that would
have no mass, which the published path drops), so the result equals
pose-normalizing the tomogram's extracted pickle.

A build that stops (killed, an error, Ctrl-C, SIGTERM) leaves complete parts;
the next build with the same inputs and settings skips them and removes the
temporary folder of an unfinished one. Each part records what it was cut from
(its rows and a fingerprint of its tomogram: size, modification time, header
and a sample of the content); a part whose tomogram or rows changed since is
cut again. One build at a time writes a store (a lock file in it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...box import check_box_option
from ...errors import InputError
from ...prep.contrast import DEFAULT_POLARITY
from ...util.lock import RunFolderLock
from ..sources.jobs import default_uuids, jobs_fingerprint
from ..sources.openers import job_origin, open_job_tomogram
from .store import PartWriter, create_store, finish_store, is_fresh, is_store, mark_unfinished, part_done, part_origin, remove_unfinished_parts, store_out

if TYPE_CHECKING:
    from ..sources.jobs import TomogramJob

log = logging.getLogger("autoencoder3d")


@dataclass
class BuildOptions:
    """Settings of ``autoencoder3d dataset build`` (the defaults are the command's).

    ``pick`` (for jobs without centres): dict with ``sigma1`` ((value, unit) as
    :func:`~autoencoder3d.prep.pick.parse_sigma` gives), ``threshold`` and ``max_particles``.
    """

    box: int = 32
    pose: bool = False
    polarity: str = DEFAULT_POLARITY
    smooth_sigma: float = 2.0
    dtype: str = "float32"
    partial: str = "drop"
    workers: int = 1
    block: int = 256
    pick: dict = None


def _settings_record(jobs, options, source):
    """What a rerun must match besides the store's own settings (inputs and extraction options)."""
    record = {"source": source or {}, "jobs": jobs_fingerprint(jobs), "n_tomograms": len(jobs),
              "partial": options.partial, "smooth_sigma": float(options.smooth_sigma) if options.pose else None,
              "pick": options.pick}
    return json.loads(json.dumps(record))


def _open_store(out, jobs, options, source):
    record = _settings_record(jobs, options, source)
    manifest = create_store(out, (options.box,) * 3, dtype=options.dtype, pose=options.pose,
                            polarity=options.polarity, sources=record)
    if manifest.get("sources") != record:
        before = manifest.get("sources") or {}
        differ = [k for k in record if before.get(k) != record[k]]
        raise InputError(f"{out}: a store built from other inputs or settings ({', '.join(differ) or 'sources'} differ); "
                         "choose a new name or delete it")
    for path in remove_unfinished_parts(out):
        log.info("removed %s, left by an interrupted build", path)
    return manifest


def _parts_to_cut(out, jobs):
    """Parts not there yet, and parts cut from other rows or from a tomogram that changed since."""
    todo = []
    for index, job in enumerate(jobs):
        if not part_done(out, index):
            todo.append(index)
            continue
        recorded, current = part_origin(out, index), job_origin(job)
        if recorded == current:
            continue
        if recorded is None:
            why = "its part does not record what it was cut from"
        elif recorded.get("rows") != current["rows"]:
            why = "its particles differ from those its part was cut from"
        else:
            why = "the tomogram changed (size, modification time or content) since its part was cut"
        log.warning("%s: %s; cutting it again", job.name, why)
        todo.append(index)
    return todo


class NothingExtracted(InputError):
    """No tomogram gave a subvolume: the store is empty."""


def build_dataset(out: str | os.PathLike, jobs: Sequence[TomogramJob], options: BuildOptions | None = None, *,
                  source: dict | None = None) -> dict:
    """Extract every job's subvolumes into the store ``out`` and finish it.

    Args:
        out: the store folder (created, or resumed when made with the same settings).
        jobs: list of :class:`~autoencoder3d.data.sources.jobs.TomogramJob`, in part order.
        options: :class:`BuildOptions`.
        source: dict describing the inputs (kept in the manifest, compared on a rerun).

    Returns:
        the finished manifest.
    """
    options = options or BuildOptions()
    out = store_out(out)
    check_box_option(options.box)
    if not is_fresh(out) and not is_store(out):  # before the lock file goes into a folder that is no store
        raise InputError(f"{out}: exists and is not a subvolume store; choose a new name")
    created = not os.path.lexists(out)
    try:
        with RunFolderLock(out, what="store", elsewhere="OUT"):
            return _build_locked(out, jobs, options, source)
    except NothingExtracted:
        if created:  # an empty store would only stand in the way of the next build under this name
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _build_locked(out, jobs, options, source):
    manifest = _open_store(out, jobs, options, source)
    todo = _parts_to_cut(out, jobs)
    if todo and manifest.get("complete"):
        mark_unfinished(out)  # readers must not see a part while it is cut again
    if len(todo) < len(jobs):
        log.info("%s: %d of %d tomograms already extracted; extracting the other %d", out, len(jobs) - len(todo), len(jobs), len(todo))
    started = time.perf_counter()
    workers = max(1, min(int(options.workers or 1), len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        for k, i in enumerate(todo, 1):
            _report(extract_part(out, i, jobs[i], options, threads), k, len(todo))
    else:
        _run_parallel(out, jobs, todo, options, workers, threads)
    manifest = finish_store(out, len(jobs))
    if manifest["n_subvolumes"] == 0:
        raise NothingExtracted(f"{out}: no subvolume was extracted from any of the {len(jobs)} tomograms (every centre is outside "
                               "its tomogram or too close to its edge for --box); check that the coordinates are in voxels of "
                               "these tomograms, or give --partial fill")
    manifest["build_seconds"] = time.perf_counter() - started
    return manifest


def _run_parallel(out, jobs, todo, options, workers, threads):
    from .workers import run_parallel

    level = logging.getLogger("autoencoder3d").getEffectiveLevel()
    finished = []

    def report(_, summary):
        finished.append(summary)
        _report(summary, len(finished), len(todo))

    try:
        run_parallel(extract_part, [(out, i, jobs[i], options, threads) for i in todo], workers, report,
                     names=[f"tomogram {jobs[i].name}" for i in todo], initializer=_init_worker, initargs=(level,))
    except BaseException:
        remove_unfinished_parts(out)  # what the terminated workers were writing
        raise


def _init_worker(level):
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("autoencoder3d: %(message)s"))
    logger = logging.getLogger("autoencoder3d")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _report(summary, k, total):
    log.info("%s: %d subvolumes (%d dropped) in %.1f s [%d/%d]", summary["name"], summary["n"],
             summary["dropped"], summary["seconds"], k, total)


def extract_part(out: str | os.PathLike, index: int, job: TomogramJob, options: BuildOptions, threads: int = 1) -> dict[str, object]:
    """Write part ``index`` of the store ``out``: the job's tomogram's subvolumes.

    Returns:
        a summary dict (name, n, dropped, seconds, polarity).
    """
    from ...prep.pick import center_voxels

    started = time.perf_counter()
    origin = job_origin(job)  # before reading: a tomogram changed during the cut is cut again next time
    tomogram = open_job_tomogram(job)
    try:
        polarity = options.polarity
        centers, uuids, polarity = _centers(job, tomogram, options, polarity, threads)
        idx = center_voxels(centers, tomogram.shape)
        keep, counts = _kept(idx, centers, tomogram.shape, options)
        rows = np.flatnonzero(keep)
        if options.pose or polarity == "auto":
            polarity = _polarity(tomogram, idx, rows, options, polarity, job.name)
        pose = _pose_pass(tomogram, idx, rows, options, polarity, job.name) if options.pose else None
        if pose is not None:
            rows = pose["rows"]
        info = {"name": job.name, "path": job.path, "voxel_size": [float(v) for v in tomogram.voxel_size],
                "shape": list(tomogram.shape), **job.info, "polarity": polarity, "dropped": counts}
        from .store import read_manifest
        from .trust import subvolumes_per_chunk

        per_chunk = subvolumes_per_chunk(read_manifest(out))
        block = max(1, options.block // per_chunk) * per_chunk  # whole chunks at a time
        with PartWriter(out, index, len(rows), info, v_siz=(options.box,) * 3, dtype=options.dtype, origin=origin) as part:
            for lo in range(0, len(rows), block):
                chosen = rows[lo : lo + block]
                volumes = _cut(tomogram, idx[chosen], options)
                rotations = centers_of_mass = None
                if pose is not None:
                    volumes, rotations, centers_of_mass = _normalize(tomogram, idx[chosen], volumes, pose, options, threads)
                part.write(lo, volumes, [uuids[i] for i in chosen], centers[chosen], rotations, centers_of_mass)
    finally:
        tomogram.close()
    n_dropped = len(centers) - len(rows)
    return {"name": job.name, "n": int(len(rows)), "dropped": int(n_dropped), "seconds": time.perf_counter() - started,
            "polarity": polarity}


def _centers(job, tomogram, options, polarity, threads):
    """(centres, uuids, polarity) of the job: given, or picked in the tomogram."""
    if job.centers is not None:
        centers = np.asarray(job.centers, dtype=float).reshape(-1, 3)
        uuids = list(job.uuids) if job.uuids is not None else default_uuids(job.name, len(centers))
        return centers, uuids, polarity
    from ...prep.contrast import resolve_polarity
    from ...prep.pick import dog_pick, sigma_in_voxels

    pick = options.pick or {}
    value, unit = pick.get("sigma1", (7.0, "nm"))
    sigma1 = sigma_in_voxels(value, unit, tomogram.voxel_size, tomogram.path, tomogram.shape)
    polarity, _ = resolve_polarity(polarity, tomogram.data, tomogram.path)
    picks = dog_pick(tomogram.data, sigma1, threshold=pick.get("threshold", 3.0), dark=polarity == "dark", box=options.box,
                     max_particles=pick.get("max_particles"), workers=threads)
    if len(picks.centers) == 0:
        log.warning("%s: no particles picked (%d peaks, %d too close to the border)", tomogram.path, picks.n_peaks, picks.n_border)
    centers = picks.centers.astype(float).reshape(-1, 3)
    return centers, default_uuids(job.name, len(centers)), polarity


def _kept(idx, centers, shape, options):
    """Which centres give a box (as ``extract --partial``), and how many were dropped and why."""
    from ...formats.coords import inside
    from ...prep.pick import box_fits

    in_tomo = inside(centers, shape) if len(centers) else np.zeros(0, bool)
    fits = box_fits(idx, shape, options.box) if len(centers) else np.zeros(0, bool)
    keep = in_tomo & fits if options.partial == "drop" else in_tomo
    counts = {"outside": int(np.count_nonzero(~in_tomo)), "partial": int(np.count_nonzero(in_tomo & ~fits))}
    return keep, counts


def _cut(tomogram, idx, options):
    """The boxes around ``idx`` exactly as ``autoencoder3d extract`` cuts them (float32)."""
    from ...prep.pick import extract_boxes

    if len(idx) == 0:
        return np.zeros((0,) + (options.box,) * 3, np.float32)
    subvolumes, _ = extract_boxes(tomogram, idx, options.box, partial=options.partial, uuids=[""] * len(idx))
    return subvolumes.volumes


def _polarity(tomogram, idx, rows, options, polarity, name):
    """``polarity``, or the one detected (``auto``) from the boxes the published path would sample."""
    from ...prep.contrast import SAMPLE, resolve_polarity

    if len(rows) == 0:
        return DEFAULT_POLARITY if polarity == "auto" else polarity
    take = max(1, min(len(rows), SAMPLE // options.box**3))
    sample = rows[np.unique(np.linspace(0, len(rows) - 1, take).astype(np.int64))]
    used, _ = resolve_polarity(polarity, _cut(tomogram, idx[sample], options), f"tomogram {name}")
    return used


def _pose_pass(tomogram, idx, rows, options, polarity, name):
    """First pass of pose normalization: the mass's top value, boxes without mass, the fill value."""
    from ...prep.contrast import polarity_sign
    from ...prep.pose import tomogram_mean

    sign = polarity_sign(polarity)
    top, lows, highs = -np.inf, [], []
    for lo in range(0, len(rows), options.block):
        signed = sign * _cut(tomogram, idx[rows[lo : lo + options.block]], options)
        if len(signed):
            top = max(top, float(signed.max()))
            lows.append(signed.min(axis=(1, 2, 3)))
            highs.append(signed.max(axis=(1, 2, 3)))
    if not len(rows):
        return {"rows": rows, "top": 0.0, "fill": 0.0, "polarity": polarity}
    lows, highs = np.concatenate(lows), np.concatenate(highs)
    massless = (lows == top) & (highs == top)
    for i in rows[massless]:
        log.warning("%s: subvolume %d has no mass after inversion (constant); skipped", name, int(i))
    return {"rows": rows[~massless], "top": top, "fill": tomogram_mean(tomogram.data), "polarity": polarity}


def _normalize(tomogram, idx, volumes, pose, options, threads):
    """Pose-normalize one block: (volumes, rotations, centres of mass), as :func:`~autoencoder3d.prep.pose.pose_normalize`."""
    from ...prep.pose import inverted_mass, normalize_one

    def work(k):
        mass = inverted_mass(volumes[k], pose["top"], pose["polarity"])
        return normalize_one(tomogram.data, idx[k].astype(float), mass, options.smooth_sigma, pose["fill"])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(work, range(len(volumes))))
    out = np.stack([r[0] for r in results]) if results else volumes
    return out, np.stack([r[1] for r in results]) if results else None, np.stack([r[2] for r in results]) if results else None

