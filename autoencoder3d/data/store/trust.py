"""A store is checked before anything in it is read: a damaged or hostile store is one error line.

The store is a folder anyone may have edited, copied badly or crafted. Before
zarr sees a part, :func:`check_store` compares every array's ``.zarray``
against what :class:`~autoencoder3d.data.store.store.PartWriter` writes: numeric
dtypes (text only for the uuids), C order, no filters, no compressor or an
allow-listed one (so no pickle or object codec ever reaches numcodecs), shapes
that agree with the box and the manifest's counts, chunks no larger than the
array, subvolume chunks of exactly the manifest's number of subvolumes (one in
a version-1 store; a bounded number of bytes in any), exactly one file per chunk, all present (zarr reads a missing chunk as
zeros). Part names are ``parts/NNNNN`` in order, ``parts/`` holds no part the
manifest does not list, and every file the store reads is a regular file, never
a symbolic link, a named pipe or a device, so nothing outside the store is read
and no read waits forever. No check allocates in proportion to a size the
store declares.

Reads then go through :mod:`.strict`, which refuses what the check cannot
see: a chunk that went missing or became a link or a pipe after it, and a
compressed chunk whose header declares more bytes than a chunk holds.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence

import numpy as np

from ...errors import InputError, brief
from ...formats.json import load_json
from ...util.atomic import is_temporary_folder
from .strict import read_bytes, refuse_irregular

ARRAYS = ("volumes", "uuid", "center", "rotation", "center_of_mass")
COMPRESSORS = (None, "blosc", "zstd")  # store.py writes None; blosc and zstd decode into plain bytes
MAX_BOX = 1024
MAX_UUID_CHARS = 256
MAX_CHUNK_BYTES = 256 << 20  # a chunk of several subvolumes is read whole: bounded, whatever the manifest says
_PART = re.compile(r"^\d{5}$")


def _read_json(path, what):
    try:
        value = load_json(read_bytes(path))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; the store is damaged, build it again") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable {what} ({brief(str(err), 80, quote=False)})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: {what} is not a JSON object")
    return value


_SURROGATE = "\ud800-\udfff"  # a lone surrogate (a name read with surrogateescape): no UTF-8 file can hold it
_UNWRITABLE = re.compile(f"[\x00-\x1f\x7f-\x9f{_SURROGATE}]")
UNWRITABLE = "a control character or a character UTF-8 cannot encode"  # what has_control_character finds, for messages


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a character a STAR row cannot hold as it is: a newline, tab or other control
    character, or a lone surrogate, which no UTF-8 file can hold."""
    return _UNWRITABLE.search(text) is not None


def not_utf8(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which no UTF-8 file (a particle list) can hold."""
    return re.search(f"[{_SURROGATE}]", text) is not None


def check_uuids(folder: str | os.PathLike, uuids: Sequence[str]) -> None:
    """The part ``folder``'s particle ids all encode as UTF-8 (the particle lists hold them); InputError otherwise."""
    if not_utf8("".join(uuids)):
        bad = next(u for u in uuids if not_utf8(u))
        raise InputError(f"{folder}/uuid: particle id {brief(bad)} holds a character UTF-8 cannot encode; build the data set again")


def _count(value, low=0, high=None):
    """Whether ``value`` is an int (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def check_manifest_fields(path: str | os.PathLike, manifest: dict) -> None:
    """The manifest's own fields have the types and ranges the code relies on (InputError otherwise)."""
    where = f"{path}: store manifest"
    if not _count(manifest.get("version"), 1):
        raise InputError(f"{where}: version {brief(manifest.get('version'))} is not a positive integer")
    v_siz = manifest.get("v_siz")
    if not (isinstance(v_siz, list) and len(v_siz) == 3 and all(_count(s, 1, MAX_BOX) for s in v_siz)):
        raise InputError(f"{where}: box {brief(v_siz)} is not three sizes from 1 to {MAX_BOX}")
    if manifest.get("dtype") not in ("float32", "float16"):
        raise InputError(f"{where}: dtype {brief(manifest.get('dtype'))} is not float32 or float16")
    if manifest["version"] >= 2:
        _check_chunk_subvolumes(where, manifest.get("chunk_subvolumes"), v_siz, manifest["dtype"])
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        raise InputError(f"{where}: parts is {brief(parts)}, not a list")
    seen = {}
    for index, part in enumerate(parts):
        _check_part_entry(where, index, part)
        # parts of one name are one tomogram (a converted set's runs of it); two tomograms of one name would be mixed up
        said = {key: part.get(key) for key in ("path", "voxel_size", "shape")}
        if seen.setdefault(part["name"], said) != said:
            raise InputError(f"{where}: two parts of tomogram {brief(part['name'])} say different things of it "
                             f"({brief(seen[part['name']])} and {brief(said)})")
    if manifest.get("complete"):
        total = sum(p["n"] for p in parts)
        if manifest.get("n_subvolumes") != total:
            raise InputError(f"{where}: says {brief(manifest.get('n_subvolumes'))} subvolumes, its parts hold {total}")


def subvolumes_per_chunk(manifest: dict) -> int:
    """How many subvolumes one chunk of a part's ``volumes`` holds: one in a version-1 store, the
    manifest's ``chunk_subvolumes`` from version 2 (checked by :func:`check_manifest_fields`)."""
    return 1 if manifest.get("version", 1) < 2 else int(manifest["chunk_subvolumes"])


def volume_chunks(n: int, per_chunk: int, v_siz: Sequence[int]) -> list[int]:
    """The chunk shape of the ``volumes`` of a part of ``n`` subvolumes: ``per_chunk`` subvolumes, fewer
    when the part holds fewer (a chunk is never larger than its array), at least one."""
    return [max(1, min(int(per_chunk), int(n))), *(int(s) for s in v_siz)]


def _check_chunk_subvolumes(where, count, v_siz, dtype):
    if not _count(count, 1):
        raise InputError(f"{where}: chunk_subvolumes {brief(count)} is not a positive integer")
    size = count * math.prod(v_siz) * np.dtype(dtype).itemsize
    if count > 1 and size > MAX_CHUNK_BYTES:
        raise InputError(f"{where}: chunk_subvolumes {count} makes chunks of {size / 2**20:.0f} MiB, more than the "
                         f"{MAX_CHUNK_BYTES >> 20} MiB a chunk may hold; refused")


def _check_part_entry(where, index, part):

    if not isinstance(part, dict):
        raise InputError(f"{where}: part {index} is {brief(part)}, not an object")
    if part.get("part") != part_name(index):
        raise InputError(f"{where}: part {index} is named {brief(part.get('part'))}, not {part_name(index)}")
    if not _count(part.get("n")):
        raise InputError(f"{where}: part {part_name(index)} has a count of {brief(part.get('n'))}")
    if not isinstance(part.get("name"), str) or not part["name"]:
        raise InputError(f"{where}: part {part_name(index)} has no tomogram name")
    if has_control_character(part["name"]):
        raise InputError(f"{where}: part {part_name(index)}'s tomogram name {brief(part['name'])} holds {UNWRITABLE} "
                         "(a STAR file cannot hold it)")
    size = part.get("voxel_size")
    if size is not None and not (isinstance(size, list) and len(size) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in size)):
        raise InputError(f"{where}: part {part_name(index)} has voxel size {brief(size)}")
    if part.get("path") is not None and not isinstance(part["path"], str):
        raise InputError(f"{where}: part {part_name(index)} has path {brief(part['path'])}")


def _expected(n, v_siz, dtype):
    """{array name: (shape, the dtype or the dtype kind it must have)} of a part of ``n`` subvolumes."""
    return {
        "volumes": ((n, *v_siz), np.dtype(dtype).newbyteorder("<")),
        "uuid": ((n,), "U"),
        "center": ((n, 3), "f"),
        "rotation": ((n, 3, 3), "f"),
        "center_of_mass": ((n, 3), "f"),
    }


def _no_link(path):
    if os.path.islink(path):
        raise InputError(f"{path}: a symbolic link inside the store; a store's folders and files must be its own")


def check_store(path: str | os.PathLike, manifest: dict) -> None:
    """Check a complete store's parts against its manifest before zarr reads them.

    A store is checked once per process: a second call with the same manifest
    and unchanged part folders and array headers (their inode, size and
    modification time) returns at once.

    Raises:
        InputError: naming the store's file and the problem (see the module docstring).
    """
    path = os.fspath(path)
    parts = os.path.join(path, "parts")
    _no_link(parts)
    signature = _signature(path, manifest)
    if signature is not None and _CHECKED.get(os.path.realpath(path)) == signature:
        return
    per_chunk = subvolumes_per_chunk(manifest)
    for entry in manifest["parts"]:
        check_part(path, entry["part"], entry["n"], manifest["v_siz"], manifest["dtype"], per_chunk=per_chunk)
    _check_no_other_parts(parts, {entry["part"] for entry in manifest["parts"]})
    if signature is not None:
        _CHECKED[os.path.realpath(path)] = signature


