"""The published subvolume pickle (``{'v_siz', 'vs': {uuid: {'v', 'center', ...}}}``) and plain pickles.

This is the only module that reads or writes the published subvolume pickle
(MRC files: :mod:`.mrc`; JSON: :mod:`.json`).

Pickles can run code when loaded, so every pickle is read by
:mod:`autoencoder3d.formats.safe_pickle`, which builds only what the published format
needs: numeric numpy arrays and scalars, builtin containers, numbers and strings.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from ..errors import InputError, brief
from ..util.atomic import atomic_open
from ..volume import SubvolumeSet
from . import safe_pickle as unpickle
from .safe_pickle_globals import NotAPickle, RefusedPickle

PICKLE_PROTOCOL = 4
PREPARED_KEY = "autoencoder3d"  # a key of the pickle's dict besides 'v_siz' and 'vs': how its subvolumes were prepared
# The largest subvolume side 'v_siz' may give (a 1024^3 float32 volume is 4 GiB).
MAX_SUBVOLUME_SIDE = 1024


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a data pickle safely (Python 2 or 3, protocols 0 to 5).

    The pickle is read by :mod:`autoencoder3d.formats.safe_pickle`, which builds only plain
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


def save_pickle(path: str | os.PathLike[str], obj: object) -> None:
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


def subvolumes_from_dict(d: object, path: str | os.PathLike[str] = "<dict>") -> SubvolumeSet:
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


def load_subvolumes(path: str | os.PathLike[str]) -> SubvolumeSet:
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


def subvolumes_to_dict(subvolumes: SubvolumeSet) -> dict[str, Any]:
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


def save_subvolumes(path: str | os.PathLike[str], subvolumes: SubvolumeSet) -> None:
    """Write a :class:`SubvolumeSet` as a published-format pickle, atomically."""
    save_pickle(path, subvolumes_to_dict(subvolumes))


