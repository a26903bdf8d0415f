"""All file input and output: subvolume pickles, MRC tomograms, plain pickles.

This is the only module that reads or writes MRC files or the published
subvolume pickle. MRC data come from mrcfile as ``[z, y, x]`` and are transposed
here to the package's ``[x, y, z]`` convention (and back when writing).

Pickles can run code when loaded, so every pickle is read by
:mod:`autoencoder3d.unpickle`, which builds only what the published format
needs: numeric numpy arrays and scalars, builtin containers, numbers and strings.
"""

import contextlib
import os
import pickle
import warnings

import numpy as np

from . import unpickle
from .atomic import atomic_open, atomic_path
from .errors import InputError, brief
from .unpickle_globals import NotAPickle, RefusedPickle
from .volume import SubvolumeSet, Tomogram

PICKLE_PROTOCOL = 4
PREPARED_KEY = "autoencoder3d"  # a key of the pickle's dict besides 'v_siz' and 'vs': how its subvolumes were prepared
# The largest subvolume side 'v_siz' may give (a 1024^3 float32 volume is 4 GiB).
MAX_SUBVOLUME_SIDE = 1024


def load_pickle(path):
    """Load a data pickle safely (Python 2 or 3, protocols 0 to 5).

    The pickle is read by :mod:`autoencoder3d.unpickle`, which builds only plain
    data (numbers, strings, containers, numeric numpy arrays) within limits set
    by the file's size. Python 2 strings come back as latin1-decoded ``str``,
    which restores numpy's raw bytes exactly.

    Raises:
        InputError: missing or unreadable file, not a pickle, or a pickle that
            asks for anything beyond plain data or exceeds a limit.
    """
    path = os.fspath(path)
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise InputError(f"{path}: cannot read file ({err.strerror})") from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            return unpickle.load(handle, size)
        except RefusedPickle as err:
            raise InputError(f"{path}: refused to load: {err}") from None
        except NotAPickle as err:
            raise InputError(f"{path}: not a readable pickle ({err})") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read file ({err.strerror})") from None
        except MemoryError:
            raise InputError(f"{path}: not enough memory to load this pickle") from None


def load_json(text):
    """``json.loads`` whose nesting too deep for Python's recursion limit is a ValueError like any other bad JSON."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path, what="file"):
    """Load a JSON file; ``what`` names it in the error (e.g. "selection file").

    Raises:
        InputError: missing, unreadable or not JSON.
    """
    import json

    path = os.fspath(path)
    try:
        with open(path) as handle:
            return load_json(handle.read())
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON for a {what} ({err})") from None


def save_pickle(path, obj):
    """Write ``obj`` as a pickle, atomically."""
    with atomic_open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=PICKLE_PROTOCOL)


def _parse_v_siz(path, raw):
    try:
        flat = np.asarray(raw).ravel()
    except (TypeError, ValueError):
        flat = np.empty(0)
    whole = flat.shape == (3,) and flat.dtype.kind in "iuf" and np.all(np.isfinite(flat)) and np.all(flat == np.round(flat))
    if not whole or flat.min() <= 0:
        raise InputError(f"{path}: 'v_siz' must be three positive integers, got {brief(raw)}")
    v_siz = tuple(int(s) for s in flat)
    if max(v_siz) > MAX_SUBVOLUME_SIDE:
        raise InputError(f"{path}: 'v_siz' {v_siz} is not a subvolume size (each side must be at most {MAX_SUBVOLUME_SIDE} voxels)")
    return v_siz


def _parse_center(path, uuid, raw):
    if raw is None:
        return np.full(3, np.nan)
    try:
        center = np.asarray(raw, dtype=float).ravel()
    except (TypeError, ValueError):
        center = np.empty(0)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise InputError(f"{path}: subvolume {uuid}: 'center' must be three finite numbers (x, y, z), got {brief(raw)}")
    return center


def _check_volume(path, uuid, v, v_siz):
    try:
        v = np.asarray(v)
    except (TypeError, ValueError):
        raise InputError(f"{path}: subvolume {uuid}: 'v' must be a numeric array, got {brief(v)}") from None
    if v.dtype.kind not in "biuf":
        raise InputError(f"{path}: subvolume {uuid}: 'v' must be a numeric array, got dtype {brief(str(v.dtype))}")
    if v.shape != v_siz:
        raise InputError(f"{path}: subvolume {uuid} has shape {brief(v.shape)}, but 'v_siz' says {v_siz}")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
        raise InputError(f"{path}: subvolume {uuid} contains non-finite voxels (NaN or inf)")
    return v


def _usable_records(path, records):
    """(uuid, record) of the entries of 'vs' whose 'v' is not None; uuids cut short for messages."""
    if not isinstance(records, dict):
        raise InputError(f"{path}: 'vs' must be a dict of uuid -> {{'center', 'id', 'v'}}")
    usable = []
    for key, rec in records.items():
        if not isinstance(rec, dict) or "v" not in rec:
            raise InputError(f"{path}: subvolume {brief(str(key), quote=False)}: each entry of 'vs' must be a dict with a 'v' key")
        if rec["v"] is not None:
            usable.append((str(key), rec))
    if not usable:
        raise InputError(f"{path}: no usable subvolumes (every 'v' is None or 'vs' is empty)")
    return usable


def subvolumes_from_dict(d, path="<dict>"):
    """Build a :class:`SubvolumeSet` from a dict in the published pickle format.

    Entries whose ``'v'`` is None are skipped; keys other than ``center``,
    ``id`` and ``v`` are kept in ``extras``; the dict's order is the sample order.
    Every volume's shape is checked before the float32 stack is allocated, so
    the allocation never exceeds what the pickle's own volumes hold.
    """
    if not isinstance(d, dict) or "v_siz" not in d or "vs" not in d:
        raise InputError(f"{path}: not a subvolume pickle: expected a dict with the keys 'v_siz' and 'vs'")
    v_siz = _parse_v_siz(path, d["v_siz"])
    usable = _usable_records(path, d["vs"])
    arrays = [_check_volume(path, brief(uuid, quote=False), rec["v"], v_siz) for uuid, rec in usable]
    centers = np.array([_parse_center(path, brief(uuid, quote=False), rec.get("center")) for uuid, rec in usable])
    volumes = np.empty((len(usable),) + v_siz, dtype=np.float32)
    extras = {}
    for i, (uuid, rec) in enumerate(usable):
        volumes[i] = arrays[i]
        more = {k: v for k, v in rec.items() if k not in ("v", "center", "id")}
        if more:
            extras[uuid] = more
    if not np.all(np.isfinite(volumes)):
        raise InputError(f"{path}: some subvolumes have voxels too large for float32")
    return SubvolumeSet(uuids=[u for u, _ in usable], volumes=volumes, centers=centers, extras=extras,
                        prepared=_parse_prepared(path, d.get(PREPARED_KEY)))


def _parse_prepared(path, raw):
    """The pickle's record of how its subvolumes were prepared (published readers ignore the key), or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("polarity") not in ("dark", "bright"):
        raise InputError(f"{path}: '{PREPARED_KEY}' is {brief(raw)}, not a record of the subvolumes' polarity (dark or bright)")
    return {"polarity": raw["polarity"]}


