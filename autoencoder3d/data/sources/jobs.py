"""What a data set is built from: the inputs, read into one job per tomogram.

Every input kind (a table ``tomogram,x,y,z``, RELION 5 star files, a copick
project, a list of tomograms to pick) becomes a list of :class:`TomogramJob`,
one per tomogram, in a fixed order (the order of the store's parts). Reading
the inputs checks them all before anything is written: a missing tomogram, an
unknown tomogram name or a malformed row is one :class:`InputError` naming the
file and the problem.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError
from ...formats.star import tomo_key
from ..store.trust import UNWRITABLE, has_control_character, not_utf8

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".map", ".ali", ".mrc.gz", ".rec.gz")
UUID_LIMIT = 64  # characters a store's uuid holds


@dataclass
class TomogramJob:
    """One tomogram's share of the data set.

    Attributes:
        name: the tomogram's name in the store (unique in the data set).
        opener: how a worker opens the tomogram: ``{"kind": "mrc", "path": ...}`` or
            ``{"kind": "copick", "config": ..., "run": ..., "voxel_spacing": ..., "tomo_type": ...}``.
        centers: (N, 3) voxel coordinates x, y, z in that tomogram, or None when
            the worker picks them (``pick`` settings).
        uuids: N identifiers, or None for ``<name>_<row>``.
        info: what the store records of the tomogram besides name, path, voxel size and shape.
    """

    name: str
    opener: dict
    centers: np.ndarray = None
    uuids: list = None
    info: dict = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        return self.opener.get("path")


def default_uuids(name: str, n: int) -> list[str]:
    """``<name>_<i>`` for the tomogram's input rows 0 .. n - 1 (unique across tomograms with unique names)."""
    return [f"{name}_{i}" for i in range(n)]


def check_jobs(jobs: list[TomogramJob], source: str | os.PathLike) -> list[TomogramJob]:
    """Refuse an empty data set, repeated tomogram names and uuids a store cannot hold."""
    if not jobs:
        raise InputError(f"{source}: no particles in any tomogram; nothing to build")
    seen = {}
    for job in jobs:
        if has_control_character(job.name):
            raise InputError(f"{source}: tomogram name {job.name!r} holds {UNWRITABLE}; the particle lists name "
                             "each particle's tomogram, and a STAR file cannot hold it")
        if job.name in seen:
            raise InputError(f"{source}: two tomograms are both named '{job.name}' ({seen[job.name]} and {job.path}); give them distinct names")
        seen[job.name] = job.path
        uuids = job.uuids if job.uuids is not None else default_uuids(job.name, 1 if job.centers is None else len(job.centers))
        long = next((u for u in uuids if len(str(u)) > UUID_LIMIT), None)
        if long is not None:
            raise InputError(f"{source}: particle id {long[:80]!r} of tomogram '{job.name}' is longer than {UUID_LIMIT} characters")
        unwritable = next((u for u in uuids if not_utf8(str(u))), None)
        if unwritable is not None:
            raise InputError(f"{source}: particle id {unwritable[:80]!r} of tomogram '{job.name}' holds a character UTF-8 cannot encode")
    uuids = [u for job in jobs for u in (job.uuids or [])]
    if len(set(uuids)) != len(uuids):
        raise InputError(f"{source}: particle ids repeat across tomograms; remove the repeats or leave the ids out")
    return jobs


def jobs_fingerprint(jobs: Iterable[TomogramJob]) -> str:
    """A short hash of the jobs (names, tomograms, centres, ids): a rerun must build the same data set."""
    digest = hashlib.sha256()
    for job in jobs:
        digest.update(json.dumps([job.name, job.opener], sort_keys=True, default=str).encode())
        if job.centers is not None:
            digest.update(np.ascontiguousarray(job.centers, dtype=np.float64).tobytes())
        if job.uuids is not None:
            digest.update("\0".join(map(str, job.uuids)).encode())
    return digest.hexdigest()[:16]


SAMPLE_BLOCKS = 32
SAMPLE_BYTES = 1 << 14
HEADER_BYTES = 1 << 16


