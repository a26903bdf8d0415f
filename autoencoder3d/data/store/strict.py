"""Reading an untrusted store's files after :func:`~.trust.check_store` has checked it.

Every file is opened without following a final symbolic link and without
waiting (a named pipe never blocks), and only a regular file is read. zarr
reads a part through :func:`strict_store`, which adds what the check cannot
see: a chunk that went missing or changed kind after it is refused instead of
read as zeros, and a compressed chunk whose header declares more bytes than a
chunk of its array holds is refused before numcodecs allocates them.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...formats.json import load_json

if TYPE_CHECKING:
    import zarr

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file ``path``; a symbolic link in its last component, a named pipe,
    a device or a folder is refused (InputError), and nothing waits on a pipe's writer."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return handle.read()


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file ``path``, refused (InputError) as :func:`read_bytes` refuses."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"{path}: a symbolic link inside the store; a store's files must be its own") from None
        raise
    try:
        refuse_irregular(path, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def refuse_irregular(path: str | os.PathLike, mode: int) -> None:
    """Refuse (InputError) what ``mode`` (a stat's) says is not a regular file: reading a named pipe waits
    for a writer, a device may never end."""
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a link"
        raise InputError(f"{path}: not a regular file but {kind}; a store's files are plain files, build the data set again")


class MissingChunk(InputError):
    """A chunk the checked store had is gone (zarr would read zeros)."""


@functools.lru_cache(maxsize=1)
def _strict_class():
    import zarr

    class StrictStore(zarr.storage.DirectoryStore):
        """Reads regular files only, never through a final symbolic link; a missing chunk is an error, not zeros;
        a compressed chunk's declared size is checked before numcodecs decompresses it."""

        def __init__(self, path, **kwargs):
            super().__init__(path, **kwargs)
            self._headers = {}

        def __contains__(self, key):
            return os.path.lexists(os.path.join(self.path, self._normalize_key(key)))  # a pipe or link is there, and refused

        def __getitem__(self, key):
            key = self._normalize_key(key)
            path = os.path.join(self.path, key)
            try:
                data = read_bytes(path)
            except (FileNotFoundError, NotADirectoryError):
                raise KeyError(key) from None
            array, name = os.path.split(key)
            if not name.startswith("."):
                check_chunk_size(self.path, key, data, self._header(array))
            return data

        def _header(self, array):
            if array not in self._headers:
                path = os.path.join(self.path, array, ".zarray")
                try:
                    meta = load_json(read_bytes(path))
                except (OSError, ValueError):
                    meta = None
                if not isinstance(meta, dict):
                    raise InputError(f"{path}: unreadable array header; build the data set again")
                self._headers[array] = meta
            return self._headers[array]

        def getitems(self, keys, *, contexts):
            found = {}
            for key in keys:
                try:
                    found[key] = self[key]
                except KeyError:
                    raise MissingChunk(f"{os.path.join(self.path, key)}: chunk missing; the store is damaged, build it again") from None
            return found

    return StrictStore


def check_chunk_size(folder: str | os.PathLike, key: str, data: bytes, meta: dict) -> None:
    """Refuse chunk ``key`` of the part ``folder`` when it is compressed and its header declares more bytes
    than a chunk of its array holds (``meta``: the array's ``.zarray``), before numcodecs allocates them:
    zstd's frame content size, blosc's nbytes."""
    compressor = meta.get("compressor")
    codec = compressor.get("id") if isinstance(compressor, dict) else None
    if codec not in ("zstd", "blosc"):
        return
    try:
        holds = math.prod(meta["chunks"]) * np.dtype(meta["dtype"]).itemsize
    except (KeyError, TypeError, ValueError):
        holds = None
    problem = _zstd_size_problem(data, holds) if codec == "zstd" else _blosc_size_problem(data, holds)
    if problem:
        raise InputError(f"{folder}: unreadable store part ({key}: {problem}); build the data set again")


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_size_problem(data, holds):
    """What is wrong with the content size a zstd frame header declares (RFC 8878, 3.1.1.1), or None."""
    if data[:4] != _ZSTD_MAGIC or len(data) < 5:
        return "not a zstd frame"
    descriptor = data[4]
    single_segment = descriptor >> 5 & 1
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if not width:  # numcodecs would have to guess how much to allocate
        return "a zstd chunk that does not say its size"
    start = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]  # after the window descriptor and dictionary id
    field = data[start : start + width]
    if len(field) < width:
        return "a zstd frame header cut short"
    return _too_big("zstd", int.from_bytes(field, "little") + (256 if width == 2 else 0), holds)


def _blosc_size_problem(data, holds):
    """What is wrong with the decompressed size a blosc header declares (bytes 4 to 8 of its 16), or None."""
    if len(data) < 16:
        return "a blosc chunk shorter than its header"
    return _too_big("blosc", int.from_bytes(data[4:8], "little"), holds)


def _too_big(codec, declared, holds):
    if holds is None or declared > holds:
        return f"a {codec} chunk that decompresses to {declared} bytes, more than the {holds} a chunk of this array holds"
    return None


def strict_store(folder: str | os.PathLike) -> zarr.storage.DirectoryStore:
    """A zarr store of the part ``folder`` whose reads refuse a missing chunk (zarr fills zeros), a symbolic link,
    a file that is not a regular one and a compressed chunk that declares more bytes than a chunk holds."""
    return _strict_class()(folder)