def load_subvolumes(path):
    """Read a subvolume pickle in the published format.

    Args:
        path: the pickle: ``{'v_siz': array([n1, n2, n3]), 'vs': {uuid: {'center': [x, y, z],
            'id': uuid, 'v': array or None, ...}}}``, written by Python 2 or 3.

    Returns:
        SubvolumeSet with float32 volumes in the pickle's order.

    Raises:
        InputError: with the file name and the problem.
    """
    subvolumes = subvolumes_from_dict(load_pickle(path), os.fspath(path))
    subvolumes.source = os.fspath(path)
    return subvolumes


def load_dataset(path):
    """Read DATA: a published subvolume pickle (into memory) or an on-disk store (volumes stay on disk).

    Returns:
        SubvolumeSet; for a store, its ``volumes`` read subvolumes by index from disk.

    Raises:
        InputError: with the file name and the problem.
    """
    from .dataset import is_store, open_store

    if os.path.isdir(os.fspath(path)):
        if not is_store(path):
            raise InputError(f"{os.fspath(path)}: is a folder, not a subvolume pickle or a store made by 'autoencoder3d dataset build'")
        return open_store(path)
    return load_subvolumes(path)


def subvolumes_to_dict(subvolumes):
    """The published pickle dict for a :class:`SubvolumeSet`."""
    vs = {}
    for uuid, v, center in zip(subvolumes.uuids, subvolumes.volumes, subvolumes.centers):
        if np.all(np.isfinite(center)) and np.all(center == np.round(center)):
            center_out = [int(c) for c in center]
        elif np.all(np.isfinite(center)):
            center_out = [float(c) for c in center]
        else:
            center_out = None
        rec = {"center": center_out, "id": uuid, "v": np.asarray(v)}
        rec.update(subvolumes.extras.get(uuid, {}))
        vs[uuid] = rec
    d = {"v_siz": np.array(subvolumes.v_siz), "vs": vs}
    if subvolumes.prepared:
        d[PREPARED_KEY] = dict(subvolumes.prepared)
    return d


def save_subvolumes(path, subvolumes):
    """Write a :class:`SubvolumeSet` as a published-format pickle, atomically."""
    save_pickle(path, subvolumes_to_dict(subvolumes))


def read_tomogram(path):
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
        handle.close()
        raise InputError(f"{path}: not a readable MRC file (no valid header or data)")
    if data.ndim != 3 or min(data.shape) < 2:
        handle.close()
        raise InputError(
            f"{path}: is a {data.ndim}D image of shape {data.shape}, not a 3D tomogram "
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
    vs = handle.voxel_size  # cella / (mx, my, mz): already along x, y, z whatever the storage order
    voxel_size = (float(vs.x), float(vs.y), float(vs.z))
    return Tomogram(data=data.transpose(2, 1, 0).transpose(order), voxel_size=voxel_size, path=path, _handle=handle)


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


def write_mrc(path, volume, voxel_size=None, label=None):
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

    def __init__(self, mrc, shape):
        self._mrc = mrc
        self.shape = shape
        self._stats = [np.inf, -np.inf, 0.0, 0.0]  # min, max, sum, sum of squares

    def write(self, z0, block):
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
def open_mrc_stream(path, shape, dtype, voxel_size=None):
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
