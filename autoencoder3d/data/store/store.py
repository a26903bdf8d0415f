"""The on-disk subvolume store: a data set of many tomograms in one zarr folder.

Layout (zarr v2, no compression: tomogram noise does not compress)::

    NAME.zarr/                    root group; attrs["autoencoder3d"] = manifest
        parts/00000/              one group per tomogram, written by one worker
            volumes   (n, n1, n2, n3) float32 or float16, chunk_subvolumes subvolumes per chunk
            uuid      (n,)   text
            center    (n, 3) float64, voxel x, y, z in that tomogram
            rotation  (n, 3, 3) float64, pose-normalization rotation (NaN: none)
            center_of_mass (n, 3) float64 (NaN: none)
        parts/00001/ ...
        .autoencoder3d.lock       while a build or convert writes (see :class:`~autoencoder3d.util.lock.RunFolderLock`)

A part's group attributes hold its tomogram's entry of the manifest and, from
a build, its ``origin``: a hash of its rows and a fingerprint of its tomogram,
which a resumed build compares (:func:`~autoencoder3d.data.sources.jobs.job_origin`).
Before anything is read, :mod:`.trust` checks the store against the manifest.

A part is written under a temporary name and renamed into place only when it
is complete, so a killed build leaves whole parts and at most one temporary
folder, which the next build removes. The manifest lists the complete parts in
order; the data set's sample order is part by part, then row by row.

A chunk of ``volumes`` holds ``chunk_subvolumes`` consecutive subvolumes (the
manifest says how many; about 2 MiB of them, at least one), so a data set of a
million subvolumes is tens of thousands of files, and a reader takes whole
chunks at the disk's sequential speed. Training reads them in a shuffled chunk
order with a shuffle buffer across several chunks
(:func:`~autoencoder3d.network.batches.epoch_order`). A version-1 store, one
subvolume per chunk and no ``chunk_subvolumes``, is read as before;
``autoencoder3d dataset convert`` rewrites one in this layout.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError, brief
from ...util.atomic import is_temporary_folder, temporary_folder
from .trust import part_name, subvolumes_per_chunk, volume_chunks

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ...volume import SubvolumeSet

FORMAT = "autoencoder3d-dataset"
VERSION = 2  # 1: one subvolume per chunk; 2: chunk_subvolumes per chunk
CHUNK_BYTES = 2 << 20  # about this many bytes of subvolumes per chunk
MANIFEST_KEY = "autoencoder3d"
DTYPES = ("float32", "float16")
UUID_DTYPE = "<U64"


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a zarr group (a store, or something that should be one)."""
    path = os.fspath(path)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, ".zgroup"))


def store_out(out: str | os.PathLike) -> str:
    """``out`` as the folder a build or convert writes; an empty name (the current folder, with the user's files) is refused."""
    out = os.fspath(out)
    if not out:
        raise InputError("OUT '': an empty name is the current folder; give the store a folder of its own, e.g. data.zarr")
    return out


def is_fresh(path: str | os.PathLike) -> bool:
    """Whether ``path`` is free for a new store: absent, or a folder holding nothing but a writer's lock file."""
    from ...util.lock import LOCK_NAME

    path = os.path.abspath(os.fspath(path))  # "" is the current folder, not an absent one
    if not os.path.lexists(path):
        return True
    return os.path.isdir(path) and not os.path.islink(path) and set(os.listdir(path)) <= {LOCK_NAME}


def _zarr():
    import zarr

    return zarr


