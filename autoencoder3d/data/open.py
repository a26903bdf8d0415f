"""DATA, opened: a published subvolume pickle or an on-disk data-set store, as one SubvolumeSet."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import InputError
from ..formats.subvolume_pickle import load_subvolumes

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
