"""EDSS3D's training patches: which subvolumes, and their per-voxel targets, from a pickle or an on-disk store.

The patches are the subvolumes of the chosen clusters plus as many unlabelled
ones drawn at random (see :func:`autoencoder3d.edss3d.labels.sample_background`). From
the published pickle (in memory) every subvolume is decoded, as published. From
an on-disk store (:mod:`autoencoder3d.data.store`) nothing is read whole: only the
labelled patches are decoded, a block at a time, and their class maps go to a
uint8 file in ``model-seg/`` that training reads batch by batch, with the
patches' subvolumes read from the store by index (:class:`RowsOf`).

With ``iso="auto"`` the threshold is Otsu's threshold of the labelled patches'
denseness (:class:`~autoencoder3d.edss3d.labels.DensenessHistogram`), gathered
over the same patches on both paths, so both label the same voxels; the store
path decodes the labelled patches twice for it (once for the histogram, once
for the targets) rather than keep them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ..runs.folder import RunFolder

if TYPE_CHECKING:
    import keras

    from ..volume import SubvolumeSet, Volumes

log = logging.getLogger(__name__)

TARGETS_FILE = "targets.npy"  # the store path's class maps, removed when training ends
DECODE_BLOCK = 512  # subvolumes read and decoded together on the store path


class RowsOf:
    """The subvolumes ``volumes[rows]`` as one ``(len(rows), n1, n2, n3)`` float32 array read on demand.

    Indexing with an int, a slice or an integer array reads just those rows
    from ``volumes`` (an on-disk store's volumes, never read whole).
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, volumes: Volumes, rows: ArrayLike):
        self.volumes = volumes
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows),) + tuple(int(s) for s in volumes.shape[1:])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.volumes[int(self.rows[key])]
        return self.volumes[self.rows[key]]


def choose_patches(uuids: Sequence[str], labels: Mapping[str, int], rng: np.random.Generator
                   ) -> tuple[list[str], list[int], np.ndarray, list[str]]:
    """The training patches: the labelled subvolumes, then background ones, shuffled once.

    Shuffling once makes the validation split (the last 10 %, Keras's rule) mix
    labelled and background patches.

    Returns:
        (chosen uuids, their labels (0: background), their rows in ``uuids``, the background uuids).
    """
    from .labels import sample_background

    background = sample_background(uuids, labels, rng)
    index = {u: i for i, u in enumerate(uuids)}
    chosen = [u for u in uuids if u in labels] + background
    patch_labels = [labels.get(u, 0) for u in chosen]
    order = rng.permutation(len(chosen))
    chosen = [chosen[i] for i in order]
    patch_labels = [patch_labels[i] for i in order]
    rows = np.array([index[u] for u in chosen])
    return chosen, patch_labels, rows, background


class LazyDecoded:
    """``decoded[row]``: one subvolume of ``volumes`` decoded when asked (for the rare messages that need a few)."""

    def __init__(self, decode: Callable[[np.ndarray], np.ndarray], volumes: Volumes):
        self.decode = decode
        self.volumes = volumes

    def __getitem__(self, row):
        return self.decode(self.volumes[[int(row)]])[0]


def _decoder(autoencoder, batch_size):
    def decode(volumes):
        return autoencoder.predict(np.asarray(volumes)[..., None], batch_size=batch_size, verbose=0)[..., 0]

    return decode


