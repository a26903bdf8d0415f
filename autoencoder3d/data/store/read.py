"""Reading a store as a :class:`~autoencoder3d.volume.SubvolumeSet` whose volumes stay on disk."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError, brief
from ...volume import SubvolumeSet
from .chunks import FEW, ChunkCache, PartChunks
from .store import is_store, read_manifest
from .strict import strict_store
from .trust import check_store, check_uuids

if TYPE_CHECKING:
    import zarr
    from numpy.typing import ArrayLike


class StoreVolumes:
    """The store's subvolumes as a read-only ``(N, n1, n2, n3)`` float32 array on disk.

    Indexing with an int, a slice or an integer array reads just those
    subvolumes (any order, repeats allowed) and returns float32 in memory. The
    indices are grouped by chunk and each chunk is read once, whole
    (:class:`~.chunks.PartChunks`); with several subvolumes per chunk the
    chunks read last are kept (:class:`~.chunks.ChunkCache`), so batches drawn
    from a few chunks at a time (:meth:`chunk_ids`) read each chunk once; a few
    subvolumes of a chunk not kept are read alone (scattered indices).
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, arrays: Sequence[zarr.Array], v_siz: Sequence[int], path: str) -> None:
        self._arrays = arrays
        self.path = path
        self._parts = [PartChunks(array.store.path, array) for array in arrays]  # each part's store is its folder
        counts = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self.shape = (int(self._starts[-1]),) + tuple(int(s) for s in v_siz)
        self.stored_dtype = np.dtype(arrays[0].dtype) if arrays else np.dtype(np.float32)
        self.subvolumes_per_chunk = max([p.per_chunk for p in self._parts], default=1)
        self._chunk_starts = np.concatenate([[0], np.cumsum([p.n_chunks for p in self._parts])]).astype(np.int64)
        self._cache = ChunkCache() if self.subvolumes_per_chunk > 1 else None

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.stored_dtype.itemsize

    @property
    def chunk_bytes(self) -> int:
        """Bytes of the largest chunk."""
        return max([p.chunk_bytes for p in self._parts], default=0)

    def chunk_ids(self, indices: ArrayLike) -> np.ndarray:
        """The chunk (numbered across the whole store) each subvolume of ``indices`` is stored in."""
        indices = np.asarray(indices, dtype=np.int64)
        part = np.searchsorted(self._starts, indices, side="right") - 1
        per = np.array([p.per_chunk for p in self._parts], dtype=np.int64)
        return self._chunk_starts[part] + (indices - self._starts[part]) // per[part]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._read(np.array([int(key)]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(len(self))[key])
        if isinstance(key, tuple) or key is Ellipsis:
            raise TypeError("a store's volumes are indexed by subvolume only: an int, a slice or an integer array")
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        return self._read(indices.astype(np.int64).ravel())

    def __array__(self, dtype=None, copy=None):
        whole = self._read(np.arange(len(self)))
        return whole if dtype is None else whole.astype(dtype)

    def _rows(self, part, chunk, rows):
        """Subvolumes ``rows`` of a part's chunk: from the kept chunks, by their bytes alone when few
        of a chunk not kept are wanted, else from the whole chunk (then kept)."""
        chunks = self._parts[part]
        if self._cache is None:
            return chunks.read(chunk)[rows]
        kept = self._cache.peek((part, chunk))
        if kept is not None:
            return kept[rows]
        if len(np.unique(rows)) * FEW < chunks.per_chunk:
            return chunks.read_rows(chunk, rows)
        return self._cache.get((part, chunk), lambda: chunks.read(chunk))[rows]

    def _read(self, indices):
        n = len(self)
        if np.any((indices < -n) | (indices >= n)):
            raise IndexError(f"subvolume index out of range for a store of {n}")
        indices = np.where(indices < 0, indices + n, indices)
        out = np.empty((len(indices),) + self.shape[1:], dtype=np.float32)
        order = np.argsort(indices, kind="stable")
        wanted = indices[order]
        bounds = np.searchsorted(wanted, self._starts)  # wanted[bounds[p]:bounds[p + 1]] lie in part p
        for part in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[part], bounds[part + 1]
            local = wanted[lo:hi] - self._starts[part]
            per = self._parts[part].per_chunk
            chunks = local // per
            cuts = np.concatenate([[0], np.flatnonzero(np.diff(chunks)) + 1, [len(local)]])
            for a, b in zip(cuts[:-1], cuts[1:]):
                chunk = int(chunks[a])
                out[order[lo + a : lo + b]] = self._rows(part, chunk, local[a:b] - chunk * per)
        self._check_finite(out, indices)
        return out

    def _check_finite(self, block, indices):
        """A NaN or infinite voxel is refused where it is read (training would report it as a diverged loss)."""
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1) if len(block) else np.ones(0, bool)
        if not finite.all():
            index = int(indices[np.flatnonzero(~finite)[0]])
            part = int(np.searchsorted(self._starts, index, side="right") - 1)
            raise InputError(f"{self.path}: subvolume {index - int(self._starts[part])} of part "
                             f"{os.path.basename(self._parts[part].folder)} holds NaN or infinite voxels "
                             "(so does its tomogram there, or the store is damaged)")


