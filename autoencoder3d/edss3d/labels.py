"""EDSS3D's labels: which clusters get which label, and which voxels of their subvolumes are the structure.

- Selection: ``--select 1=3,21,28`` or a JSON file, checked against ``kmeans.pickle``.
- Targets: a voxel of a labelled subvolume gets its label where the decoded
  density is more than ``iso`` standard deviations of the training
  intensities denser than their mean (:func:`denseness`; mirrored for bright
  contrast). ``iso`` is a number given by the user, the published 0.5 for a
  run trained with ``--published`` (whose mean is 0 and std 1: the published
  ``-decoded > 0.5``), or by default Otsu's threshold of the decoded
  subvolumes of the selected clusters (:class:`DensenessHistogram`), which
  splits their voxels into a dense and a less dense class whatever the
  training left the decoded contrast at.
- Weights: the published per-class weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..prep.contrast import DEFAULT_POLARITY
from ..runs.folder import RunFolder

if TYPE_CHECKING:
    import keras

    from .patches import LazyDecoded

log = logging.getLogger(__name__)

MAX_LABEL = 127  # label maps are written as 8-bit MRC (mode 0), which reads the same signed or unsigned below 128
ISO_AUTO = "auto"
PUBLISHED_ISO = 0.5
HISTOGRAM_LIMIT = 16.0  # denseness histogram: standard deviations either side of the mean (beyond: the end bins)
HISTOGRAM_BINS = 32000  # 0.001 standard deviations per bin


# ---------------------------------------------------------------- selection

def _parse_label(text, source):
    try:
        label = int(str(text).strip())
    except ValueError:
        raise InputError(f"{source}: label {text!r} is not an integer (labels are 1, 2, ...; 0 is the background)") from None
    if label < 1:
        raise InputError(f"{source}: label {label} is not allowed: labels start at 1 (0 is the background)")
    if label > MAX_LABEL:
        raise InputError(f"{source}: label {label} is too large (at most {MAX_LABEL})")
    return label


def _parse_cluster_ids(values, source, label):
    ids = []
    for value in values:
        try:
            ids.append(int(str(value).strip()))
        except ValueError:
            raise InputError(f"{source}: label {label}: cluster id {value!r} is not an integer") from None
    if not ids:
        raise InputError(f"{source}: label {label} has no clusters; write e.g. 1=3,21,28")
    return list(dict.fromkeys(ids))  # 1=0,0 is 1=0 (and records as 1=0, so a rerun with 1=0 is the same selection)


def parse_select(items: Iterable[str]) -> dict[int, list[int]]:
    """Selection from ``--select`` values such as ``["1=3,21,28", "2=15,25"]``.

    Returns:
        dict label -> list of cluster ids.

    Raises:
        InputError: malformed value, label < 1, or a label given twice.
    """
    selection = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--select {item!r}: expected LABEL=CLUSTER,CLUSTER,..., e.g. --select 1=3,21,28")
        left, right = item.split("=", 1)
        label = _parse_label(left, f"--select {item!r}")
        if label in selection:
            raise InputError(f"--select: label {label} is given twice; list all its clusters in one --select {label}=...")
        selection[label] = _parse_cluster_ids([s for s in right.split(",") if s.strip()], f"--select {item!r}", label)
    return selection


def load_selection(path: str | os.PathLike) -> dict[int, list[int]]:
    """Selection from a JSON file ``{"1": [3, 21, 28], "2": [15, 25]}``."""
    from ..formats.json import read_json

    raw = read_json(path, 'selection file such as {"1": [3, 21, 28], "2": [15, 25]}')
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: expected a JSON object label -> list of cluster ids, e.g. {{\"1\": [3, 21, 28]}}")
    selection = {}
    for key, values in raw.items():
        label = _parse_label(key, path)
        if label in selection:
            raise InputError(f"{path}: label {label} is given twice")
        if not isinstance(values, list):
            values = [values]
        selection[label] = _parse_cluster_ids(values, path, label)
    return selection


def check_selection(selection: Mapping[int, Sequence[int]], members: Mapping[int, Sequence[str]], source: str = "selection") -> None:
    """Check a selection against the clusters of ``kmeans.pickle``.

    Args:
        selection: dict label -> list of cluster ids.
        members: dict cluster id -> list of uuids (``kmeans.pickle``).
        source: where the selection came from, for messages.

    Raises:
        InputError: empty selection, label < 1, unknown cluster, or a cluster under two labels.
    """
    if not selection:
        raise InputError("no clusters selected: give --select LABEL=CLUSTER,... or --selection FILE.json")
    known = sorted(int(k) for k in members)
    owner = {}
    for label, clusters in sorted(selection.items()):
        if label < 1:
            raise InputError(f"{source}: label {label} is not allowed: labels start at 1 (0 is the background)")
        for cluster in clusters:
            if cluster not in known:
                raise InputError(
                    f"{source}: cluster {cluster} (label {label}) does not exist; kmeans.pickle has clusters "
                    f"{_id_words(known)}" if known else f"{source}: kmeans.pickle has no clusters"
                )
            if cluster in owner and owner[cluster] != label:
                raise InputError(f"{source}: cluster {cluster} is under two labels ({owner[cluster]} and {label}); give it one")
            owner[cluster] = label


def label_subvolumes(selection: Mapping[int, Iterable[int]], members: Mapping[int, Iterable[str]]) -> dict[str, int]:
    """Map every uuid of a selected cluster to its label: dict uuid -> label."""
    labels = {}
    for label, clusters in sorted(selection.items()):
        for cluster in clusters:
            for uuid in _members_of(members, cluster):
                labels[str(uuid)] = int(label)
    return labels


def _members_of(members, cluster):
    for key, uuids in members.items():
        if int(key) == int(cluster):
            return uuids
    return []


def sample_background(uuids: Sequence[str], labels: Mapping[str, int], rng: np.random.Generator) -> list[str]:
    """Draw background patches: as many unlabelled uuids as labelled ones (published).

    When fewer unlabelled subvolumes exist, all of them are used and a warning
    is logged (the published code failed there).

    Returns:
        list of uuids, in the order of ``uuids``.
    """
    candidates = [u for u in uuids if u not in labels]
    wanted = sum(1 for u in uuids if u in labels)
    if len(candidates) < wanted:
        log.warning(
            "only %d unlabelled subvolumes for %d labelled ones: using all of them as background", len(candidates), wanted
        )
        return candidates
    chosen = set(rng.choice(len(candidates), size=wanted, replace=False).tolist())
    return [u for i, u in enumerate(candidates) if i in chosen]


# ---------------------------------------------------------------- targets

def denseness(decoded: ArrayLike, mean: float = 0.0, std: float = 1.0, polarity: str = DEFAULT_POLARITY) -> np.ndarray:
    """How much denser than the mean each voxel is, in standard deviations of the data.

    With mean 0, std 1 and dark contrast this is the published ``-decoded``.
    """
    from ..prep.contrast import polarity_sign

    return polarity_sign(polarity) * (mean - np.asarray(decoded, dtype=np.float64)) / std


def build_targets(decoded: ArrayLike, label: int, iso: float = 0.5, *, mean: float = 0.0, std: float = 1.0,
                  polarity: str = DEFAULT_POLARITY) -> NDArray[np.uint8]:
    """Class index per voxel for one patch: ``label`` where :func:`denseness` > ``iso``, else 0.

    A background patch (``label`` 0) is 0 everywhere.
    """
    decoded = np.asarray(decoded)
    if label == 0:
        return np.zeros(decoded.shape, dtype=np.uint8)
    return np.where(denseness(decoded, mean, std, polarity) > iso, np.uint8(label), np.uint8(0))


def one_hot(class_map: ArrayLike, n_class: int) -> NDArray[np.float32]:
    """The published target layout: ``(..., n_class)`` with one 1 per voxel."""
    class_map = np.asarray(class_map)
    return (class_map[..., None] == np.arange(n_class)).astype(np.float32)


def check_labelled_voxels(counts: np.ndarray, selection: Mapping[int, Sequence[int]], decoded: np.ndarray | LazyDecoded,
                          rows: Sequence[int] | np.ndarray, patch_labels: Sequence[int], iso: float, scale: Mapping[str, float | str],
                          asked: str | None = None) -> None:
    """Refuse a label whose decoded subvolumes have no voxel denser than iso, and suggest an --iso.

    ``asked`` says how ``iso`` was chosen (e.g. ``auto (Otsu's threshold 0.8)``), for the message.
    """
    for label in sorted(selection):
        if counts[label] > 0:
            continue
        dense = denseness(np.stack([decoded[r] for r, l in zip(rows, patch_labels) if l == label]), **scale)
        said = f"--iso {asked or iso}: label {label} gets no voxel: the decoded subvolumes of its clusters are "
        suggestion = _suggested_iso(dense)
        if suggestion is None:
            raise InputError(f"{said}uniform ({dense.max():.3g} standard deviations from the mean everywhere), so no --iso "
                             f"marks some of their voxels and not others; give label {label} other clusters")
        share = 100 * float(np.mean(dense > suggestion))
        raise InputError(f"{said}at most {dense.max():.3g} standard deviations denser than the mean, never above {iso:.3g}; "
                         f"try --iso {suggestion:g}, which marks the densest {share:.3g} % of their voxels")


def _suggested_iso(dense):
    """An --iso, as printed, that marks about the densest 10 % of ``dense`` and never all or none of it (None: uniform)."""
    top = dense.max()
    below = dense[dense < top]
    if not below.size:
        return None
    wanted = min(float(np.percentile(dense, 90)), float(below.max()))  # ties at the top: at least the top voxels
    for digits in (3, 6, 17):  # as short as still below the densest voxel
        shown = float(f"{wanted:.{digits}g}")
        if shown < top:
            return shown
    return wanted


# ---------------------------------------------------------------- the threshold

def otsu_threshold(counts: ArrayLike, edges: ArrayLike) -> float | None:
    """Otsu's threshold of a histogram: where to cut so that the two classes' between-class variance is largest.

    Args:
        counts: (n,) values per bin.
        edges: (n + 1,) bin edges.

    Returns:
        the value halfway between the centres of the last occupied bin below the
        cut and the first occupied bin above it (values above it are the upper
        class), or None when all values share one bin.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1]
    above = counts.sum() - below
    sum_below = np.cumsum(counts * centres)[:-1]
    sum_above = float((counts * centres).sum()) - sum_below
    split = (below > 0) & (above > 0)
    between = np.full(len(below), -1.0)
    between[split] = below[split] * above[split] * (sum_below[split] / below[split] - sum_above[split] / above[split]) ** 2
    if not (between > 0).any():
        return None
    cut = int(np.argmax(between))  # the first of equal cuts: right after the lower class's last occupied bin
    occupied = np.flatnonzero(counts)
    lower, upper = occupied[occupied <= cut][-1], occupied[occupied > cut][0]
    return float((centres[lower] + centres[upper]) / 2)


class DensenessHistogram:
    """Counts of :func:`denseness` values in fixed bins, gathered a block at a time.

    The bins are the same for every run (0.001 standard deviations from -16 to
    16; values beyond go to the end bins), so the threshold does not depend on
    how the subvolumes are split into blocks (pickle or store).
    """

    def __init__(self):
        self.edges = np.linspace(-HISTOGRAM_LIMIT, HISTOGRAM_LIMIT, HISTOGRAM_BINS + 1)
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    def add(self, values: ArrayLike) -> None:
        scaled = (np.asarray(values, dtype=np.float64).ravel() + HISTOGRAM_LIMIT) * (HISTOGRAM_BINS / (2 * HISTOGRAM_LIMIT))
        index = np.clip(np.floor(scaled), 0, HISTOGRAM_BINS - 1).astype(np.int64)
        self.counts += np.bincount(index, minlength=HISTOGRAM_BINS)

    def threshold(self) -> float | None:
        """Otsu's threshold of the values added (None when they are all alike)."""
        return otsu_threshold(self.counts, self.edges)


def auto_iso(histogram: DensenessHistogram, where: str) -> float:
    """Otsu's threshold of the labelled patches' denseness, or one line saying why there is none."""
    threshold = histogram.threshold()
    if threshold is None:
        raise InputError(f"{where}: --iso auto: the decoded subvolumes of the selected clusters are uniform, so no "
                         "threshold separates dense voxels from the rest; give a number, e.g. --iso 0.5")
    return threshold


def parse_iso(value: str | float) -> str | float:
    """``--iso``: ``auto`` (the default) or a number of standard deviations."""
    if isinstance(value, str) and value.strip().lower() == ISO_AUTO:
        return ISO_AUTO
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise InputError(f"--iso {value!r}: expected auto or a number of standard deviations, e.g. 0.5")
    return number


def published_run(out_dir: str | os.PathLike) -> bool:
    """True when the run in ``out_dir`` was trained with ``--published`` (its run.json says so)."""
    return RunFolder(out_dir).is_published()


def label_scale(autoencoder: keras.Model, out_dir: str | os.PathLike) -> dict[str, float | str]:
    """Standardization of the run's autoencoder and the run's contrast polarity, for the labels."""
    from ..network.model import standardization

    mean, std = standardization(autoencoder)
    polarity = RunFolder(out_dir).recorded_polarity() or DEFAULT_POLARITY
    return {"mean": float(mean), "std": float(std), "polarity": polarity}


def class_weights(class_maps: ArrayLike, n_class: int) -> np.ndarray:
    """The published per-class weights ``w_l = (target entries) / (voxels of class l)``.

    The number of target entries is that of the published one-hot target array,
    voxels x n_class. A class with no voxel gets weight 0 (and a warning).
    """
    counts = np.bincount(np.asarray(class_maps).ravel(), minlength=n_class)[:n_class]
    return class_weights_from_counts(counts, np.asarray(class_maps).size, n_class)


def class_weights_from_counts(counts: ArrayLike, n_voxels: int, n_class: int) -> np.ndarray:
    """:func:`class_weights` from the voxels per class and the number of voxels of all patches."""
    counts = np.asarray(counts, dtype=np.float64)
    total = float(n_voxels) * n_class
    weights = np.zeros(n_class)
    for label, count in enumerate(counts):
        if count:
            weights[label] = total / count
        else:
            log.warning("class %d has no voxel in the targets; its weight is 0", label)
    return weights


class VoxelWeights:
    """Per-voxel sample weights ``w[class]``, computed per batch (not stored).

    ``VoxelWeights(maps, w)[indices]`` is ``w[maps[indices]]`` as float32.
    """

    def __init__(self, class_maps: np.ndarray, weights: ArrayLike):
        self.class_maps = class_maps
        self.weights = np.asarray(weights, dtype=np.float32)

    def __len__(self):
        return len(self.class_maps)

    def __getitem__(self, indices):
        return self.weights[self.class_maps[indices]]


def _id_words(ids: list[int]) -> str:
    """``0..99`` for consecutive ids, else the ids (the first 12 and how many more): merged runs have gaps."""
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    more = f" and {len(ids) - 12} more" if len(ids) > 12 else ""
    return ", ".join(map(str, ids[:12])) + more
