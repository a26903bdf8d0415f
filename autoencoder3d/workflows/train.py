"""The whole ``autoencoder3d train`` / ``cluster`` / ``pose`` jobs, as functions.

``run_train`` does what the published ``autoencoder.py`` did: load the
subvolumes, optionally pose-normalize them, train the autoencoder (or reuse a
saved one), k-means the encodings, decode the centres and write the
``model/`` and ``clus-center/`` outputs, plus a loss curve and ``run.json``.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..box import check_subvolume_shape
from ..clustering.merge import check_merge
from ..data.open import data_polarity, open_data
from ..errors import InputError
from ..formats.mrc import read_tomogram
from ..formats.subvolume_pickle import save_pickle, save_subvolumes
from ..prep.contrast import DEFAULT_POLARITY
from ..runs.decisions import decide_preparation
from ..runs.fingerprint import fingerprint
from ..runs.folder import BASELINE_MEMBERS, RunFolder, remove_leftovers
from ..runs.options import TrainOptions
from ..util.cpu_kernels import kernel_record
from ..util.lock import RunFolderLock
from .obtain_models import code_settings, obtain_models  # noqa: F401 - code_settings is public here too

if TYPE_CHECKING:
    import keras

    from ..clustering.kmeans import Clustering
    from ..volume import SubvolumeSet

log = logging.getLogger("autoencoder3d")


def _check_n_clusters(path, n_samples, n_clusters):
    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise InputError(f"number of clusters must be a positive integer, got {n_clusters!r}")
    if n_samples < n_clusters:
        raise InputError(f"{path}: {n_samples} usable subvolumes, fewer than the {n_clusters} clusters asked for")


MRC_SUFFIXES = (".mrc", ".rec", ".st", ".map", ".ali", ".mrcs")


def _check_not_a_tomogram(data, tomogram):
    """Refuse an MRC volume given as DATA, saying that DATA and TOMOGRAM look swapped."""
    try:
        with open(data, "rb") as handle:
            head = handle.read(212)
    except OSError:
        return  # loading names the problem
    if head[208:212] == b"MAP " or (str(data).lower().endswith(MRC_SUFFIXES) and not head.startswith(b"\x80")):
        hint = "DATA and TOMOGRAM look swapped" if tomogram else "DATA must be the subvolume pickle"
        raise InputError(f"{data}: is an MRC volume, not a subvolume pickle; {hint} (the order is DATA TOMOGRAM POSE N_CLUSTERS)")


def prepare_subvolumes(data: str | os.PathLike, tomogram: str | os.PathLike | None = None, pose: bool = False, *, sigma: float = 2.0,
                       workers: int | None = None, progress: bool = True, timings: dict[str, float] | None = None,
                       polarity: str | None = DEFAULT_POLARITY, contrast: dict[str, Any] | None = None,
                       ) -> tuple[SubvolumeSet, list[float] | None]:
    """Load the subvolume pickle and, if asked, pose-normalize it against the tomogram.

    ``polarity`` is ``"dark"``, ``"bright"`` or ``"auto"`` (see
    :mod:`autoencoder3d.prep.contrast`); what was used goes into ``contrast`` (a dict).

    Returns:
        (subvolumes, voxel_size): a :class:`~autoencoder3d.volume.SubvolumeSet`, and the
        tomogram's voxel size (or None without a tomogram).
    """
    from ..prep.contrast import decide_polarity, resolve_polarity

    timings = {} if timings is None else timings
    _check_not_a_tomogram(data, tomogram)
    started = time.perf_counter()
    subvolumes = open_data(data)
    timings["load_s"] = time.perf_counter() - started
    if not subvolumes.in_memory:
        _check_store(data, subvolumes, tomogram, pose)
    polarity = decide_polarity(polarity, data_polarity(data, subvolumes), data)
    polarity, record = resolve_polarity(polarity, subvolumes.volumes, data)
    if contrast is not None:
        contrast.update(record)
    if not subvolumes.in_memory:
        return subvolumes, (list(subvolumes.voxel_size) if subvolumes.voxel_size else None)
    if pose and tomogram is None:
        raise InputError(f"{data}: pose normalization needs a tomogram, but TOMOGRAM is None")
    voxel_size = None
    if tomogram is not None:
        tomo = read_tomogram(tomogram)
        voxel_size = list(tomo.voxel_size)
        subvolumes.voxel_size = tuple(voxel_size)
        if pose:
            from ..prep.pose import pose_normalize

            started = time.perf_counter()
            subvolumes = pose_normalize(subvolumes, tomo, sigma=sigma, workers=workers, progress=progress, polarity=polarity)
            timings["pose_s"] = time.perf_counter() - started
        tomo.close()
    return subvolumes, voxel_size


def _check_store(data, subvolumes, tomogram, pose):
    """A store is pose-normalized (or not) when it is built, tomogram by tomogram; TOMOGRAM is not used."""
    manifest = subvolumes.manifest
    if pose and not manifest.get("pose_normalized"):
        raise InputError(f"{data}: POSE is True but this data set was built without --pose; "
                         "build it with 'autoencoder3d dataset build --pose' (each tomogram's subvolumes are normalized against it)")
    if tomogram is not None:
        log.info("%s: a data set of %d tomograms; TOMOGRAM %s is not used (each subvolume's tomogram is in the data set)",
                 data, len(manifest["parts"]), tomogram)


def run_pose(data: str | os.PathLike, tomogram: str | os.PathLike, out_pickle: str | os.PathLike, *, sigma: float = 2.0, workers: int | None = None,
             progress: bool = True, polarity: str | None = None) -> SubvolumeSet:
    """Pose-normalize a subvolume pickle and write the result in the same format.

    Each entry keeps its uuid and centre and gains ``'rotation'`` (3x3) and
    ``'center_of_mass'``; the pickle records the polarity used, which later commands read.
    """
    contrast = {}
    subvolumes, _ = prepare_subvolumes(data, tomogram, True, sigma=sigma, workers=workers, progress=progress, polarity=polarity,
                                       contrast=contrast)
    subvolumes.prepared = {"polarity": contrast["used"]}
    save_subvolumes(out_pickle, subvolumes)
    return subvolumes


def _rotations(subvolumes, options):
    """Pose rotations for the missing-wedge loss (None when it is not used)."""
    from ..network.objective import rotations_of

    return rotations_of(subvolumes) if options.loss == "wedge" else None


def cluster_and_write(subvolumes: SubvolumeSet, encoder: keras.Model, decoder: keras.Model, n_clusters: int, out_dir: str | os.PathLike, *,
                      n_init: int = 100, seed: int | None = None, batch_size: int = 128, timings: dict[str, float] | None = None,
                      code_stats: dict[str, Any] | None = None, kmeans: str = "auto", fingerprint: dict[str, Any] | None = None,
                      merge: list[list[int]] | None = None, baseline: bool = True, comparison: dict[str, Any] | None = None,
                      flips: str = "off") -> tuple[Clustering, np.ndarray]:
    """Encode, k-means, merge, decode the centres; write the ``clus-center`` pickles and montages.

    ``merge``: groups of cluster ids merged after k-means (:mod:`autoencoder3d.clustering.merge`).
    ``baseline``: also cluster by PCA + k-means (:mod:`autoencoder3d.clustering.baseline`).
    ``flips``: how the four proper flips are treated (:data:`~autoencoder3d.clustering.flip_kmeans.FLIP_MODES`);
    the returned codes are those the clusters are made of (averaged, or each in its matched flip).
    Each cluster's stability (:mod:`autoencoder3d.clustering.stability`) is saved with the encodings.
    What run.json records of the merge, the baseline and the duplicate centres
    (:mod:`autoencoder3d.clustering.duplicates`) goes into ``comparison`` (a dict).
    What other commands wrote into the old ``clus-center`` is kept when the clusters are the same
    (and ``fingerprint``, when given, is run.json's), else moved aside with the old clustering
    (:mod:`autoencoder3d.runs.previous`).
    """
    from ..clustering.flip_kmeans import cluster_flipped_encodings, flips_record
    from ..clustering.kmeans import write_cluster_pickles
    from ..clustering.merge import merge_clusters
    from ..clustering.stability import cluster_stability
    from ..network.codes import CodesCollapsed, collapse_message, describe_codes, is_collapsed
    from ..network.train import decode, encode
    from ..prep.flips import PROPER_FLIPS
    from ..report.figures import write_montages
    from ..report.page import save_encodings
    from ..runs.previous import keep_or_move
    from ..util.atomic import atomic_directory

    timings = {} if timings is None else timings
    code_stats = {} if code_stats is None else code_stats
    comparison = {} if comparison is None else comparison
    started = time.perf_counter()
    # every block of subvolumes is read once and encoded in each flip (only the identity when off)
    flipped_codes = encode(encoder, subvolumes.volumes, batch_size, flips=PROPER_FLIPS[:1] if flips == "off" else PROPER_FLIPS)
    timings["encode_s"] = time.perf_counter() - started
    code_stats.update(describe_codes(flipped_codes[0], n_clusters))
    if is_collapsed(code_stats):  # never write one cluster as if it were a clustering
        raise CodesCollapsed(collapse_message(code_stats, len(flipped_codes[0])))
    started = time.perf_counter()
    clustering, codes, matched = cluster_flipped_encodings(flipped_codes, subvolumes.uuids, n_clusters, flips, n_init=n_init,
                                                           seed=seed, method=kmeans)
    timings["kmeans_s"] = time.perf_counter() - started
    if flips != "off":
        comparison["flips"] = flips_record(flips, matched)
    unmerged = clustering
    clustering = merge_clusters(clustering, merge or [], codes)
    started = time.perf_counter()
    # by the run's own clusterer, on the codes it clustered (those of the four flips are not kept)
    stability = cluster_stability(flipped_codes, clustering.labels, flips, seed=seed)
    timings["stability_s"] = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode(decoder, clustering.centers, batch_size)
    by_id = {k: decoded[k] for k in clustering.members}
    comparison.update(_compare(subvolumes, encoder, codes if flips == "off" else flipped_codes, clustering, unmerged, by_id, seed,
                               baseline, timings, flips))
    baseline_members = comparison.pop("baseline_members", None)
    # the folder is replaced whole: no centre or figure of an earlier clustering survives, and exports of it
    # stay only while they describe this one
    with atomic_directory(RunFolder(out_dir).clus_dir) as clus_dir:
        write_cluster_pickles(clus_dir, clustering, decoded)
        write_montages(os.path.join(clus_dir, "fig"), by_id, clustering.sizes())
        save_encodings(clus_dir, subvolumes.uuids, codes, clustering.labels, flips=matched if flips == "match" else None,
                       stability=stability)
        if baseline_members is not None:
            save_pickle(os.path.join(clus_dir, BASELINE_MEMBERS), baseline_members)
        keep_or_move(out_dir, clus_dir, fingerprint)
    timings["figures_s"] = time.perf_counter() - started
    return clustering, codes


def _compare(subvolumes, encoder, codes, clustering, unmerged, decoded, seed, baseline, timings, flips):
    """run.json's ``merge``, ``duplicates`` and ``baseline`` (with ``baseline_members`` for the pickle)."""
    from ..clustering.duplicates import duplicates_record
    from ..clustering.merge import merge_record
    from ..network.model import standardization

    out = {}
    if clustering.merged:
        out["merge"] = merge_record(clustering)
    started = time.perf_counter()
    out["duplicates"] = duplicates_record(decoded, clustering.sizes())
    timings["duplicates_s"] = time.perf_counter() - started
    if baseline:
        from ..clustering.baseline import run_baseline

        started = time.perf_counter()
        mean, std = standardization(encoder)
        out["baseline"], out["baseline_members"] = run_baseline(
            subvolumes.volumes, subvolumes.uuids, codes, clustering.labels, sorted(clustering.members), len(unmerged.centers),
            seed=seed, mean=mean, std=std, flips=flips,
        )
        timings["baseline_s"] = time.perf_counter() - started
    return out


def _versions():
    versions = {"autoencoder3d": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("tensorflow", "jax", "keras", "sklearn", "scipy", "mrcfile"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    if "keras" in sys.modules:
        versions["keras_backend"] = sys.modules["keras"].backend.backend()  # tensorflow, jax or torch (KERAS_BACKEND)
    return versions


def _write_run_json(out_dir, record):
    return RunFolder(out_dir).write_record(record)


def run_train(data: str | os.PathLike, tomogram: str | os.PathLike | None, pose: bool, n_clusters: int, out_dir: str | os.PathLike = ".",
              options: TrainOptions | None = None, *, command: str = "train") -> dict[str, Any]:
    """The published training job: ``autoencoder3d train DATA TOMOGRAM POSE N_CLUSTERS``.

    Args:
        data: subvolume pickle (published format).
        tomogram: MRC/REC tomogram, or None (needed when ``pose`` is true).
        pose: pose-normalize the subvolumes first.
        n_clusters: number of k-means clusters.
        out_dir: where ``model/``, ``clus-center/`` and ``run.json`` go.
        options: :class:`TrainOptions` (published defaults when None).
        command: ``"train"`` trains when no saved model exists; ``"cluster"``
            requires a saved model.

    Returns:
        The ``run.json`` record (a dict).
    """
    options = options or TrainOptions()
    check_merge(options.merge or [], n_clusters)  # before any work: ids are those of k-means with N_CLUSTERS
    out_dir = os.path.abspath(out_dir)
    model_dir = RunFolder(out_dir).model_dir
    if command == "cluster":
        from ..network.train import saved_models_exist

        if not saved_models_exist(model_dir):
            raise InputError(f"{model_dir}: no trained autoencoder here; run 'autoencoder3d train' first")
    if options.distribute:
        import keras

        from ..network.data_parallel import check_distribute

        check_distribute(options.distribute, keras.backend.backend())
    if options.distribute == "multiworker":
        from ..network.distribute import is_chief, use_cluster

        cluster = use_cluster(port=options.port)
        if not is_chief(cluster):  # trains alongside the chief, which alone writes (and locks) the run folder
            return _train_as_worker(data, tomogram, pose, n_clusters, out_dir, options, cluster)
    with RunFolderLock(out_dir):
        for path in remove_leftovers(out_dir):
            log.info("removed %s, left by an interrupted write", path)
        record = _run_train_locked(data, tomogram, pose, n_clusters, out_dir, options, command)
    _end_together(options)
    return record


def _end_together(options):
    if options.distribute == "multiworker":
        from ..network.distribute import end_together

        end_together()


def _train_as_worker(data, tomogram, pose, n_clusters, out_dir, options, cluster):
    """A non-chief worker of ``--distribute multiworker``: the chief's checks, then training; nothing in ``out_dir``.

    It resumes from the chief's resume point (read only) and keeps its own
    checkpoints in a temporary folder, removed at the end.

    Returns:
        ``{"worker": "worker 1 of 2", "seed": ..., "training": {...}}``.
    """
    import tempfile

    from ..network.distribute import describe

    decide_preparation(data, options, RunFolder(out_dir).model_dir)
    contrast = {}
    subvolumes, _ = prepare_subvolumes(
        data, tomogram, pose, sigma=options.smooth_sigma, workers=options.workers, progress=False, polarity=options.polarity,
        contrast=contrast,
    )
    options.polarity = contrast["asked"]  # a pickle's recorded polarity, when none was given
    check_subvolume_shape(data, subvolumes.v_siz)
    _check_n_clusters(data, len(subvolumes), n_clusters)
    current = _fingerprint(data, tomogram, pose, subvolumes, options)
    with tempfile.TemporaryDirectory(prefix="autoencoder3d-worker-") as scratch:
        _, info = obtain_models(subvolumes.volumes, RunFolder(out_dir).model_dir, options, {}, current, worker_dir=scratch,
                                 rotations=_rotations(subvolumes, options))
    _end_together(options)  # the chief clusters and writes meanwhile
    return {"worker": describe(cluster), "seed": options.seed, "training": {k: v for k, v in info.items() if k != "history"}}


def _fingerprint(data, tomogram, pose, subvolumes, options):
    if subvolumes.in_memory:
        return fingerprint(data, tomogram, pose, subvolumes.v_siz, options)
    # a store's digest covers its poses; its tomograms were read when it was built
    return fingerprint(data, None, False, subvolumes.v_siz, options)


def _run_train_locked(data, tomogram, pose, n_clusters, out_dir, options, command):
    started_wall, started = time.time(), time.perf_counter()
    timings, code_stats, comparison = {}, {}, {}
    model_dir = RunFolder(out_dir).model_dir
    contrast = {}
    decide_preparation(data, options, model_dir)
    subvolumes, voxel_size = prepare_subvolumes(
        data, tomogram, pose, sigma=options.smooth_sigma, workers=options.workers, progress=options.verbose > 0, timings=timings,
        polarity=options.polarity, contrast=contrast,
    )
    options.polarity = contrast["asked"]  # a pickle's recorded polarity, when none was given
    check_subvolume_shape(data, subvolumes.v_siz)
    _check_n_clusters(data, len(subvolumes), n_clusters)
    current = _fingerprint(data, tomogram, pose, subvolumes, options)
    models, train_info = obtain_models(subvolumes.volumes, model_dir, options, timings, current, command,
                                        rotations=_rotations(subvolumes, options))
    if pose and subvolumes.in_memory:  # only now: a refused rerun must not replace the run folder's files
        subvolumes.prepared = {"polarity": contrast["used"]}
        save_subvolumes(RunFolder(out_dir).pose_pickle, subvolumes)
    if train_info.get("history"):
        from ..report.figures import plot_history

        plot_history(os.path.join(model_dir, "loss.png"), train_info["history"])
    clustering, _ = cluster_and_write(
        subvolumes, models[1], models[2], n_clusters, out_dir,
        n_init=options.n_init, seed=options.seed, batch_size=options.batch_size, timings=timings, code_stats=code_stats,
        kmeans=options.kmeans, fingerprint=current, merge=options.merge, baseline=options.baseline, comparison=comparison,
        flips=options.flips,
    )
    timings["total_s"] = time.perf_counter() - started
    record = {
        "command": command,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_wall)),
        "inputs": {
            "data": os.path.abspath(data),
            "tomogram": os.path.abspath(tomogram) if tomogram else None,
            "pose": bool(pose),
            "n_clusters": int(n_clusters),
        },
        "options": asdict(options),
        "fingerprint": current,
        "seed": options.seed,
        "n_subvolumes": len(subvolumes),
        "v_siz": list(subvolumes.v_siz),
        "voxel_size": voxel_size,
        "contrast": contrast,
        "training": {k: v for k, v in train_info.items() if k != "history"},
        "codes": code_stats,
        "cluster_sizes": {str(k): v for k, v in clustering.sizes().items()},
        "inertia": clustering.inertia,
        "kmeans_method": clustering.method,
        **comparison,
        "timings": timings,
        "versions": _versions(),
        "cpu_kernels": kernel_record(),
    }
    _write_run_json(out_dir, record)
    _export_centres(out_dir)
    _write_report(out_dir, subvolumes)
    return record


def _export_centres(out_dir):
    """Decoded cluster centres as MRC files (cheap); particle lists are 'autoencoder3d export'."""
    from ..export import export_run

    try:
        export_run(out_dir, formats=("mrc",), log=None, lock=False)
    except Exception as err:  # noqa: BLE001 - the run's outputs are complete; say how to retry
        log.warning("could not export the cluster centres as MRC (%s); retry with 'autoencoder3d export %s'", err, out_dir)


def _write_report(out_dir, subvolumes=None):
    """The cluster report ``clus-center/index.html``; a failure here never loses the run's results."""
    from ..report.page import write_report

    try:
        path = write_report(out_dir, subvolumes=subvolumes, lock=False)
    except Exception as err:  # noqa: BLE001 - the run's outputs are complete; say how to retry
        log.warning("could not write the cluster report (%s: %s); retry with 'autoencoder3d report %s'", type(err).__name__, err, out_dir)
        return
    log.info("cluster report: %s", path)