def store_targets(autoencoder: keras.Model, volumes: Volumes, rows: np.ndarray, patch_labels: Sequence[int],
                  n_class: int, seg_dir: str | os.PathLike, *, iso: float, scale: Mapping[str, float | str], batch_size: int = 128
                  ) -> tuple[np.memmap, np.ndarray, float, LazyDecoded]:
    """Class maps of the patches ``rows`` of an on-disk store, written to ``seg_dir/targets.npy`` block by block.

    Only labelled patches are read and decoded (a background patch is class 0
    everywhere).

    Returns:
        (class maps, a uint8 memory map (n, n1, n2, n3); voxels per class; mean labelled fraction of
        the labelled patches' voxels; a :class:`LazyDecoded` of ``volumes``).
    """
    from .labels import build_targets

    decode = _decoder(autoencoder, batch_size)
    os.makedirs(seg_dir, exist_ok=True)
    shape = (len(rows),) + tuple(int(s) for s in volumes.shape[1:])
    class_maps = np.lib.format.open_memmap(os.path.join(seg_dir, TARGETS_FILE), mode="w+", dtype=np.uint8, shape=shape)
    labels = np.asarray(patch_labels)
    counts = np.zeros(n_class, dtype=np.int64)
    fractions = []
    labelled = np.flatnonzero(labels)
    for lo in range(0, len(labelled), DECODE_BLOCK):
        at = labelled[lo : lo + DECODE_BLOCK]
        decoded = decode(volumes[rows[at]])
        for i, volume in zip(at, decoded):
            class_maps[i] = build_targets(volume, int(labels[i]), iso, **scale)
            fractions.append(np.count_nonzero(class_maps[i]) / class_maps[i].size)
            counts += np.bincount(class_maps[i].ravel(), minlength=n_class)[:n_class]
    class_maps.flush()
    counts[0] += int(np.prod(shape[1:], dtype=np.int64)) * int(np.count_nonzero(labels == 0))
    return class_maps, counts, float(np.mean(fractions)), LazyDecoded(decode, volumes)


def patches_in_memory(autoencoder: keras.Model, subvolumes: SubvolumeSet, labels: Mapping[str, int],
                      selection: Mapping[int, Sequence[int]], out_dir: str | os.PathLike, iso: float | str, batch_size: int,
                      seed: int, class_balanced: bool) -> dict[str, Any]:
    """The published path: decode every subvolume (``decoded/decoded.pickle``), then label the patches in memory.

    Returns:
        dict: volumes and class_maps of the patches, voxels per class (counts), label_fraction, the label
        scale, class weights, the chosen uuids, their patch_labels, the background uuids, decode_seconds.
    """
    from ..formats.subvolume_pickle import save_pickle
    from .labels import build_targets, check_labelled_voxels, class_weights, label_scale

    # 1. decode every subvolume
    t0 = time.perf_counter()
    decoded = autoencoder.predict(subvolumes.volumes[..., None], batch_size=batch_size, verbose=0)[..., 0]
    scale = label_scale(autoencoder, out_dir)
    save_pickle(os.path.join(RunFolder(out_dir).decoded_dir, "decoded.pickle"), dict(zip(subvolumes.uuids, decoded)))
    decode_seconds = time.perf_counter() - t0

    # 2-3. labels and background patches
    chosen, patch_labels, rows, background = choose_patches(subvolumes.uuids, labels, np.random.default_rng(seed))

    # 4. targets
    n_class = max(selection) + 1
    volumes = subvolumes.volumes[rows]
    labelled_rows = rows[np.asarray(patch_labels) > 0]
    iso, asked = _threshold(iso, lambda: (decoded[block] for block in _blocks(labelled_rows)), scale, subvolumes.source)
    class_maps = np.stack([build_targets(decoded[r], l, iso, **scale) for r, l in zip(rows, patch_labels)])
    weights = class_weights(class_maps, n_class)
    _log_weights(weights, class_balanced)
    counts = np.bincount(class_maps.ravel(), minlength=n_class)[:n_class]
    check_labelled_voxels(counts, selection, decoded, rows, patch_labels, iso, scale, asked)
    labelled = [c for c, l in zip(class_maps, patch_labels) if l]
    label_fraction = float(np.mean([np.count_nonzero(c) / c.size for c in labelled]))
    return dict(volumes=volumes, class_maps=class_maps, counts=counts, label_fraction=label_fraction, scale=scale, weights=weights,
                chosen=chosen, patch_labels=patch_labels, background=background, decode_seconds=decode_seconds, iso=iso)