def file_fingerprint(path: str | os.PathLike) -> dict[str, int | str]:
    """Size, modification time and a SHA-256 of a file's first 64 KiB (the header) and 32 blocks of 16 KiB spread over it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        status = os.fstat(handle.fileno())
        digest.update(handle.read(HEADER_BYTES))
        for i in range(SAMPLE_BLOCKS):
            handle.seek(HEADER_BYTES + i * max(0, status.st_size - HEADER_BYTES - SAMPLE_BYTES) // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(SAMPLE_BYTES))
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sample": digest.hexdigest()[:32]}


def find_tomogram(name: str, folder: str | os.PathLike, source: str | os.PathLike) -> str:
    """The file under ``folder`` whose name (through :func:`tomo_key`) is ``name``.

    Raises:
        InputError: no such file, or several.
    """
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: --tomogram-dir is not a folder")
    wanted = tomo_key(name)
    found = sorted(
        os.path.join(folder, f) for f in os.listdir(folder)
        if f.lower().endswith(MRC_SUFFIXES) and tomo_key(f) == wanted
    )
    if not found:
        raise InputError(f"{source}: tomogram '{name}' not found in {folder} (no .mrc/.rec file named after it)")
    if len(found) > 1:
        raise InputError(f"{source}: tomogram '{name}' matches several files in {folder}: {', '.join(os.path.basename(f) for f in found[:4])}")
    return found[0]


def absent(path: str | os.PathLike) -> str:
    """Why ``path`` is no tomogram file, in words: ``"is a folder, not a file"`` or ``"not found"``."""
    return "is a folder, not a file" if os.path.isdir(path) else "not found"


def mrc_opener(path: str | os.PathLike, source: str | os.PathLike) -> dict[str, str]:
    """The opener of an MRC tomogram, after checking that the file is there and its header reads."""
    from ...formats.mrc import read_tomogram

    if not os.path.isfile(path):
        raise InputError(f"{source}: tomogram file {path} {absent(path)}")
    read_tomogram(path).close()  # a broken file stops the build before anything is written
    return {"kind": "mrc", "path": os.path.abspath(path)}


# ---------------------------------------------------------------- a table tomogram,x,y,z

TABLE_COLUMNS = ("tomogram", "x", "y", "z")


def _table_rows(path):
    """(header, rows with their line numbers) of a CSV with a header naming tomogram, x, y, z."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            lines = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise InputError(f"{path}: particle table not found") from None
    except (OSError, csv.Error) as err:
        raise InputError(f"{path}: unreadable particle table ({err})") from None
    if not lines:
        raise InputError(f"{path}: the particle table is empty")
    header = [c.strip().lower() for c in lines[0][1]]
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: the header (line {lines[0][0]}) has no column {', '.join(missing)}; "
                         "the first line must name the columns tomogram,x,y,z")
    if len(lines) == 1:
        raise InputError(f"{path}: the particle table has a header but no particles")
    return header, lines[1:]


def _parse_row(path, header, number, row):
    if len(row) != len(header):
        raise InputError(f"{path}: line {number} has {len(row)} columns, the header names {len(header)}")
    values = dict(zip(header, (c.strip() for c in row)))
    try:
        xyz = [float(values[c]) for c in "xyz"]
    except ValueError:
        raise InputError(f"{path}: line {number}: x, y, z are not numbers: {','.join(row)[:80]!r}") from None
    if not np.all(np.isfinite(xyz)):
        raise InputError(f"{path}: line {number}: x, y, z must be finite numbers")
    if not values["tomogram"]:
        raise InputError(f"{path}: line {number}: no tomogram named")
    return values["tomogram"], xyz, values.get("uuid")


def _table_tomogram(value, path, tomogram_dir):
    """(name, file) of a table's tomogram entry: a path relative to the table, or a name under ``tomogram_dir``."""
    folder = os.path.dirname(os.path.abspath(path))
    candidate = value if os.path.isabs(value) else os.path.join(folder, value)
    name = tomo_key(value)  # rec_TS_01.mrc and TS_01 both name TS_01, as in STAR files and exports
    if os.path.isfile(candidate):
        return name, candidate
    if tomogram_dir is not None:
        return name, find_tomogram(value, tomogram_dir, path)
    raise InputError(f"{path}: tomogram {value} {absent(candidate)} (paths are relative to the table's folder; "
                     "give --tomogram-dir to find tomograms by name)")


def jobs_from_table(path: str | os.PathLike, tomogram_dir: str | os.PathLike | None = None) -> list[TomogramJob]:
    """Jobs from a CSV table with a header ``tomogram,x,y,z`` (and optionally ``uuid``).

    Coordinates are voxels counted from 0 (x = the MRC file's columns); tomograms
    come in the order they first appear.
    """
    path = os.fspath(path)
    header, lines = _table_rows(path)
    by_tomogram = {}
    for number, row in lines:
        tomogram, xyz, uuid = _parse_row(path, header, number, row)
        rows = by_tomogram.setdefault(tomogram, {"xyz": [], "uuid": []})
        rows["xyz"].append(xyz)
        rows["uuid"].append(uuid)
    jobs = []
    for value, rows in by_tomogram.items():
        name, file = _table_tomogram(value, path, tomogram_dir)
        uuids = rows["uuid"] if "uuid" in header else None
        if uuids is not None and not all(uuids):
            raise InputError(f"{path}: the uuid column is empty on some rows of tomogram {value}")
        jobs.append(TomogramJob(name, mrc_opener(file, path), np.array(rows["xyz"], dtype=float), uuids))
    return check_jobs(jobs, path)


# ---------------------------------------------------------------- tomograms to pick


def read_pick_list(path: str | os.PathLike) -> list[str]:
    """Tomogram paths, one a line (blank lines and ``#`` comments skipped; relative to the list's folder)."""
    from ...formats.coords import content_lines

    path = os.fspath(path)
    lines = content_lines(path, "the tomogram list")
    folder = os.path.dirname(os.path.abspath(path))
    return [ln if os.path.isabs(ln) else os.path.join(folder, ln) for ln in lines]


def jobs_to_pick(tomograms: Iterable[str | os.PathLike], source: str | os.PathLike = "--pick") -> list[TomogramJob]:
    """One job per tomogram file; the worker picks its particles (DoG) before cutting them."""
    jobs = [TomogramJob(tomo_key(t), mrc_opener(t, source)) for t in tomograms]
    if not jobs:
        raise InputError(f"{source}: no tomograms given")
    return check_jobs(jobs, source)
