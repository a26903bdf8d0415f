"""A run folder (``autoencoder3d train --out RUN``): its layout and every file in it, read and written through one object.

::

    RUN/
      run.json                  what ran: inputs, options, fingerprint, contrast, clustering, timings
      pose-normalized.pickle    the pose-normalized subvolumes (when POSE was True)
      model/                    the autoencoder (model-*.keras, weights, train-state.json, history.csv)
      clus-center/              the clustering: kmeans.pickle, ccents.pickle, ccents_d.pickle,
                                encodings.pickle, baseline-kmeans.pickle, fig/, mrc/, index.html, particles/ ...
      previous/                 earlier clus-center/ folders moved aside by a new clustering
      model-seg/                EDSS3D: model-seg.keras, its weights, seg.json
      .autoencoder3d.lock       held while a process writes the folder

No other module builds a path inside a run folder by hand: ask :class:`RunFolder`.
``run.json`` has one reader with one error policy (:meth:`RunFolder.record`).
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Mapping
from typing import Any

from ..errors import InputError, brief
from ..formats.json import read_json
from ..util.atomic import is_leftover, original_name
from ..util.lock import RunFolderLock

__all__ = [
    "BASELINE_MEMBERS", "CENTER_CODES", "CENTERS", "CLUSTERING_FILES", "CLUSTERS_DIR", "DECODED_DIR", "ENCODINGS", "MEMBERS", "MODEL_DIR", "POSE_PICKLE",
    "PREDICTION_DIR", "PREVIOUS_DIR", "RECORD", "REPORT_PAGE", "SEG_BEST", "SEG_DIR", "SEG_MODEL", "SEG_RECORD", "RunFolder",
    "members_of", "parse_clusters", "remove_leftovers", "written_files",
]

RECORD = "run.json"
POSE_PICKLE = "pose-normalized.pickle"
MODEL_DIR = "model"
CLUSTERS_DIR = "clus-center"
PREVIOUS_DIR = "previous"
SEG_DIR = "model-seg"
DECODED_DIR = "decoded"        # edss3d train: the decoded subvolumes it labels
PREDICTION_DIR = "prediction"  # edss3d predict: the segmented subvolumes
# in clus-center/
MEMBERS = "kmeans.pickle"          # {cluster id: [uuid, ...]}
CENTERS = "ccents.pickle"          # {cluster id: decoded centre volume}
CENTER_CODES = "ccents_d.pickle"   # the centres' codes, (k, 32)
ENCODINGS = "encodings.pickle"     # every clustered subvolume's code
BASELINE_MEMBERS = "baseline-kmeans.pickle"  # the PCA baseline's clusters, {cluster id: [uuid, ...]}
REPORT_PAGE = "index.html"
# what train and cluster write into clus-center/ for every clustering (other commands add the rest)
CLUSTERING_FILES = frozenset({MEMBERS, CENTERS, CENTER_CODES, ENCODINGS, BASELINE_MEMBERS, "fig", "mrc", REPORT_PAGE})
# in model-seg/
SEG_MODEL = "model-seg.keras"
SEG_BEST = "model-seg--weights--best.weights.h5"
SEG_RECORD = "seg.json"
_MODEL_FILES = (
    ("model-autoencoder.keras", "the trained autoencoder (Keras 3 format)"),
    ("model-encoder.keras", "its encoder: subvolume -> code"),
    ("model-decoder.keras", "its decoder: code -> subvolume"),
    ("model-autoencoder--weights--best.weights.h5", "best-weights checkpoint"),
    ("history.csv", "loss and validation loss per epoch"),
    ("loss.png", "the same, plotted"),
)
_CLUSTERING_NOTES = (
    (f"{CLUSTERS_DIR}/{MEMBERS}", "cluster id -> list of subvolume uuids"),
    (f"{CLUSTERS_DIR}/{CENTERS}", "cluster id -> decoded cluster centre"),
    (f"{CLUSTERS_DIR}/{CENTER_CODES}", "the cluster centres in code space"),
    (f"{CLUSTERS_DIR}/{ENCODINGS}", "every subvolume's uuid, code and cluster; each cluster's stability"),
    (f"{CLUSTERS_DIR}/fig/NNN--SIZE.png", "16-bit slice montage of each centre"),
    (f"{CLUSTERS_DIR}/mrc/NNN.mrc", "each decoded centre as MRC (ChimeraX, IMOD)"),
    (f"{CLUSTERS_DIR}/{REPORT_PAGE}", "the cluster report (see 'autoencoder3d report')"),
    (POSE_PICKLE, "with POSE True: the normalized subvolumes"),
    (f"{CLUSTERS_DIR}/{BASELINE_MEMBERS}", "the PCA baseline's clusters (not with --no-baseline)"),
    (RECORD, "inputs, options, seed, code statistics, timings, the baseline's agreement, duplicate centres, merges"),
)


def written_files(training: bool) -> str:
    """The files 'train' (``training``) or 'cluster' writes in a run folder, one per line, for their --help."""
    notes = [(f"{MODEL_DIR}/{name}", note) for name, note in _MODEL_FILES] if training else []
    lines = []
    for path, note in notes + list(_CLUSTERING_NOTES):
        first = f"  {path:<34} " if len(path) < 35 else f"  {path}   "
        lines.append(textwrap.fill(note, 90, initial_indent=first, subsequent_indent=" " * 37))
    return "\n".join(lines)


_SWEPT = (MODEL_DIR, CLUSTERS_DIR)  # subfolders searched for the leftovers of killed writes


class RunFolder:
    """The run folder at ``path`` (which need not exist yet).

    Paths: :attr:`record_path`, :attr:`model_dir`, :attr:`clus_dir`, :attr:`seg_dir`,
    :attr:`pose_pickle`, :attr:`previous_dir`, :meth:`clus_file`. Contents:
    :meth:`record`, :meth:`members`, :meth:`recorded_polarity`. Writing:
    :meth:`lock`, :meth:`remove_leftovers`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.path.abspath(os.fspath(path))

    def __repr__(self) -> str:
        return f"RunFolder({self.path!r})"

    @classmethod
    def of_clustering(cls, clus_dir: str | os.PathLike) -> RunFolder:
        """The run folder of ``RUN/clus-center`` (a folder not named so is taken as the run folder itself)."""
        folder = os.path.abspath(os.fspath(clus_dir))
        return cls(os.path.dirname(folder) if os.path.basename(folder) == CLUSTERS_DIR else folder)

    @classmethod
    def of_model(cls, model_dir: str | os.PathLike) -> RunFolder:
        """The run folder whose ``model/`` is ``model_dir``."""
        return cls(os.path.dirname(os.path.abspath(os.fspath(model_dir))))

    # ---------------------------------------------------------------- layout

    @property
    def record_path(self) -> str:
        return os.path.join(self.path, RECORD)

    @property
    def model_dir(self) -> str:
        return os.path.join(self.path, MODEL_DIR)

    @property
    def clus_dir(self) -> str:
        return os.path.join(self.path, CLUSTERS_DIR)

    @property
    def seg_dir(self) -> str:
        return os.path.join(self.path, SEG_DIR)

    @property
    def pose_pickle(self) -> str:
        return os.path.join(self.path, POSE_PICKLE)

    @property
    def decoded_dir(self) -> str:
        return os.path.join(self.path, DECODED_DIR)

    @property
    def prediction_dir(self) -> str:
        return os.path.join(self.path, PREDICTION_DIR)

    @property
    def previous_dir(self) -> str:
        return os.path.join(self.path, PREVIOUS_DIR)

    @property
    def report_page(self) -> str:
        return os.path.join(self.clus_dir, REPORT_PAGE)

    def resolve(self, path: str | None) -> str | None:
        """A path recorded in run.json: as written when it exists or is absolute, else relative to the run folder."""
        if not path:
            return None
        if os.path.isabs(path) or os.path.exists(path):
            return path
        return os.path.join(self.path, path)

    def recorded_input(self, key: str, inputs: Mapping[str, Any] | None = None) -> str:
        """The input ``key`` (``"data"``, ``"tomogram"``) that run.json records (or ``inputs`` of it), resolved;
        InputError when it is gone."""
        inputs = (self.record().get("inputs") or {}) if inputs is None else inputs
        path = self.resolve(inputs.get(key))
        if not path or not os.path.exists(path):
            raise InputError(f"{path or self.record_path}: the {key.upper()} this run used (run.json, inputs.{key}) is not there; "
                             "put it back at that path (or a link to where it is now)")
        return path

    def clus_file(self, name: str) -> str:
        """``clus-center/NAME``."""
        return os.path.join(self.clus_dir, name)

    def seg_file(self, name: str) -> str:
        """``model-seg/NAME``."""
        return os.path.join(self.seg_dir, name)

    # ---------------------------------------------------------------- run.json

    def has_record(self) -> bool:
        return os.path.isfile(self.record_path)

    def record(self, *, missing_ok: bool = False) -> dict:
        """``run.json`` as a dict.

        Args:
            missing_ok: return ``{}`` when there is no run.json yet (a run folder
                being made); otherwise a missing one is an error.

        Raises:
            InputError: missing (unless ``missing_ok``), unreadable, not JSON or not a JSON object.
        """
        path = self.record_path
        if missing_ok and not os.path.lexists(path):
            return {}
        record = read_json(path, "run record (run.json of a finished 'autoencoder3d train')")
        if not isinstance(record, dict):
            raise InputError(f"{path}: not a run record (a JSON object); run 'autoencoder3d cluster' again to rewrite it")
        _check_record(path, record)
        return record

    def write_record(self, record: dict) -> str:
        """Write ``run.json`` atomically; return its path."""
        from ..formats.json import write_json

        write_json(self.record_path, record)
        return self.record_path

    def finished_record(self) -> dict:
        """``run.json`` of a finished run: it must name the run's ``inputs``."""
        record = self.record()
        if not isinstance(record.get("inputs"), dict):
            raise InputError(f"{self.record_path}: has no 'inputs' section")
        return record

    def recorded_polarity(self) -> str | None:
        """The contrast polarity the run used (``run.json`` ``contrast.used``), or None before it recorded one."""
        contrast = self.record(missing_ok=True).get("contrast")
        return contrast.get("used") if isinstance(contrast, dict) else None

    def recorded_options(self) -> dict:
        options = self.record(missing_ok=True).get("options")
        return options if isinstance(options, dict) else {}

    def is_published(self) -> bool:
        """True when the run was trained with ``--published``."""
        return bool(self.recorded_options().get("published"))

    # ---------------------------------------------------------------- the clustering

    def has_clustering(self) -> bool:
        return os.path.isfile(self.clus_file(MEMBERS))

    def require_clustering(self) -> None:
        """Refuse a run folder that has not been clustered yet."""
        for name in (MEMBERS, CENTERS):
            if not os.path.isfile(self.clus_file(name)):
                raise InputError(f"{self.clus_file(name)}: missing; run 'autoencoder3d train' or 'autoencoder3d cluster' first")

    def members(self) -> dict[int, list[str]]:
        """``clus-center/kmeans.pickle``: cluster id -> uuids of its members."""
        if not self.has_clustering():
            raise InputError(f"{self.path}: no {CLUSTERS_DIR}/{MEMBERS}; run 'autoencoder3d train' (or 'autoencoder3d cluster') first")
        return members_of(self.clus_dir)

    def centers(self) -> dict:
        """``clus-center/ccents.pickle``: cluster id -> decoded centre (float32 arrays), by id."""
        import numpy as np

        from ..formats.subvolume_pickle import load_pickle

        path = self.clus_file(CENTERS)
        centers = {}
        for k, v in sorted(_int_keys(path, load_pickle(path)).items()):
            try:
                centers[k] = np.asarray(v, dtype=np.float32)
            except (TypeError, ValueError):
                centers[k] = None
            if centers[k] is None or centers[k].ndim != 3:
                raise InputError(f"{path}: the centre of cluster {k} is {brief(v)}, not a volume; "
                                 "run 'autoencoder3d cluster' again to rewrite the clustering")
        return centers

    # ---------------------------------------------------------------- writing

    def lock(self, **wording: str) -> RunFolderLock:
        """``with folder.lock():`` -- one writer at a time (see :class:`~autoencoder3d.util.lock.RunFolderLock`)."""
        return RunFolderLock(self.path, **wording)

    def remove_leftovers(self) -> list[str]:
        """Delete the temporary files and folders of killed writes; return their paths."""
        return remove_leftovers(self.path)


