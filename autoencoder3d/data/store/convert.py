"""The published pickle as a store, a store in the current layout, and a store's contents in a few lines."""

from __future__ import annotations

import os
import re
import shutil

from ...errors import InputError
from ...formats.star import tomo_key


def convert_pickle(pickle: str | os.PathLike, out: str | os.PathLike, tomogram: str | os.PathLike | None = None, dtype: str = "float32",
                   overwrite: bool = False) -> dict:
    """Write the subvolume pickle as a one-part store, in the pickle's order.

    The store is written under a temporary name beside ``out`` and renamed into
    place when complete, so ``out`` is never half written.

    Args:
        pickle: the published subvolume pickle.
        out: the store folder to write; it must not exist, unless ``overwrite``
            and it is a store (then it is replaced, whole, at the end).
        tomogram: the tomogram the subvolumes were cut from (its name, path,
            voxel size and shape go into the store), or None.
        dtype: ``float32`` (bitwise the pickle's volumes) or ``float16``.

    Returns:
        the finished manifest.
    """
    from ...formats.mrc import read_tomogram
    from ...formats.subvolume_pickle import load_subvolumes
    from ...util.atomic import atomic_directory
    from ...util.lock import RunFolderLock
    from ..open import cropped_to_box
    from .store import store_from_set, store_out

    out = store_out(out)
    subvolumes = cropped_to_box(load_subvolumes(pickle), pickle)
    info = {"name": tomo_key(os.path.splitext(os.fspath(pickle))[0]), "path": None}
    if tomogram is not None:
        tomo = read_tomogram(tomogram)
        info = {"name": tomo_key(tomogram), "path": os.path.abspath(tomogram),
                "voxel_size": [float(v) for v in tomo.voxel_size], "shape": list(tomo.shape)}
        tomo.close()
    _check_out(out, overwrite)
    with RunFolderLock(out, what="store", elsewhere="OUT"):
        _check_out(out, overwrite)  # again: another convert may have finished while this one waited
        _remove_stale_temporaries(out)
        with atomic_directory(out) as tmp:
            return store_from_set(tmp, subvolumes, tomogram=info, dtype=dtype)


def convert_store(source: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Rewrite the store ``source`` in the current layout (:data:`~.store.VERSION`) as ``out``.

    The subvolumes, their order, ids, centres, poses, each part's record and
    the manifest stay as they are (each part's small arrays and attributes are
    copied byte for byte, its subvolumes rewritten in chunks of the current
    size), so the new store has the same :func:`~.store.store_digest` as an
    uncompressed source. ``out`` may be ``source`` itself with ``overwrite``:
    the new store replaces it only when complete.

    Returns:
        the new store's manifest.
    """
    from ...util.atomic import atomic_directory
    from ...util.lock import RunFolderLock
    from .read import open_store
    from .store import store_out

    out = store_out(out)
    subvolumes = open_store(source)  # checked whole
    _check_out(out, overwrite)
    with RunFolderLock(out, what="store", elsewhere="OUT"):
        _check_out(out, overwrite)
        _remove_stale_temporaries(out)
        with atomic_directory(out) as tmp:
            return _rewrite(os.fspath(source), tmp, subvolumes)


def _rewrite(source, out, subvolumes):
    import zarr

    from .store import VERSION, _write_manifest, chunk_subvolumes_for
    from .trust import volume_chunks

    manifest = dict(subvolumes.manifest)
    per_chunk = chunk_subvolumes_for(manifest["v_siz"], manifest["dtype"])
    zarr.open_group(out, mode="a").require_group("parts")
    start = 0
    for part in manifest["parts"]:
        old, new = os.path.join(source, "parts", part["part"]), os.path.join(out, "parts", part["part"])
        for name in ("", "uuid", "center", "rotation", "center_of_mass"):  # "": the part's .zgroup and .zattrs
            _copy_files(os.path.join(old, name), os.path.join(new, name))
        n = int(part["n"])
        array = zarr.open_array(os.path.join(new, "volumes"), mode="w", shape=(n, *manifest["v_siz"]), dtype=manifest["dtype"],
                                chunks=volume_chunks(n, per_chunk, manifest["v_siz"]), compressor=None)
        step = per_chunk * max(1, 256 // per_chunk)
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            array[lo:hi] = subvolumes.volumes[start + lo : start + hi]
        start += n
    manifest.update(version=VERSION, chunk_subvolumes=per_chunk)
    _write_manifest(out, manifest)
    return manifest


def _copy_files(old, new):
    """Copy the plain files of the folder ``old`` (a checked store's: no links, no pipes) into ``new``, byte for byte."""
    from .strict import read_bytes

    os.makedirs(new, exist_ok=True)
    with os.scandir(old) as entries:
        names = sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))
    for name in names:
        with open(os.path.join(new, name), "wb") as handle:
            handle.write(read_bytes(os.path.join(old, name)))


def _check_out(out, overwrite):
    from .store import is_fresh, is_store

    if is_fresh(out):
        return
    if not overwrite:
        raise InputError(f"{out}: exists; choose a new name, or pass --overwrite to replace the store")
    if not is_store(out):
        raise InputError(f"{out}: exists and is not a subvolume store; --overwrite replaces only a store")


def _remove_stale_temporaries(out):
    """The temporary stores of converts to ``out`` that were killed (``.NAME.XXXXXXXX.tmp`` beside it)."""
    parent, name = os.path.split(os.path.abspath(out))
    pattern = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp$")
    for entry in os.scandir(parent):
        if pattern.match(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def describe_store(path: str | os.PathLike) -> list[str]:
    """Lines saying what a store holds: one per tomogram (name, count, voxel size), then the totals."""
    from .read import open_store

    subvolumes = open_store(path)
    manifest = subvolumes.manifest
    lines = []
    for part in manifest["parts"]:
        size = part.get("voxel_size")
        size = "?" if not size else "x".join(f"{float(v):g}" for v in size) + " A"
        lines.append(f"{part['name']}\t{part['n']}\t{size}")
    volumes = subvolumes.volumes
    gib = volumes.nbytes / 2**30
    pose = "pose-normalized" if manifest.get("pose_normalized") else "not pose-normalized"
    lines.append(f"total: {len(subvolumes)} subvolumes of {'x'.join(map(str, manifest['v_siz']))} in "
                 f"{len(manifest['parts'])} tomograms, {manifest['dtype']} ({gib:.3g} GiB), {pose}")
    return lines

