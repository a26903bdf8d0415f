"""In-memory data types: a set of subvolumes and a tomogram.

Axis convention (the published one, kept everywhere in the package): volumes are
numpy arrays indexed ``[x, y, z]``. mrcfile hands out ``[z, y, x]``; only
:mod:`autoencoder3d.formats.subvolume_pickle` touches files and transposes at that boundary.
Subvolume centres are tomogram voxel indices in the same ``x, y, z`` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray


class Volumes(Protocol):
    """What code reading subvolumes may rely on: an ``(N, n1, n2, n3)`` array, or a store's on-disk stand-in read by index."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def __getitem__(self, index: object) -> np.ndarray: ...


@dataclass
class SubvolumeSet:
    """Subvolumes cut from one or more tomograms, in a fixed sample order.

    The published pickle loads as a set in memory; an on-disk store
    (:mod:`autoencoder3d.data.store`) as a set whose ``volumes`` are read on demand.

    Attributes:
        uuids: one identifier per subvolume (the published pickle's keys), in order.
        volumes: float32 array ``(N, n1, n2, n3)``, or an object indexed like one
            (:class:`~autoencoder3d.data.store.read.StoreVolumes`): code that must work on
            both reads it by index (``volumes[indices]``), never whole.
        centers: float array ``(N, 3)`` of tomogram voxel coordinates (x, y, z);
            NaN where the input gave no centre.
        extras: per-uuid dict of any further keys to keep when writing (for
            example the pose-normalization ``'rotation'``).
        voxel_size: (x, y, z) in Angstrom when known, else None.
        tomograms: each subvolume's tomogram name (N,), or None for one tomogram
            that the set does not name (the published pickle).
        rotations, centers_of_mass: (N, 3, 3) and (N, 3) pose-normalization poses
            held as arrays (a store; NaN rows where none), else None (a pickle keeps
            them in ``extras``).
        tomogram_table: tomogram name -> what is known of it (path, voxel_size, shape).
        source: the file or folder the set was read from.
        manifest: a store's manifest (None for a pickle).
        prepared: how a pickle's subvolumes were prepared, as the pickle records it
            (``{"polarity": "bright"}`` from ``autoencoder3d pose`` or ``pick``), or None.
    """

    uuids: list
    volumes: np.ndarray
    centers: np.ndarray
    extras: dict = field(default_factory=dict)
    voxel_size: tuple = None
    tomograms: np.ndarray = None
    rotations: np.ndarray = None
    centers_of_mass: np.ndarray = None
    tomogram_table: dict = None
    source: str = None
    manifest: dict = None
    prepared: dict = None

    def __post_init__(self):
        if len(self.uuids) != len(self.volumes) or len(self.uuids) != len(self.centers):
            raise ValueError("uuids, volumes and centers must have the same length")

    def __len__(self):
        return len(self.uuids)

    @property
    def v_siz(self) -> tuple[int, ...]:
        """Shape of one subvolume, as a tuple of ints."""
        return tuple(int(s) for s in self.volumes.shape[1:])

    @property
    def in_memory(self) -> bool:
        """Whether the volumes are one numpy array (not read from disk on demand)."""
        return isinstance(self.volumes, np.ndarray)

    def tomogram_of(self, i: int) -> str | None:
        """Name of subvolume ``i``'s tomogram, or None when the set names none."""
        return None if self.tomograms is None else str(self.tomograms[i])

    def pose_of(self, i: int) -> tuple[np.ndarray, ArrayLike | None] | tuple[None, None]:
        """(rotation 3x3, centre of mass) of subvolume ``i``, or (None, None) without a pose."""
        if self.rotations is not None:
            rotation = self.rotations[i]
            if np.all(np.isfinite(rotation)):
                return rotation, self.centers_of_mass[i]
            return None, None
        extra = self.extras.get(self.uuids[i], {})
        rotation = extra.get("rotation")
        return (None, None) if rotation is None else (np.asarray(rotation, dtype=float), extra.get("center_of_mass"))

    def subset(self, indices: Sequence[int] | np.ndarray) -> SubvolumeSet:
        """A new set holding the subvolumes at ``indices`` (in that order; volumes read into memory)."""
        indices = np.asarray(indices, dtype=int)
        uuids = [self.uuids[i] for i in indices]

        def pick(values):
            return None if values is None else values[indices]

        return SubvolumeSet(
            uuids=uuids,
            volumes=self.volumes[indices],
            centers=self.centers[indices],
            extras={u: self.extras[u] for u in uuids if u in self.extras},
            voxel_size=self.voxel_size,
            tomograms=pick(self.tomograms),
            rotations=pick(self.rotations),
            centers_of_mass=pick(self.centers_of_mass),
            tomogram_table=self.tomogram_table,
            source=self.source,
            prepared=self.prepared,
        )


@dataclass
class Tomogram:
    """A tomogram, usually memory-mapped from its MRC file.

    Attributes:
        data: array indexed ``[x, y, z]`` (a transposed view of the file's data;
            nothing is read until a region is sliced).
        voxel_size: (x, y, z) voxel spacing in Angstrom (0 where the header has none).
        path: the file it came from, for messages.
    """

    data: np.ndarray
    voxel_size: tuple = (0.0, 0.0, 0.0)
    path: str = "<array>"
    _handle: object = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def cut_box(data: np.ndarray, start: Sequence[int] | np.ndarray, size: int | Sequence[int], fill: float) -> NDArray[np.float32]:
    """Cut ``data[start : start + size]`` as float32, filling outside parts with ``fill``.

    Args:
        data: 3D array (may be a memory map; only the overlapping part is read).
        start: 3 integer start indices (may be negative).
        size: 3 integer box sides (or one int for a cube).
        fill: value for voxels outside ``data``.

    Returns:
        float32 array of shape ``size``.
    """
    start = np.asarray(start, dtype=np.int64)
    size = np.broadcast_to(np.asarray(size, dtype=np.int64), (3,))
    box = np.full(tuple(size), fill, dtype=np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, data.shape)
    if np.any(hi <= lo):
        return box
    src = tuple(slice(a, b) for a, b in zip(lo, hi))
    dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
    box[dst] = data[src]
    return box
