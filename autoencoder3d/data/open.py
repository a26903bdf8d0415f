"""DATA, opened: a published subvolume pickle or an on-disk data-set store, as one SubvolumeSet."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from ..box import fitting_shape
from ..errors import InputError
from ..formats.subvolume_pickle import load_subvolumes
from ..prep.contrast import recorded_polarity

if TYPE_CHECKING:
    from ..volume import SubvolumeSet

log = logging.getLogger(__name__)


def open_data(path: str | os.PathLike) -> SubvolumeSet:
    """Read DATA: a published subvolume pickle (into memory) or an on-disk store (volumes stay on disk).

    Returns:
        SubvolumeSet; for a store, its ``volumes`` read subvolumes by index from disk.

    Raises:
        InputError: with the file name and the problem.
    """
    from .store import is_store, open_store

    if os.path.isdir(os.fspath(path)):
        if not is_store(path):
            raise InputError(f"{os.fspath(path)}: is a folder, not a subvolume pickle or a store made by 'autoencoder3d dataset build'")
        return open_store(path)
    return cropped_to_box(load_subvolumes(path), path)


_TOLD: set[str] = set()  # the pickles whose crop this process has reported


def cropped_to_box(subvolumes: SubvolumeSet, path: str | os.PathLike) -> SubvolumeSet:
    """A pickle's subvolumes whose edges are no multiples of 4 (another program's, e.g. 30^3), cropped
    about their centre voxel to the largest shape that is (28^3), with one warning line; others as they are.

    The centre voxel ``n // 2`` stays the centre voxel, so the recorded centres still hold. Edges below 4 are
    left for the box rule to refuse (:func:`autoencoder3d.box.check_subvolume_shape`).
    """
    shape = tuple(int(s) for s in subvolumes.v_siz)
    fitted = fitting_shape(shape)
    if fitted is None or fitted == shape:
        return subvolumes
    cut = tuple(slice(edge // 2 - new // 2, edge // 2 - new // 2 + new) for edge, new in zip(shape, fitted))
    subvolumes.volumes = np.ascontiguousarray(subvolumes.volumes[(slice(None),) + cut])
    if os.fspath(path) not in _TOLD:
        _TOLD.add(os.fspath(path))
        log.warning("%s: subvolumes of %s voxels cropped about their centres to %s (the autoencoder needs edges that are "
                    "multiples of 4); cut them again with such a --box to keep every voxel", os.fspath(path),
                    "x".join(map(str, shape)), "x".join(map(str, fitted)))
    return subvolumes


def store_polarity(data: str | os.PathLike) -> str | None:
    """The polarity a data-set store was built with ('dark'/'bright'), or None (a pickle, or mixed)."""
    from .store.store import is_store, read_manifest

    if not os.path.isdir(data) or not is_store(data):
        return None
    manifest = read_manifest(data)
    built = recorded_polarity(manifest.get("polarity"))
    if built is not None:
        return built
    used = {part.get("polarity") for part in manifest.get("parts") or []}
    return recorded_polarity(used.pop()) if len(used) == 1 else None


def data_polarity(data: str | os.PathLike, subvolumes: SubvolumeSet) -> str | None:
    """The contrast polarity the opened DATA records: a store's (:func:`store_polarity`), a pickle's from ``pose`` or ``pick``; else None."""
    if not subvolumes.in_memory:
        return store_polarity(data)
    return recorded_polarity((subvolumes.prepared or {}).get("polarity"))
