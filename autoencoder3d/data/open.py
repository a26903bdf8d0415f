"""DATA, opened: a published subvolume pickle or an on-disk data-set store, as one SubvolumeSet."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import InputError
from ..formats.subvolume_pickle import load_subvolumes
from ..prep.contrast import recorded_polarity

if TYPE_CHECKING:
    from ..volume import SubvolumeSet


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
    return load_subvolumes(path)


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