def chunk_subvolumes_for(v_siz: Sequence[int], dtype: str) -> int:
    """Subvolumes per chunk of a new store: as many as fill :data:`CHUNK_BYTES`, at least one."""
    return max(1, CHUNK_BYTES // (int(np.prod(v_siz)) * np.dtype(dtype).itemsize))


def create_store(path: str | os.PathLike, v_siz: Sequence[int], *, dtype: str = "float32", pose: bool = False,
                 polarity: str | None = None, sources: dict | None = None, version: int = VERSION) -> dict:
    """Start a store at ``path`` (or reopen an unfinished one made with the same settings).

    A new store has the layout ``version`` (1 only to write what older
    versions wrote); a reopened one keeps its own.

    Returns:
        the manifest (a dict).

    Raises:
        InputError: ``path`` exists and is not a store, or is a store of another
            box, dtype or pose setting.
    """
    path = os.fspath(path)
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: choose from {', '.join(DTYPES)}")
    settings = {"v_siz": [int(s) for s in v_siz], "dtype": dtype, "pose_normalized": bool(pose), "polarity": polarity}
    if not is_fresh(path):
        if not is_store(path):
            raise InputError(f"{path}: exists and is not a subvolume store; choose a new name")
        manifest = read_manifest(path)
        differ = [k for k, v in settings.items() if manifest.get(k) != v]
        if differ:
            said = ", ".join(f"{k} {manifest.get(k)!r} (asked {settings[k]!r})" for k in differ)
            raise InputError(f"{path}: a store built with other settings: {said}; choose a new name or delete it")
        return manifest
    group = _zarr().open_group(path, mode="a")  # not "w", which would delete the writer's lock file
    group.require_group("parts")
    if version not in (1, VERSION):
        raise ValueError(f"store layout version {version}: this autoencoder3d writes 1 or {VERSION}")
    layout = {"chunk_subvolumes": chunk_subvolumes_for(settings["v_siz"], dtype)} if version >= 2 else {}
    manifest = {"format": FORMAT, "version": version, **layout, **settings, "sources": sources or {}, "parts": [], "complete": False}
    group.attrs[MANIFEST_KEY] = manifest
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """The store's manifest, checked (InputError naming the store otherwise)."""
    path = os.fspath(path)
    from .strict import read_bytes
    from .trust import check_manifest_fields, load_json

    try:
        attrs = load_json(read_bytes(os.path.join(path, ".zattrs")))
    except FileNotFoundError:
        raise InputError(f"{path}: a zarr folder without an autoencoder3d manifest; not a subvolume store") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{os.path.join(path, '.zattrs')}: unreadable store manifest ({brief(str(err), 80, quote=False)})") from None
    manifest = attrs.get(MANIFEST_KEY) if isinstance(attrs, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: a zarr folder without an autoencoder3d manifest; not a subvolume store")
    version = manifest.get("version")
    if isinstance(version, int) and version > VERSION:
        raise InputError(f"{path}: store version {version} is newer than this autoencoder3d reads ({VERSION})")
    check_manifest_fields(path, manifest)
    return manifest


def _write_manifest(path, manifest):
    from ...util.atomic import atomic_open

    attrs_path = os.path.join(path, ".zattrs")
    with atomic_open(attrs_path, "w") as handle:
        json.dump({MANIFEST_KEY: manifest}, handle, indent=1)


def part_path(path: str | os.PathLike, index: int) -> str:
    return os.path.join(os.fspath(path), "parts", part_name(index))


def part_done(path: str | os.PathLike, index: int) -> bool:
    """Whether part ``index`` was written completely."""
    return os.path.isfile(os.path.join(part_path(path, index), ".zattrs"))


class PartWriter:
    """Writes one tomogram's subvolumes into a store, block by block, as one part.

    Use as a context manager; the part appears under its final name only when
    the block ends without an exception (then :meth:`commit` has run). Its
    chunks hold as many subvolumes as the store's manifest says.
    """

    def __init__(self, path: str | os.PathLike, index: int, n: int, tomogram: Mapping[str, object], *, v_siz: Sequence[int],
                 dtype: str = "float32", origin: dict | None = None) -> None:
        self.path = os.fspath(path)
        self.origin = origin
        self.final = part_path(path, index)
        self.tmp = temporary_folder(self.final)
        self.n = int(n)
        self.tomogram = dict(tomogram)
        shutil.rmtree(self.tmp, ignore_errors=True)
        zarr = _zarr()
        group = zarr.open_group(self.tmp, mode="w")
        v_siz = tuple(int(s) for s in v_siz)
        chunks = volume_chunks(self.n, subvolumes_per_chunk(read_manifest(path)), v_siz)
        self.volumes = group.create_dataset("volumes", shape=(self.n,) + v_siz, chunks=chunks, dtype=dtype, compressor=None)
        self.uuid = group.create_dataset("uuid", shape=(self.n,), dtype=UUID_DTYPE, chunks=(max(1, self.n),), compressor=None)
        self.center = group.create_dataset("center", shape=(self.n, 3), dtype="f8", chunks=(max(1, self.n), 3), compressor=None)
        self.rotation = group.create_dataset("rotation", shape=(self.n, 3, 3), dtype="f8", chunks=(max(1, self.n), 3, 3),
                                             compressor=None, fill_value=np.nan)
        self.center_of_mass = group.create_dataset("center_of_mass", shape=(self.n, 3), dtype="f8", chunks=(max(1, self.n), 3),
                                                   compressor=None, fill_value=np.nan)
        self._group = group
        self._rows = {"uuid": np.empty(self.n, dtype=UUID_DTYPE), "center": np.full((self.n, 3), np.nan),
                      "rotation": np.full((self.n, 3, 3), np.nan), "center_of_mass": np.full((self.n, 3), np.nan)}

    def write(self, lo: int, volumes: np.ndarray, uuids: Sequence[str], centers: ArrayLike, rotations: ArrayLike | None = None,
              centers_of_mass: ArrayLike | None = None) -> None:
        """Write rows ``lo : lo + len(volumes)``."""
        hi = lo + len(volumes)
        if len(volumes):
            self.volumes[lo:hi] = np.asarray(volumes, dtype=np.float32)
        self._rows["uuid"][lo:hi] = [str(u) for u in uuids]
        self._rows["center"][lo:hi] = centers
        if rotations is not None:
            self._rows["rotation"][lo:hi] = rotations
        if centers_of_mass is not None:
            self._rows["center_of_mass"][lo:hi] = centers_of_mass

    def commit(self, extra: dict | None = None) -> None:
        for name, rows in self._rows.items():
            if self.n:
                getattr(self, name)[:] = rows
        self._group.attrs["tomogram"] = {**self.tomogram, "n": self.n, **(extra or {})}
        if self.origin is not None:
            self._group.attrs["origin"] = self.origin
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.commit()
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def part_origin(path: str | os.PathLike, index: int) -> dict | None:
    """What part ``index`` was cut from (recorded by the build: its rows and its tomogram), or None."""
    from .strict import load_json, read_bytes

    try:
        return load_json(read_bytes(os.path.join(part_path(path, index), ".zattrs"))).get("origin")
    except (OSError, ValueError, AttributeError):
        return None


def remove_unfinished_parts(path: str | os.PathLike) -> list[str]:
    """Delete temporary part folders left by a killed build; returns their paths."""
    from .trust import check_writable

    check_writable(path)
    parts = os.path.join(os.fspath(path), "parts")
    removed = []
    for name in sorted(os.listdir(parts)) if os.path.isdir(parts) else []:
        if is_temporary_folder(name):
            shutil.rmtree(os.path.join(parts, name), ignore_errors=True)
            removed.append(os.path.join(parts, name))
    return removed


def mark_unfinished(path: str | os.PathLike) -> None:
    """Mark a finished store unfinished again (a build is about to cut some of its parts again)."""
    manifest = read_manifest(path)
    manifest.update(complete=False)
    _write_manifest(path, manifest)


def finish_store(path: str | os.PathLike, n_parts: int) -> dict:
    """List parts ``0 .. n_parts - 1`` in the manifest and mark the store complete.

    Raises:
        InputError: a part is missing (the build did not finish).
    """
    manifest = read_manifest(path)
    missing = [i for i in range(n_parts) if not part_done(path, i)]
    if missing:
        raise InputError(
            f"{path}: {len(missing)} of {n_parts} tomograms are not extracted yet (e.g. part {part_name(missing[0])}); run the build again to finish"
        )
    zarr = _zarr()
    parts = []
    for i in range(n_parts):
        info = dict(zarr.open_group(part_path(path, i), mode="r").attrs["tomogram"])
        parts.append({"part": part_name(i), **info})
    manifest.update(parts=parts, complete=True, n_subvolumes=int(sum(p["n"] for p in parts)))
    _write_manifest(path, manifest)
    return manifest


def store_from_set(path: str | os.PathLike, subvolumes: SubvolumeSet, *, tomogram: dict | None = None, dtype: str = "float32",
                   block: int = 256, version: int = VERSION) -> dict:
    """Write a :class:`~autoencoder3d.volume.SubvolumeSet` as a new store, one part per tomogram.

    Subvolumes keep their order when the set's tomograms come in runs (a
    pickle: one tomogram, named ``tomogram`` or after the set's source file).

    Args:
        tomogram: dict for a set without per-subvolume tomogram names
            (name, path, voxel_size, shape); by default named after the source.
        version: the store's layout (:func:`create_store`).

    Returns:
        the finished manifest.
    """
    names = _tomogram_runs(subvolumes, tomogram)
    pose = any(subvolumes.pose_of(i)[0] is not None for i in range(len(subvolumes)))
    manifest = create_store(path, subvolumes.v_siz, dtype=dtype, pose=pose, version=version)
    per_chunk = subvolumes_per_chunk(manifest)
    block = max(1, block // per_chunk) * per_chunk  # whole chunks at a time
    remove_unfinished_parts(path)
    for index, (info, rows) in enumerate(names):
        with PartWriter(path, index, len(rows), info, v_siz=subvolumes.v_siz, dtype=dtype) as part:
            for lo in range(0, len(rows), block):
                chosen = rows[lo : lo + block]
                poses = [subvolumes.pose_of(i) for i in chosen]
                part.write(
                    lo, subvolumes.volumes[chosen], [subvolumes.uuids[i] for i in chosen], subvolumes.centers[chosen],
                    rotations=[np.full((3, 3), np.nan) if r is None else r for r, _ in poses],
                    centers_of_mass=[np.full(3, np.nan) if c is None else np.asarray(c, dtype=float) for _, c in poses],
                )
    return finish_store(path, len(names))


def _tomogram_runs(subvolumes, tomogram):
    """[(tomogram info, row indices)] in sample order: one entry per run of the same tomogram."""
    n = len(subvolumes)
    if subvolumes.tomograms is None:
        default = os.path.splitext(os.path.basename(subvolumes.source or "subvolumes"))[0]
        info = {"name": default, "path": None, "voxel_size": list(subvolumes.voxel_size or []) or None, **(tomogram or {})}
        return [(info, np.arange(n))]
    runs, table = [], subvolumes.tomogram_table or {}
    names = np.asarray(subvolumes.tomograms, dtype=object)
    starts = [0] + [i for i in range(1, n) if names[i] != names[i - 1]] + [n]
    for lo, hi in zip(starts[:-1], starts[1:]):
        name = str(names[lo])
        runs.append(({"name": name, "path": None, "voxel_size": None, **table.get(name, {})}, np.arange(lo, hi)))
    return runs


def store_digest(path: str | os.PathLike, samples: int = 256) -> dict[str, int | str]:
    """``{'size', 'sha256'}`` (size: bytes of the subvolumes) of a store: its manifest, every part's ids and centres, and ``samples`` subvolumes spread evenly.

    Quick at any size, and different whenever the subvolumes, their order or a
    sampled volume differ (like the tomogram's sampled digest in :mod:`..runfolder`).
    The digest is of the contents, not of the layout: a store with several
    subvolumes per chunk hashes what the same store with one per chunk (version
    1, uncompressed) hashes, so ``dataset convert`` keeps a store's digest.
    """
    import hashlib

    from .strict import read_bytes
    from .trust import check_store

    manifest = read_manifest(path)
    if manifest.get("complete"):
        check_store(path, manifest)
    content = {k: v for k, v in manifest.items() if k != "chunk_subvolumes"}
    digest = hashlib.sha256(json.dumps({**content, "version": 1}, sort_keys=True).encode())
    total = int(manifest.get("n_subvolumes", 0))
    chosen = set(np.linspace(0, max(total - 1, 0), min(samples, total)).astype(np.int64).tolist()) if total else set()
    start = 0
    for part in manifest["parts"]:
        folder = os.path.join(os.fspath(path), "parts", part["part"])
        for name in ("uuid", "center", "rotation"):
            for chunk in sorted(os.listdir(os.path.join(folder, name))):
                if not chunk.startswith("."):
                    digest.update(read_bytes(os.path.join(folder, name, chunk)))
        rows = sorted(i - start for i in chosen if start <= i < start + part["n"])
        if subvolumes_per_chunk(manifest) == 1:
            for row in rows:
                chunk = os.path.join(folder, "volumes", f"{row}.0.0.0")
                if os.path.lexists(chunk):
                    digest.update(read_bytes(chunk))
        else:
            for volume in _stored_rows(folder, rows):
                digest.update(volume.tobytes())
        start += part["n"]
    size = total * int(np.prod(manifest["v_siz"])) * np.dtype(manifest["dtype"]).itemsize
    return {"size": size, "sha256": digest.hexdigest()}


def _stored_rows(folder, rows):
    """The subvolumes ``rows`` of the part ``folder`` as stored (dtype and bytes), those of chunks that are there."""
    from .chunks import PartChunks
    from .strict import strict_store

    if not rows:
        return
    chunks = PartChunks(folder, _zarr().open_array(strict_store(folder), path="volumes", mode="r"))
    for chunk in sorted({row // chunks.per_chunk for row in rows}):
        if not os.path.lexists(chunks.chunk_path(chunk)):
            continue
        data = chunks.read(chunk)
        for row in rows:
            if row // chunks.per_chunk == chunk:
                yield data[row - chunk * chunks.per_chunk]
