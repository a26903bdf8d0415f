"""Encoding every subvolume of a data set in blocks read from it.

The subvolumes are read ``volumes[lo:hi]``, one block of consecutive rows at a
time (a store stays on disk; for an array in memory a block is a view, not a
copy), and each block is encoded batch by batch by the encoder's ``predict``. Only the codes, ``(N, encoding_dim)``, grow with N: memory
holds at most two blocks (the one being encoded and, from an on-disk store,
the next, read by one thread meanwhile), and, encoding in flips, one flipped
copy of the first.

A block is a whole number of batches, so the batches are those of encoding
the whole array at once, and so are the codes, bit for bit.

Asked for several proper flips (:data:`~autoencoder3d.prep.flips.PROPER_FLIPS`),
each block is read once and encoded in every flip in turn: the codes are those
of encoding each flipped view of the data separately, bit for bit, but a store
is read once instead of once per flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ..prep.flips import apply_flip

if TYPE_CHECKING:
    import keras

    from ..volume import Volumes

BLOCK_BYTES = 1 << 27
"""Float32 bytes of subvolumes read at a time (128 MiB: 1024 subvolumes of 32^3), rounded down to whole batches."""


def block_rows(volumes: Volumes, batch_size: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows of a block: as many whole batches as fit in ``block_bytes`` of float32, at least one batch."""
    per = 4 * max(1, int(np.prod(volumes.shape[1:])))
    return max(1, int(block_bytes) // per // batch_size) * batch_size


def encode_blocks(encoder: keras.Model, volumes: Volumes, batch_size: int = 128, *, block: int | None = None,
                  flips: Sequence[Sequence[int]] | np.ndarray | None = None) -> np.ndarray:
    """Codes ``(N, encoding_dim)`` of ``volumes`` (an array or a store's volumes), read block by block.

    Args:
        encoder: the encoder (its standardization is inside it).
        volumes: ``(N, n1, n2, n3)``; indexed only by ``volumes[lo:hi]``, each block once.
        batch_size: subvolumes per prediction step.
        block: rows read at a time (rounded down to whole batches; default :func:`block_rows`).
        flips: sign triples (rows of :data:`~autoencoder3d.prep.flips.PROPER_FLIPS`): encode every block
            in each of these flips, and return ``(len(flips), N, encoding_dim)``, the codes in the order of ``flips``.
    """
    batch_size = max(1, int(batch_size))
    n = len(volumes)
    block = block_rows(volumes, batch_size) if block is None else max(1, int(block) // batch_size) * batch_size
    spans = [(lo, min(lo + block, n)) for lo in range(0, n, block)]
    signs = [None] if flips is None else [(1, *(int(s) for s in row)) for row in flips]
    codes = None
    on_disk = not isinstance(volumes, np.ndarray)
    with ThreadPoolExecutor(1, thread_name_prefix="autoencoder3d-encode-read") as pool:
        read = (lambda span: pool.submit(_read, volumes, *span)) if on_disk else (lambda span: _Ready(_read(volumes, *span)))
        pending = read(spans[0]) if spans else None
        for i, (lo, hi) in enumerate(spans):
            rows = pending.result()
            pending = read(spans[i + 1]) if i + 1 < len(spans) else None  # the next block is read while this one is encoded
            for f, flip in enumerate(signs):
                out = _predict(encoder, rows if flip is None else np.ascontiguousarray(apply_flip(rows, flip)), batch_size)
                if codes is None:
                    codes = np.empty((len(signs), n) + out.shape[1:], dtype=out.dtype)
                codes[f, lo:hi] = out
            del rows
    if codes is None:  # no subvolumes
        codes = np.empty((len(signs), 0) + tuple(encoder.output_shape[1:]), dtype=np.float32)
    return codes[0] if flips is None else codes


def _predict(encoder, rows, batch_size):
    # predict, not predict_on_batch: under a distribution strategy it splits an uneven last batch
    # across the replicas and returns exactly one code per subvolume
    return np.asarray(encoder.predict(rows[..., None], batch_size=batch_size, verbose=0))


def _read(volumes, lo, hi):
    rows = volumes[lo:hi]
    return rows if rows.dtype == np.float32 else np.asarray(rows, dtype=np.float32)


class _Ready:
    """A result already at hand, read like a future."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value
