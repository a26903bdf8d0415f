"""Reading a checked part's subvolumes by whole chunks, each chunk read and decoded once.

An uncompressed chunk (what the store's writers write) is read straight from
its file through :func:`~.strict.read_bytes` (a regular file, no link, no
waiting on a pipe) and checked to hold exactly one chunk's bytes; its rows are
then plain numpy. A compressed chunk (the check allows blosc and zstd) is read
through zarr and :func:`~.strict.strict_store`. Either way a chunk that went
missing after the check is an error, never zeros.

:class:`ChunkCache` keeps the chunks read last (bounded in bytes), so the
batches of a shuffle buffer that share chunks read each of them once. A read
that wants only a few subvolumes of a chunk not kept (scattered indices: a
report's or an export's) reads just their bytes (:meth:`PartChunks.read_rows`).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError, brief
from .strict import MissingChunk, open_regular

if TYPE_CHECKING:
    import zarr

CACHE_BYTES = 128 << 20  # chunks kept after they are read, per opened store
FEW = 8  # fewer than 1/FEW of a chunk's subvolumes wanted: only theirs are read


class PartChunks:
    """The ``volumes`` array of one checked part (``folder``), read chunk by chunk.

    Attributes:
        n: subvolumes in the part.
        per_chunk: subvolumes per chunk (the array's first chunk size).
        stored_dtype: the array's dtype (float32 or float16, little-endian).
    """

    def __init__(self, folder: str | os.PathLike, array: zarr.Array) -> None:
        self.folder = os.fspath(folder)
        self.array = array
        self.n = int(array.shape[0])
        self.per_chunk = int(array.chunks[0])
        self.row_shape = tuple(int(s) for s in array.shape[1:])
        self.stored_dtype = np.dtype(array.dtype)
        self.raw = array.compressor is None  # the check allowed no filters and C order only
        self.chunk_bytes = self.per_chunk * int(np.prod(self.row_shape)) * self.stored_dtype.itemsize

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.per_chunk)

    def chunk_path(self, chunk: int) -> str:
        return os.path.join(self.folder, "volumes", ".".join([str(int(chunk))] + ["0"] * len(self.row_shape)))

    def read(self, chunk: int) -> np.ndarray:
        """Chunk ``chunk``'s subvolumes, ``(rows, n1, n2, n3)`` in the stored dtype (rows: those of the
        part it holds; its last chunk may hold fewer than ``per_chunk``)."""
        lo, hi = chunk * self.per_chunk, min((chunk + 1) * self.per_chunk, self.n)
        if not self.raw:
            try:
                return self.array[lo:hi]
            except InputError:
                raise
            except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
                raise InputError(f"{self.folder}: cannot read subvolumes {lo} to {hi - 1} "
                                 f"({brief(str(err), 120, quote=False)})") from None
        with self._open(chunk) as handle:
            data = handle.read()
        self._check_size(chunk, len(data))
        return np.frombuffer(data, dtype=self.stored_dtype).reshape((self.per_chunk,) + self.row_shape)[: hi - lo]

    def read_rows(self, chunk: int, rows: np.ndarray) -> np.ndarray:
        """Subvolumes ``rows`` (numbered within the chunk) of chunk ``chunk``, in the stored dtype: from an
        uncompressed chunk only their bytes are read, from a compressed one the whole chunk."""
        if not self.raw:
            return self.read(chunk)[rows]
        unique, inverse = np.unique(rows, return_inverse=True)
        size = self.chunk_bytes // self.per_chunk
        out = np.empty((len(unique),) + self.row_shape, dtype=self.stored_dtype)
        with self._open(chunk) as handle:
            self._check_size(chunk, os.fstat(handle.fileno()).st_size)
            for k, row in enumerate(unique):
                data = os.pread(handle.fileno(), size, int(row) * size)
                self._check_size(chunk, self.chunk_bytes if len(data) == size else len(data))
                out[k] = np.frombuffer(data, dtype=self.stored_dtype).reshape(self.row_shape)
        return out[inverse.ravel()]

    def _open(self, chunk):
        path = self.chunk_path(chunk)
        try:
            return os.fdopen(open_regular(path), "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise MissingChunk(f"{path}: chunk missing; the store is damaged, build it again") from None
        except OSError as err:
            raise InputError(f"{path}: unreadable ({err.strerror})") from None

    def _check_size(self, chunk, size):
        if size != self.chunk_bytes:  # zarr 2 stores the last chunk whole, too
            raise InputError(f"{self.chunk_path(chunk)}: {size} bytes, a chunk of this array holds {self.chunk_bytes}; "
                             "the store is damaged, build it again")


class ChunkCache:
    """The chunks read last, at most ``capacity`` bytes of them (least recently used go first); thread-safe."""

    def __init__(self, capacity: int = CACHE_BYTES) -> None:
        self.capacity = int(capacity)
        self._chunks: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def peek(self, key: tuple) -> np.ndarray | None:
        """The chunk ``key`` if it is kept, else None."""
        with self._lock:
            found = self._chunks.get(key)
            if found is not None:
                self._chunks.move_to_end(key)
            return found

    def get(self, key: tuple, read: Callable[[], np.ndarray]) -> np.ndarray:
        """The chunk ``key``, from the cache or from ``read()`` (then kept)."""
        with self._lock:
            found = self._chunks.get(key)
            if found is not None:
                self._chunks.move_to_end(key)
                return found
        found = read()  # outside the lock: two threads may read one chunk at once, harmlessly
        with self._lock:
            if key not in self._chunks and found.nbytes <= self.capacity:
                self._chunks[key] = found
                self._bytes += found.nbytes
                while self._bytes > self.capacity:
                    _, dropped = self._chunks.popitem(last=False)
                    self._bytes -= dropped.nbytes
        return found
