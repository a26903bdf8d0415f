"""One input pipeline for a whole training, in :class:`~autoencoder3d.network.train.ArrayBatches`' exact order.

Keras opens a new iterator over a ``PyDataset`` at every epoch (a new
``tf.data`` generator and, for an on-disk store, a new pool of reading
threads), and each epoch's first batch waits for it: measured 15.6 s longer
than a step on 2 busy cores (README, "Training speed on a CPU"). Here one
generator runs through every remaining epoch and ``fit`` takes it with
``steps_per_epoch``, so the iterator lives as long as the fit. The batches are ArrayBatches' own, epoch by epoch
(each epoch's order drawn from ``(seed, epoch)``), so a resumed run still sees
exactly the batches of an uninterrupted one. :func:`epoch_order` is that
order, for every batch class.
"""

from __future__ import annotations

import collections
import copy
import itertools
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

    from .train import ArrayBatches

READ_AHEAD = 8  # batches read ahead from an on-disk store (as ArrayBatches' max_queue_size)
READ_THREADS = 2  # threads preparing batches ahead, from an on-disk store or for a GPU
STANDARDIZE_BYTES = 1 << 18  # float64 scratch of the standardization: small enough to stay in the CPU's cache
SHUFFLE_BATCHES = 4  # a store's shuffle buffer holds the chunks of about this many batches ...
SHUFFLE_BYTES = 32 << 20  # ... and at most this many bytes of them (at least one chunk)


def epoch_order(indices: ArrayLike, seed: int, epoch: int, *, shuffle: bool = True, volumes: object = None,
                batch_size: int = 1) -> np.ndarray:
    """The order in which an epoch takes the samples ``indices``: the one owner of batch order.

    Without ``shuffle``: ``indices`` as given. In memory, from a store of one
    subvolume per chunk, and from a store whose chunks of ``indices`` all fit
    in one shuffle buffer: a permutation drawn from ``(seed, epoch)``. From a
    larger store of several subvolumes per chunk (``volumes`` has ``chunk_ids``): its
    chunks in an order drawn from ``(seed, epoch)``, cut into windows of a few
    chunks (the shuffle buffer: about :data:`SHUFFLE_BATCHES` batches, at most
    :data:`SHUFFLE_BYTES`), and the samples of each window in an order drawn
    from the same generator; so batches read a few chunks at a time, each once.

    Either way the order is a permutation of ``indices`` and depends on
    ``(seed, epoch)`` alone, so a resumed run sees the batches of an uninterrupted one.
    """
    indices = np.asarray(indices)
    if not shuffle:
        return indices
    per_chunk = int(getattr(volumes, "subvolumes_per_chunk", 1))
    if per_chunk > 1 and len(indices):
        chunks, inverse = np.unique(volumes.chunk_ids(indices), return_inverse=True)
        wanted = -(-SHUFFLE_BATCHES * int(batch_size) // per_chunk)
        window = max(1, min(wanted, SHUFFLE_BYTES // max(1, int(volumes.chunk_bytes))))
        if len(chunks) > window:  # a buffer that holds every chunk is a whole shuffle: the order from memory, below
            rng = np.random.default_rng([int(seed), int(epoch), per_chunk])
            place = np.empty(len(chunks), dtype=np.int64)
            place[rng.permutation(len(chunks))] = np.arange(len(chunks))  # chunk c comes place[c]-th this epoch
            return indices[np.lexsort((rng.random(len(indices)), place[inverse.ravel()] // window))]
    rng = np.random.default_rng([int(seed), int(epoch)])
    return indices[rng.permutation(len(indices))]


def batch_rows(order: np.ndarray, i: int, batch_size: int, multiple_of: int = 1) -> np.ndarray:
    """The sorted rows of batch ``i`` of an epoch's ``order``, trimmed to a multiple of ``multiple_of`` (replicas)."""
    chosen = order[i * batch_size : (i + 1) * batch_size]
    keep = max(multiple_of, len(chosen) - len(chosen) % multiple_of)
    return np.sort(chosen[:keep])


def standardized(batch: ArrayLike, mean: float, std: float) -> np.ndarray:
    """``(batch - mean) / std`` computed in float64 and rounded to float32, as a new array
    (with mean 0 and std 1: ``batch`` itself, as float32).

    The same numbers as ``((batch.astype(np.float64) - mean) / std).astype(np.float32)``,
    so that rescaled data give the same batches, but computed a few
    subvolumes at a time through a float64 scratch that stays in the CPU's
    cache: about 1.6 times as fast at 32^3, which matters when a GPU takes
    thousands of subvolumes a second.
    """
    batch = np.asarray(batch)
    mean, std = float(mean), float(std)
    if mean == 0.0 and std == 1.0:
        return np.asarray(batch, dtype=np.float32)
    out = np.empty(batch.shape, dtype=np.float32)
    rows = max(1, STANDARDIZE_BYTES // (8 * max(1, out[0].size))) if len(out) else 1
    scratch = np.empty((rows,) + out.shape[1:], dtype=np.float64)
    for lo in range(0, len(out), rows):
        part = scratch[: len(out[lo : lo + rows])]
        np.subtract(batch[lo : lo + rows], mean, out=part, dtype=np.float64)
        np.divide(part, std, out=part)
        out[lo : lo + rows] = part
    return out


def batch_count(n: int, batch_size: int, multiple_of: int = 1, even: bool = False) -> int:
    """Number of batches of ``batch_size`` cutting ``n`` samples (at least one).

    With ``even`` (JAX's data parallelism: every batch splits into equal parts), a
    last batch of fewer than ``multiple_of`` samples is left out; otherwise it
    is kept (TensorFlow's strategies split it unevenly).
    """
    count = max(1, math.ceil(n / batch_size))
    if even and count > 1 and n % batch_size and n % batch_size < multiple_of:
        count -= 1
    return count


def at_epoch(batches: ArrayBatches, epoch: int) -> ArrayBatches:
    """A copy of ``batches`` (an ArrayBatches) ordered for ``epoch``; the original is not touched."""
    copied = copy.copy(batches)
    copied.epoch = int(epoch)
    copied._order = copied._order_for_epoch()
    return copied


def _jobs(batches, epochs):
    for epoch in epochs:
        ordered = at_epoch(batches, epoch)
        for i in range(len(ordered)):
            yield ordered, i


def _read(job):
    ordered, i = job
    return ordered[i][0]


def stream(batches: ArrayBatches, epochs: Iterable[int], threads: int = 0) -> Iterator[np.ndarray]:
    """The input arrays of the batches of ``epochs`` (an iterable), in order.

    With ``threads`` > 0, one pool of threads reads up to :data:`READ_AHEAD`
    batches ahead, across epoch boundaries, keeping the order.
    """
    jobs = _jobs(batches, epochs)
    if threads <= 0:
        yield from map(_read, jobs)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="autoencoder3d-read") as pool:
        pending = collections.deque()
        for job in jobs:
            pending.append(pool.submit(_read, job))
            if len(pending) >= READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def reading_threads(volumes: object, threads: int = READ_THREADS) -> int:
    """Threads that prepare batches ahead: ``threads`` from an on-disk store or for a GPU, else none.

    A GPU step leaves the CPU waiting, and threads cut and standardize the next
    batches meanwhile (at 15,000 subvolumes/s of 32^3 one thread would need
    all of a step's time for its batch). On a CPU the training uses every
    core, and from memory Keras's threaded enqueuer delivered 0.94x (32^3) and
    0.77x (16^3) the batches/s of none (2 cores, ``scripts/bench_gpu.py --feed``).
    """
    return int(threads) if not isinstance(volumes, np.ndarray) or on_accelerator() else 0


def on_accelerator() -> bool:
    """Whether Keras trains on a GPU or TPU (any device of its backend that is not a CPU)."""
    import keras

    try:
        devices = keras.distribution.list_devices()
    except Exception:  # noqa: BLE001 - a backend without the call: train as on a CPU
        return False
    return any(not str(device).lower().startswith("cpu") for device in devices)


def loader_options(volumes: object) -> dict[str, int]:
    """``PyDataset`` options of a batch class over ``volumes``: threads as :func:`reading_threads` says."""
    threads = reading_threads(volumes)
    return {"workers": threads, "max_queue_size": READ_AHEAD} if threads else {}


def training_dataset(batches: ArrayBatches, first_epoch: int, end_epoch: int, read_threads: int = READ_THREADS) -> tf.data.Dataset:
    """``tf.data`` pipeline of ``(x, x)`` batches for epochs ``first_epoch`` .. ``end_epoch - 1``.

    From an on-disk store, or for a GPU, ``read_threads`` threads prepare the
    batches ahead (:func:`reading_threads`). Pass it to ``fit`` with ``steps_per_epoch=len(batches)``.
    """
    threads = reading_threads(batches.volumes, read_threads)
    return _dataset(batches, lambda: stream(batches, range(first_epoch, end_epoch), threads))


def validation_dataset(batches: ArrayBatches, read_threads: int = READ_THREADS) -> tf.data.Dataset:
    """The validation batches in their one fixed order, again for every evaluation (no end).

    Pass it to ``fit`` with ``validation_steps=len(batches)``.
    """
    threads = reading_threads(batches.volumes, read_threads)
    return _dataset(batches, lambda: stream(batches, itertools.repeat(batches.epoch), threads))


def _dataset(batches, make_generator):
    import tensorflow as tf

    shape = (None,) + tuple(batches.volumes.shape[1:]) + (1,)
    dataset = tf.data.Dataset.from_generator(make_generator, output_signature=tf.TensorSpec(shape, tf.float32))
    return dataset.map(lambda x: (x, x)).prefetch(2)