def _blocks(rows):
    """``rows`` in pieces of :data:`DECODE_BLOCK`."""
    for lo in range(0, len(rows), DECODE_BLOCK):
        yield rows[lo : lo + DECODE_BLOCK]


def _threshold(iso, blocks, scale, where):
    """(the iso to label with, how it was asked for): a number as it is; ``auto``: Otsu's threshold of ``blocks()``."""
    from .labels import ISO_AUTO, DensenessHistogram, auto_iso, denseness

    if iso != ISO_AUTO:
        return float(iso), None
    histogram = DensenessHistogram()
    for block in blocks():
        histogram.add(denseness(block, **scale))
    threshold = auto_iso(histogram, where)
    log.info("--iso auto: Otsu's threshold of the decoded subvolumes of the selected clusters is %.3g standard deviations", threshold)
    return threshold, f"auto (Otsu's threshold {threshold:.3g})"


def patches_from_store(autoencoder: keras.Model, subvolumes: SubvolumeSet, labels: Mapping[str, int],
                       selection: Mapping[int, Sequence[int]], out_dir: str | os.PathLike, iso: float | str, batch_size: int,
                       seed: int, class_balanced: bool) -> dict[str, Any]:
    """An on-disk store: the same patches, read by index; only the labelled ones decoded, block by block.

    No ``decoded/decoded.pickle`` (it would hold every subvolume of the data set).
    Returns what :func:`patches_in_memory` does; the volumes are a :class:`RowsOf`
    the store and the class maps a memory map of ``model-seg/targets.npy``.
    """

    from .labels import check_labelled_voxels, class_weights_from_counts, label_scale

    log.info("%s: a data set on disk; decoding only the labelled patches (no decoded/decoded.pickle)", subvolumes.source)
    scale = label_scale(autoencoder, out_dir)
    chosen, patch_labels, rows, background = choose_patches(subvolumes.uuids, labels, np.random.default_rng(seed))
    n_class = max(selection) + 1
    t0 = time.perf_counter()
    decode = _decoder(autoencoder, batch_size)
    labelled_rows = rows[np.asarray(patch_labels) > 0]
    iso, asked = _threshold(iso, lambda: (decode(subvolumes.volumes[block]) for block in _blocks(labelled_rows)),
                            scale, subvolumes.source)
    seg_dir = RunFolder(out_dir).seg_dir
    class_maps, counts, label_fraction, decoded = store_targets(
        autoencoder, subvolumes.volumes, rows, patch_labels, n_class, seg_dir, iso=iso, scale=scale, batch_size=batch_size,
    )
    decode_seconds = time.perf_counter() - t0
    weights = class_weights_from_counts(counts, class_maps.size, n_class)
    _log_weights(weights, class_balanced)
    few = [i for label in sorted(selection) for i in [j for j, l in enumerate(patch_labels) if l == label][:64]]
    try:
        check_labelled_voxels(counts, selection, decoded, rows[few], [patch_labels[i] for i in few], iso, scale, asked)
    except InputError:
        del class_maps
        remove_targets(seg_dir)
        raise
    return dict(volumes=RowsOf(subvolumes.volumes, rows), class_maps=class_maps, counts=counts, label_fraction=label_fraction,
                scale=scale, weights=weights, chosen=chosen, patch_labels=patch_labels, background=background,
                decode_seconds=decode_seconds, iso=iso)


def _log_weights(weights, class_balanced):
    """The published per-class weights, said whether or not they are applied."""
    log.info("per-class weights (published formula): "
             "%s%s", np.round(weights, 3).tolist(), "" if class_balanced else " (not applied; --class-balanced "
                                                                                                                     "applies them)")


def remove_targets(seg_dir: str | os.PathLike) -> None:
    """Delete the store path's class-map file (it is made again when needed)."""
    path = os.path.join(seg_dir, TARGETS_FILE)
    if os.path.exists(path):
        os.remove(path)
