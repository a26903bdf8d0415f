"""A batch's rows and its standardization: the one owner both batch classes ask."""

import numpy as np
import pytest

from autoencoder3d.network import batches
from autoencoder3d.network.batches import batch_rows, standardized


def reference(batch, mean, std):
    return ((np.asarray(batch).astype(np.float64) - mean) / std).astype(np.float32)


@pytest.mark.parametrize("shape", [(7, 16, 16, 16), (3, 5, 6, 7), (130, 4, 4, 4)])
def test_standardized_gives_the_float64_numbers_bit_for_bit(shape, monkeypatch):
    monkeypatch.setattr(batches, "STANDARDIZE_BYTES", 8 * 4 * 4 * 4 * 3)  # three 4^3 rows at a time: several blocks
    batch = (np.random.default_rng(0).normal(size=shape) * 37 + 5).astype(np.float32)
    want = reference(batch, 4.25, 3.1)
    got = standardized(batch.copy(), 4.25, 3.1)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, want)


def test_standardized_returns_a_new_float32_array_and_leaves_its_input_alone():
    batch = np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2)
    out = standardized(batch, 1.0, 2.0)
    assert out is not batch and out[0, 0, 0, 1] == 0.0 and batch[0, 0, 0, 1] == 1.0
    ints = np.arange(8, dtype=np.int16).reshape(1, 2, 2, 2)
    out = standardized(ints, 1.0, 2.0)
    assert out.dtype == np.float32 and ints[0, 0, 0, 1] == 1 and out[0, 0, 0, 1] == 0.0
    same = np.ones((2, 3), np.float32)
    assert standardized(same, 0.0, 1.0) is same  # nothing to compute: no copy


def test_batch_rows_are_sorted_and_trimmed_to_the_replicas():
    order = np.array([9, 3, 7, 1, 8, 2, 6, 0, 5, 4])
    np.testing.assert_array_equal(batch_rows(order, 0, 4), [1, 3, 7, 9])
    np.testing.assert_array_equal(batch_rows(order, 2, 4), [4, 5])
    np.testing.assert_array_equal(batch_rows(order, 1, 4, multiple_of=3), [2, 6, 8])  # 4 rows trimmed to 3
    np.testing.assert_array_equal(batch_rows(order, 2, 4, multiple_of=3), [4, 5])  # fewer than a multiple: kept


def test_threads_prepare_batches_from_a_store_or_for_a_gpu_but_not_from_memory_on_a_cpu(monkeypatch):
    from autoencoder3d.network.batches import READ_THREADS, loader_options, on_accelerator, reading_threads

    in_memory, on_disk = np.zeros((2, 4, 4, 4), np.float32), object()
    assert not on_accelerator()  # the test machine trains on its CPU
    assert reading_threads(in_memory) == 0 and loader_options(in_memory) == {}
    assert reading_threads(on_disk) == READ_THREADS and loader_options(on_disk)["workers"] == READ_THREADS
    monkeypatch.setattr(batches, "on_accelerator", lambda: True)
    assert reading_threads(in_memory) == READ_THREADS and loader_options(in_memory)["workers"] == READ_THREADS
