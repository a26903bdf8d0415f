"""In-memory data types: a set of subvolumes and a tomogram.

Axis convention (the published one, kept everywhere in the package): volumes are
numpy arrays indexed ``[x, y, z]``. mrcfile hands out ``[z, y, x]``; only
:mod:`autoencoder3d.io` touches files and transposes at that boundary.
Subvolume centres are tomogram voxel indices in the same ``x, y, z`` order.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SubvolumeSet:
    """Subvolumes cut from one tomogram, in a fixed sample order.

    Attributes:
        uuids: one identifier per subvolume (the published pickle's keys), in order.
        volumes: float32 array ``(N, n1, n2, n3)``.
        centers: float array ``(N, 3)`` of tomogram voxel coordinates (x, y, z);
            NaN where the input gave no centre.
        extras: per-uuid dict of any further keys to keep when writing (for
            example the pose-normalization ``'rotation'``).
        voxel_size: (x, y, z) in Angstrom when known, else None.
    """

    uuids: list
    volumes: np.ndarray
    centers: np.ndarray
    extras: dict = field(default_factory=dict)
    voxel_size: tuple = None

    def __post_init__(self):
        if len(self.uuids) != len(self.volumes) or len(self.uuids) != len(self.centers):
            raise ValueError("uuids, volumes and centers must have the same length")

    def __len__(self):
        return len(self.uuids)

    @property
    def v_siz(self):
        """Shape of one subvolume, as a tuple of ints."""
        return tuple(int(s) for s in self.volumes.shape[1:])

    def subset(self, indices):
        """A new set holding the subvolumes at ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=int)
        uuids = [self.uuids[i] for i in indices]
        return SubvolumeSet(
            uuids=uuids,
            volumes=self.volumes[indices],
            centers=self.centers[indices],
            extras={u: self.extras[u] for u in uuids if u in self.extras},
            voxel_size=self.voxel_size,
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
    def shape(self):
        return tuple(int(s) for s in self.data.shape)

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def cut_box(data, start, size, fill):
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