_CHECKED: dict[str, tuple] = {}  # store's real path -> the signature it had when it passed the check


def _check_no_other_parts(parts, listed):
    """``parts/`` holds the listed parts, zarr's files and the temporary folders of builds, nothing else.

    Readers use the listed parts only: another part there is data the manifest leaves out.
    """
    try:
        with os.scandir(parts) as entries:
            found = sorted((entry.name, entry.is_symlink(), entry.is_dir(follow_symlinks=False)) for entry in entries)
    except OSError as err:
        raise InputError(f"{parts}: unreadable ({err.strerror})") from None
    for name, link, folder in found:
        where = os.path.join(parts, name)
        if link:
            raise InputError(f"{where}: a symbolic link inside the store; a store's folders and files must be its own")
        if name in listed or (folder and is_temporary_folder(name)):
            continue
        if name.startswith(".") and not folder:
            refuse_irregular(where, os.lstat(where).st_mode)
            continue
        what = "a part folder" if folder else "a file"
        raise InputError(f"{where}: {what} the manifest does not list (it lists {len(listed)} part{'' if len(listed) == 1 else 's'}); "
                         "remove it, or build the data set again")


def _signature(path, manifest):
    """What changes when a part folder, an array folder (a chunk added or removed) or a header changes; None if unreadable."""
    import json

    stamps = [json.dumps(manifest, sort_keys=True, default=str)]
    try:
        status = os.lstat(os.path.join(path, "parts"))  # a part folder added or removed
        stamps.append(("parts", status.st_ino, status.st_mtime_ns, status.st_mode))
        for entry in manifest["parts"]:
            folder = os.path.join(path, "parts", str(entry["part"]))
            for place in [folder, os.path.join(folder, ".zattrs")] + [
                os.path.join(folder, array, name) for array in _expected(0, (1, 1, 1), "float32") for name in ("", ".zarray")
            ]:
                status = os.lstat(place)
                stamps.append((place, status.st_ino, status.st_size, status.st_mtime_ns, status.st_mode))
    except (OSError, KeyError, TypeError):
        return None
    return tuple(stamps)