def _open_part(path, name):
    import zarr

    folder = os.path.join(os.fspath(path), "parts", name)
    try:
        group = zarr.open_group(strict_store(folder), mode="r")
        arrays = {key: group[key] for key in ("volumes", "uuid", "center", "rotation", "center_of_mass")}
        # the small arrays are read now, inside this guard: a truncated or corrupt chunk is numpy's or numcodecs' error
        arrays.update({key: arrays[key][:] for key in ("uuid", "center", "rotation", "center_of_mass")})
    except InputError:
        raise
    except Exception as err:  # zarr's own errors (MetadataError, ...), numcodecs' RuntimeError, numpy's ValueError
        raise InputError(f"{folder}: unreadable store part ({type(err).__name__}: {brief(str(err), 120, quote=False)}); "
                         "build the data set again") from None
    check_uuids(folder, [str(u) for u in arrays["uuid"]])
    return arrays


def open_store(path: str | os.PathLike) -> SubvolumeSet:
    """A complete store as a :class:`SubvolumeSet` (volumes read on demand).

    The set's ``tomograms`` holds each subvolume's tomogram name, ``rotations``
    and ``centers_of_mass`` its pose (NaN where not pose-normalized), and
    ``tomogram_table`` what the store knows of each tomogram (path, voxel size,
    shape).

    Raises:
        InputError: not a store, an unfinished build, or unreadable parts.
    """
    path = os.fspath(path)
    if not is_store(path):
        raise InputError(f"{path}: not a subvolume store (no zarr group here)")
    manifest = read_manifest(path)
    if not manifest.get("complete"):
        raise InputError(f"{path}: the data set's build did not finish; run 'autoencoder3d dataset build' again to finish it")
    check_store(path, manifest)
    parts = [_open_part(path, p["part"]) for p in manifest["parts"]]
    parts = [p for p in parts if p["volumes"].shape[0] > 0]
    if not parts:
        raise InputError(f"{path}: the data set holds no subvolumes")
    names = [p["name"] for p in manifest["parts"]]
    counts = [p["n"] for p in manifest["parts"]]
    uuids = [str(u) for part in parts for u in part["uuid"][:]]
    if len(set(uuids)) != len(uuids):
        raise InputError(f"{path}: subvolume uuids repeat across tomograms; build the data set again")
    subvolumes = SubvolumeSet(
        uuids=uuids,
        volumes=StoreVolumes([p["volumes"] for p in parts], manifest["v_siz"], path),
        centers=np.concatenate([p["center"] for p in parts]),
        voxel_size=_common_voxel_size(manifest["parts"]),
        tomograms=np.repeat(np.array(names, dtype=object), counts),
        rotations=np.concatenate([p["rotation"] for p in parts]),
        centers_of_mass=np.concatenate([p["center_of_mass"] for p in parts]),
        tomogram_table={p["name"]: {k: v for k, v in p.items() if k not in ("part", "n")} for p in manifest["parts"]},
        source=path,
        manifest=manifest,
    )
    return subvolumes


def _common_voxel_size(parts):
    sizes = {tuple(p.get("voxel_size") or ()) for p in parts}
    return sizes.pop() if len(sizes) == 1 and () not in sizes else None
