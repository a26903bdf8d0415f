"""--distribute under JAX: which kinds each backend runs, and batches that split into equal parts across devices."""

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.network.batches import batch_count
from autoencoder3d.network.data_parallel import check_distribute, check_even_split


@pytest.mark.parametrize("kind, backend", [(None, "jax"), (False, "torch"), ("mirrored", "jax"), ("mirrored", "tensorflow"),
                                           ("multiworker", "tensorflow")])
def test_the_kinds_each_backend_runs_pass(kind, backend):
    check_distribute(kind, backend)


@pytest.mark.parametrize("kind, backend, message", [
    ("multiworker", "jax", "needs Keras's TensorFlow backend .*under JAX use --distribute mirrored"),
    ("mirrored", "torch", "TensorFlow or JAX backend, not 'torch'"),
    ("ring", "jax", "expected one of mirrored, got 'ring'"),
])
def test_other_kinds_are_refused_in_one_line_saying_what_to_use(kind, backend, message):
    with pytest.raises(InputError, match=message) as caught:
        check_distribute(kind, backend)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("n, batch, multiple_of, even, count", [
    (15, 7, 2, False, 3),  # TensorFlow: the last single sample is a batch (its strategies split it unevenly)
    (15, 7, 2, True, 2),  # JAX: left out
    (14, 7, 2, True, 2), (16, 7, 2, True, 3), (17, 8, 4, True, 2), (1, 8, 2, True, 1), (0, 8, 1, False, 1),
])
def test_batch_count_leaves_out_only_a_last_batch_too_short_to_split(n, batch, multiple_of, even, count):
    assert batch_count(n, batch, multiple_of, even) == count


def test_every_jax_batch_splits_evenly_and_the_tensorflow_batches_are_unchanged():
    from autoencoder3d.network.train import ArrayBatches

    volumes = np.arange(15 * 8, dtype=np.float32).reshape(15, 2, 2, 2)
    sizes = {even: [len(batch[0]) for batch in ArrayBatches(volumes, np.arange(15), 7, shuffle=True, seed=1, multiple_of=2, even=even)]
             for even in (False, True)}
    assert sizes == {False: [6, 6, 1], True: [6, 6]}


@pytest.mark.parametrize("args, message", [
    ((14, 2, 1, 2), "--batch-size 1 is smaller than the 2 devices"),
    ((1, 4, 8, 2), "1 training subvolumes, fewer than the 2 devices"),
    ((14, 3, 8, 4), "3 validation subvolumes, fewer than the 4 devices of --distribute; use a larger --validation-split"),
])
def test_batches_that_cannot_split_across_the_devices_are_refused(args, message):
    with pytest.raises(InputError, match=message):
        check_even_split(*args)


def test_even_splits_and_no_validation_pass():
    check_even_split(14, 2, 7, 2)
    check_even_split(16, 0, 8, 2)


def test_the_collapse_guard_encodes_a_sample_and_batches_that_split_across_the_devices():
    from autoencoder3d.network.collapse_guard import CollapseGuard

    guard = CollapseGuard(None, np.zeros((15, 2, 2, 2), np.float32), np.arange(15)[::-1], batch_size=64, multiple_of=3)
    assert len(guard.indices) == 15 and guard.batch_size == 63
    guard = CollapseGuard(None, np.zeros((15, 2, 2, 2), np.float32), np.arange(15)[::-1], multiple_of=2)
    assert guard.indices.tolist() == list(range(1, 15)) and guard.batch_size == 64
    assert len(CollapseGuard(None, None, np.arange(15)).indices) == 15  # one device (and TensorFlow): unchanged