# run.json's parts that its readers open as objects, lists of numbers, or paths
_SECTIONS = ("inputs", "options", "fingerprint", "contrast", "training", "codes", "cluster_sizes", "duplicates", "baseline",
             "merge", "timings")
_NUMBER_LISTS = ("v_siz", "voxel_size")
_PATHS = ("data", "tomogram")


def _check_record(path, record):
    """Refuse a run.json whose parts have other types than the commands write (edited by hand, or another program's)."""
    def refuse(name, value, expected):
        raise InputError(f"{path}: '{name}' is {brief(value)}, not {expected}; restore the run's run.json "
                         "(or run 'autoencoder3d cluster' again to rewrite it)")

    for name in _SECTIONS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            refuse(name, record[name], "a JSON object")
    for name in _NUMBER_LISTS:
        value = record.get(name)
        if value is not None and not (isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            refuse(name, value, "a list of numbers")
    inputs = record.get("inputs") or {}
    for name in _PATHS:
        if inputs.get(name) is not None and not isinstance(inputs[name], str):
            refuse(f"inputs.{name}", inputs[name], "a path")


def members_of(clus_dir: str | os.PathLike) -> dict[int, list[str]]:
    """The ``kmeans.pickle`` of a clustering folder (``clus-center/`` or one being written) as ``{int: [str]}``.

    Raises:
        InputError: unreadable, or not a dict of cluster ids to lists of uuids.
    """
    from ..formats.subvolume_pickle import load_pickle

    path = os.path.join(os.fspath(clus_dir), MEMBERS)
    members = _int_keys(path, load_pickle(path))
    try:
        return {k: [str(u) for u in v] for k, v in members.items()}
    except TypeError:
        raise InputError(f"{path}: expected a dict cluster id -> list of uuids") from None


def _int_keys(path: str, d: object) -> dict:
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a dict cluster id -> ..., got {type(d).__name__}")
    try:
        return {int(k): v for k, v in d.items()}
    except (TypeError, ValueError):
        raise InputError(f"{path}: cluster ids must be integers") from None


def parse_clusters(clusters: str | list | None) -> list[int] | None:
    """Cluster ids from a list or ``'3,5,17'``; None stays None (all clusters)."""
    if clusters is None:
        return None
    if isinstance(clusters, str):
        try:
            return sorted({int(c) for c in clusters.replace(" ", "").split(",") if c})
        except ValueError:
            raise InputError(f"--clusters {clusters!r}: expected cluster numbers separated by commas, e.g. 3,5,17") from None
    return sorted({int(c) for c in clusters})


def remove_leftovers(folder: str | os.PathLike) -> list[str]:
    """Delete temporary files and folders of killed writes in a run folder; return their paths."""
    folder = os.fspath(folder)
    removed = []
    places = [folder] + [os.path.join(folder, name) for name in _SWEPT]
    for place in places:
        walk = os.walk(place) if place != folder else [(folder, [], _list(folder))]
        for root, dirs, files in walk:
            for name in sorted(list(dirs) + list(files), key=lambda n: not n.endswith(".old")):
                path = os.path.join(root, name)
                if not is_leftover(name) or not os.path.lexists(path):
                    continue
                if name in dirs:
                    dirs.remove(name)
                if _put_back(path):
                    continue
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
                removed.append(path)
    return removed


def _put_back(path):
    """A folder moved aside as ``.NAME.XXXXXXXX.old`` whose replacement never arrived goes back to NAME."""
    name = os.path.basename(path)
    original = os.path.join(os.path.dirname(path), original_name(name))
    if name.endswith(".old") and os.path.isdir(path) and not os.path.lexists(original):
        os.rename(path, original)
        return True
    return False


def _list(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []
