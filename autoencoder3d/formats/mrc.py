"""MRC tomograms and volumes: the only module that reads or writes MRC files.

mrcfile hands data as ``[z, y, x]``; they are transposed here to the package's
``[x, y, z]`` convention (and back when writing). Every MRC written carries the
voxel size.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..errors import InputError
from ..util.atomic import atomic_path
from ..volume import Tomogram

if TYPE_CHECKING:
    from mrcfile.mrcmemmap import MrcMemmap


def read_tomogram(path: str | os.PathLike[str]) -> Tomogram:
    """Open an MRC/REC tomogram, memory-mapped, as a :class:`Tomogram` indexed [x, y, z].

    Headers with minor problems are accepted (mrcfile's permissive mode);
    gzip/bzip2-compressed files are read whole since they cannot be mapped.

    Raises:
        InputError: missing file, not an MRC file, or not a 3D volume.
    """
    import mrcfile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: tomogram file not found")
    opener = mrcfile.open if path.endswith((".gz", ".bz2")) else mrcfile.mmap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            handle = opener(path, mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as err:
            raise InputError(f"{path}: not a readable MRC file ({err})") from None
    data = handle.data
    if data is None:
        why = _why_no_data(handle.header, path)
        handle.close()
        raise InputError(f"{path}: not a readable MRC file ({why})")
    if data.ndim != 3 or min(data.shape) < 2:
        handle.close()
        shape = " x ".join(str(n) for n in data.shape[::-1])  # x first
        raise InputError(
            f"{path}: is a {data.ndim}D image of {shape} voxels, not a 3D tomogram "
            "(micrographs and single images cannot be used)"
        )
    if data.dtype.kind not in "iuf":
        handle.close()
        raise InputError(f"{path}: MRC data type {data.dtype} is not supported (real-valued volumes only)")
    order = _xyz_axes(handle.header, path)
    if order is None:
        mapping = _axis_map(handle.header)
        handle.close()
        raise InputError(f"{path}: MRC axis order mapc/mapr/maps = {mapping} is not a permutation of 1, 2, 3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mx = 0 divides by zero: no voxel size
        vs = handle.voxel_size  # cella / (mx, my, mz): already along x, y, z whatever the storage order
    voxel_size = tuple(float(v) if math.isfinite(v) else 0.0 for v in (vs.x, vs.y, vs.z))
    return Tomogram(data=data.transpose(2, 1, 0).transpose(order), voxel_size=voxel_size, path=path, _handle=handle)


_MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}  # the real-valued modes
_OTHER_MODES = {3: "complex 16-bit", 4: "complex 32-bit", 101: "4-bit"}


def _why_no_data(header, path):
    """Why mrcfile found no data block: the mode, the sizes, or a file shorter than its header says."""
    mode, size = int(header.mode), [int(header.nx), int(header.ny), int(header.nz)]
    if mode in _OTHER_MODES:
        return f"mode {mode}, {_OTHER_MODES[mode]} data, is not supported: real-valued volumes only (modes 0, 1, 2, 6, 12)"
    if mode not in _MODE_BYTES:
        return f"mode {mode} is no MRC data type: not an MRC file, or its header is damaged"
    if min(size) < 1:
        return f"its header gives the size {size[0]} x {size[1]} x {size[2]}, not three positive numbers: the header is damaged"
    needed = 1024 + max(int(header.nsymbt), 0) + size[0] * size[1] * size[2] * _MODE_BYTES[mode]
    compressed = path.endswith((".gz", ".bz2"))
    if not compressed and os.path.getsize(path) >= needed:
        return "no valid header or data"
    held = "its data ends before that" if compressed else f"the file holds {os.path.getsize(path)}"
    return (f"its header says {size[0]} x {size[1]} x {size[2]} voxels of mode {mode}, {needed} bytes with the header, "
            f"but {held}: cut short (copy it again) or a damaged header")


def _axis_map(header):
    return tuple(int(header[name]) for name in ("mapc", "mapr", "maps"))


def _xyz_axes(header, path):
    """Axes of the [column, row, section] array that hold x, y, z (MRC2014 mapc/mapr/maps), or None if invalid.

    Files that leave the fields 0 (some old writers) are read as 1, 2, 3.
    """
    mapping = _axis_map(header)
    if mapping == (0, 0, 0):
        mapping = (1, 2, 3)
    if sorted(mapping) != [1, 2, 3]:
        return None
    return tuple(mapping.index(axis) for axis in (1, 2, 3))


def write_mrc(
    path: str | os.PathLike[str], volume: ArrayLike, voxel_size: float | Sequence[float] | None = None,
    label: str | None = None,
) -> None:
    """Write a volume indexed [x, y, z] as an MRC file, atomically.

    Args:
        path: destination.
        volume: 3D array; float64 is stored as float32, other mrcfile dtypes as they are.
        voxel_size: Angstrom per voxel, one number or (x, y, z); the input's, so
            that the file overlays on the tomogram.
        label: the header's one label (at most 80 ASCII characters); by default
            mrcfile's, which holds the creation time (so files differ run to run).
    """
    import mrcfile

    volume = np.asarray(volume)
    if volume.dtype == np.float64:
        volume = volume.astype(np.float32)
    if volume.dtype == np.bool_:
        volume = volume.astype(np.uint8)
    with atomic_path(path, suffix=".mrc") as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(volume.transpose(2, 1, 0)))
            if voxel_size is not None:
                mrc.voxel_size = tuple(float(s) for s in np.broadcast_to(voxel_size, (3,)))
            if label is not None:
                mrc.header.label[0] = label.encode("ascii")[:80]
                mrc.header.nlabl = 1


class MrcStreamWriter:
    """An MRC file written plane by plane along z (see :func:`open_mrc_stream`)."""

    def __init__(self, mrc: MrcMemmap, shape: tuple[int, int, int]):
        self._mrc = mrc
        self.shape = shape
        self._stats = [np.inf, -np.inf, 0.0, 0.0]  # min, max, sum, sum of squares

    def write(self, z0: int, block: ArrayLike) -> None:
        """Write ``block`` (indexed [x, y, z]) at planes ``z0 : z0 + block.shape[2]``."""
        block = np.asarray(block)
        self._mrc.data[z0 : z0 + block.shape[2]] = block.transpose(2, 1, 0)
        values = block.astype(np.float64, copy=False)
        self._stats[0] = min(self._stats[0], float(values.min()))
        self._stats[1] = max(self._stats[1], float(values.max()))
        self._stats[2] += float(values.sum())
        self._stats[3] += float(np.square(values).sum())

    def _finish(self):
        n = float(np.prod(self.shape))
        low, high, total, squares = self._stats
        header = self._mrc.header
        if np.isfinite(low):
            mean = total / n
            header.dmin, header.dmax, header.dmean = low, high, mean
            header.rms = float(np.sqrt(max(squares / n - mean * mean, 0.0)))


@contextlib.contextmanager
def open_mrc_stream(
    path: str | os.PathLike[str], shape: Sequence[int], dtype: DTypeLike, voxel_size: float | Sequence[float] | None = None,
) -> Iterator[MrcStreamWriter]:
    """Create an MRC file of ``shape`` (x, y, z) to fill plane by plane, without holding it in memory.

    The file is memory-mapped and appears at ``path`` only when the block ends
    cleanly. ``uint8``/``int8`` are written as 8-bit (mode 0; values below 128
    read the same as signed or unsigned), anything else as float32 (mode 2).

    Yields:
        :class:`MrcStreamWriter`.
    """
    import mrcfile

    mode = 0 if np.dtype(dtype) in (np.dtype(np.uint8), np.dtype(np.int8)) else 2
    nx, ny, nz = (int(s) for s in shape)
    with atomic_path(path, suffix=".mrc") as tmp:
        with mrcfile.new_mmap(tmp, shape=(nz, ny, nx), mrc_mode=mode, overwrite=True) as mrc:
            if voxel_size is not None:
                mrc.voxel_size = tuple(float(s) for s in np.broadcast_to(voxel_size, (3,)))
            writer = MrcStreamWriter(mrc, (nx, ny, nz))
            yield writer
            writer._finish()