def check_part(path: str | os.PathLike, name: str, n: int, v_siz: Sequence[int], dtype: str, *, per_chunk: int = 1) -> None:
    """One part: folders, ``.zarray`` of every array, and all its chunk files (``per_chunk``: the
    manifest's subvolumes per chunk, :func:`subvolumes_per_chunk`)."""
    if not _PART.match(name):
        raise InputError(f"{path}: part name {brief(name)} is not five digits")
    folder = os.path.join(path, "parts", name)
    _no_link(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: missing; the store is damaged, build it again")
    for header in (".zgroup", ".zattrs"):
        where = os.path.join(folder, header)
        if os.path.lexists(where):
            _no_link(where)
            refuse_irregular(where, os.lstat(where).st_mode)
    for array, (shape, kind) in _expected(n, v_siz, dtype).items():
        where = os.path.join(folder, array)
        _no_link(where)
        meta = _read_json(os.path.join(where, ".zarray"), "array header")
        chunks = _check_header(where, meta, shape, kind)
        if array == "volumes" and chunks != volume_chunks(n, per_chunk, v_siz):
            if per_chunk == 1:
                raise InputError(f"{where}/.zarray: chunks {brief(chunks)}, not one subvolume per chunk {[1, *v_siz]}")
            raise InputError(f"{where}/.zarray: chunks {brief(chunks)}, not the manifest's {per_chunk} subvolumes per chunk "
                             f"{volume_chunks(n, per_chunk, v_siz)}; refused")
        _check_chunks(where, shape, chunks)


def _check_header(where, meta, shape, kind):
    """The array header says what the writer writes; returns its chunk shape."""
    header = f"{where}/.zarray"
    if meta.get("zarr_format") != 2:
        raise InputError(f"{header}: zarr format {brief(meta.get('zarr_format'))}, not 2")
    dtype = meta.get("dtype")
    try:
        found = np.dtype(dtype) if isinstance(dtype, str) else None
    except (TypeError, ValueError, OverflowError, MemoryError):
        found = None
    allowed = found is not None and (found == kind if isinstance(kind, np.dtype) else
                                     found.kind == kind and (kind != "U" or 0 < found.itemsize <= 4 * MAX_UUID_CHARS))
    if not allowed:
        want = str(kind) if isinstance(kind, np.dtype) else {"U": f"text of at most {MAX_UUID_CHARS} characters", "f": "floating point"}[kind]
        raise InputError(f"{header}: dtype {brief(dtype)} is not {want}; refused")
    if not _fill_value_fits(meta.get("fill_value"), found.kind):
        raise InputError(f"{header}: fill value {brief(meta.get('fill_value'))} does not fit dtype {found}; refused")
    compressor = meta.get("compressor")
    codec = compressor.get("id") if isinstance(compressor, dict) else compressor
    if codec not in COMPRESSORS or (compressor is not None and not isinstance(compressor, dict)):
        raise InputError(f"{header}: compressor {brief(codec)} is not one this store uses (none, blosc, zstd); refused")
    if meta.get("filters") not in (None, []):
        raise InputError(f"{header}: filters {brief(meta.get('filters'))}; a store's arrays have none; refused")
    if meta.get("order") != "C":  # zarr reads an "F" chunk transposed
        raise InputError(f"{header}: order {brief(meta.get('order'))} is not C (row-major), the one order of this store's arrays; refused")
    if meta.get("dimension_separator", ".") != ".":
        raise InputError(f"{header}: chunk key separator {brief(meta.get('dimension_separator'))} is not '.'; refused")
    if meta.get("shape") != list(shape):
        raise InputError(f"{header}: shape {brief(meta.get('shape'))}, the manifest and box say {list(shape)}")
    chunks = meta.get("chunks")
    if not (isinstance(chunks, list) and len(chunks) == len(shape) and all(_count(c, 1, max(s, 1)) for c, s in zip(chunks, shape))):
        raise InputError(f"{header}: chunks {brief(chunks)} do not fit shape {list(shape)}")
    return chunks


def _fill_value_fits(value, kind):
    if value is None:
        return True
    if kind == "U":
        return isinstance(value, str)
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("NaN", "Infinity", "-Infinity")


def _check_chunks(where, shape, chunks):
    """Every chunk of the array is a regular file of its own here (zarr would read a missing one as zeros), and
    every other file is zarr's; the work is in proportion to the folder, never to the shape it declares."""
    grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
    need = math.prod(grid)
    files, odd = set(), []
    try:
        with os.scandir(where) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):  # a link, a pipe, a folder ...
                    odd.append(entry.name)
                elif not entry.name.startswith("."):
                    files.add(entry.name)
    except OSError as err:
        raise InputError(f"{where}: unreadable ({err.strerror})") from None
    for name in sorted(odd):
        _no_link(os.path.join(where, name))
        refuse_irregular(os.path.join(where, name), os.lstat(os.path.join(where, name)).st_mode)
    for key in _chunk_keys(grid, min(need, len(files) + 1)):  # among len(files) + 1 names one is surely missing
        if key not in files:
            raise InputError(f"{where}/{key}: chunk missing ({len(files)} chunk files, shape {list(shape)} needs {need}); "
                             "the store is damaged, build it again")
    if len(files) != need:
        extra = sorted(files - set(_chunk_keys(grid, need)))[0]
        raise InputError(f"{where}/{extra}: not a chunk of this array ({len(files)} chunk files, shape {list(shape)} "
                         f"needs {need}); the store is damaged, build it again")


def _chunk_keys(grid, count):
    """The first ``count`` chunk names of ``grid`` in C order; no axis is counted past ``count``, whatever the grid."""
    ranges = [range(min(g, count)) for g in grid]  # the first count keys never reach further along any axis
    return (".".join(map(str, key)) for key in itertools.islice(itertools.product(*ranges), count))


def check_writable(path: str | os.PathLike) -> None:
    """Before a build deletes anything in ``path``: ``parts`` and its entries are real folders, no links."""
    parts = os.path.join(os.fspath(path), "parts")
    _no_link(parts)
    if os.path.lexists(parts) and not os.path.isdir(parts):
        raise InputError(f"{parts}: not a folder; not a subvolume store")
    if os.path.isdir(parts):
        for entry in os.scandir(parts):
            if entry.is_symlink():
                raise InputError(f"{entry.path}: a symbolic link inside the store; refusing to write or delete through it")


def part_name(index: int) -> str:
    """The folder name of part ``index`` under ``parts/``."""
    return f"{int(index):05d}"
