"""Data sets of many tomograms: the on-disk subvolume store and how it is built.

- :mod:`.store`: the store's layout, creating it, writing one tomogram's part.
- :mod:`.read`: opening a store as a :class:`~autoencoder3d.volume.SubvolumeSet`
  whose volumes are read from disk on demand, whole chunks at a time (:mod:`.chunks`).
- :mod:`.convert`: a pickle, or a store of an earlier layout, written as a store.
"""

from .read import StoreVolumes, open_store
from .store import create_store, finish_store, is_store, read_manifest

__all__ = ["StoreVolumes", "create_store", "finish_store", "is_store", "open_store", "read_manifest"]
