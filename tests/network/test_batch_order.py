"""Batch order, the one owner (epoch_order): in memory as it always was; from a chunked store, chunk by chunk through a shuffle buffer."""

import numpy as np
import pytest

from autoencoder3d.network.batches import SHUFFLE_BATCHES, epoch_order


class ChunkedVolumes:
    """What epoch_order asks of a store: subvolumes per chunk, the chunk of each subvolume, a chunk's bytes."""

    def __init__(self, per_chunk, chunk_bytes=1 << 20):
        self.subvolumes_per_chunk, self.chunk_bytes = per_chunk, chunk_bytes

    def chunk_ids(self, indices):
        return np.asarray(indices) // self.subvolumes_per_chunk


def test_in_memory_order_is_the_seeded_permutation_it_always_was():
    indices = np.arange(5, 105)
    for seed, epoch in ((0, 0), (7, 3)):
        expected = indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
        np.testing.assert_array_equal(epoch_order(indices, seed, epoch), expected)
        np.testing.assert_array_equal(epoch_order(indices, seed, epoch, volumes=ChunkedVolumes(1), batch_size=8), expected)
    np.testing.assert_array_equal(epoch_order(indices, 1, 2, shuffle=False), indices)


@pytest.mark.parametrize("n", [1000, 997])
def test_a_chunked_store_order_is_a_permutation_per_epoch_drawn_from_seed_and_epoch(n):
    volumes, batch = ChunkedVolumes(16), 32
    indices = np.arange(n)
    orders = {(seed, epoch): epoch_order(indices, seed, epoch, volumes=volumes, batch_size=batch) for seed in (0, 1) for epoch in range(3)}
    for order in orders.values():
        assert sorted(order.tolist()) == indices.tolist()
    assert len({order.tobytes() for order in orders.values()}) == len(orders)  # every (seed, epoch) its own order
    again = epoch_order(indices, 1, 2, volumes=volumes, batch_size=batch)
    np.testing.assert_array_equal(again, orders[1, 2])
    # the shuffle buffer: each chunk's samples lie within one window of the order (SHUFFLE_BATCHES batches of chunks)
    window = SHUFFLE_BATCHES * batch
    order = orders[0, 1]
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    for chunk in range(-(-n // 16)):
        places = where[chunk * 16 : (chunk + 1) * 16]
        assert places.max() - places.min() < window
    # and the chunks come in a shuffled order, their samples shuffled within a window
    first = volumes.chunk_ids(order[:window])
    assert len(set(first.tolist())) == window // 16 and not np.array_equal(np.sort(first), first)


def test_a_store_that_fits_one_buffer_is_shuffled_as_in_memory():
    """Its training then takes the batches it would take from memory (a small store and its pickle train alike)."""
    indices = np.arange(120)  # 8 chunks of 16, a buffer of 4 batches of 32: all of them
    np.testing.assert_array_equal(epoch_order(indices, 2, 1, volumes=ChunkedVolumes(16), batch_size=32), epoch_order(indices, 2, 1))
    assert not np.array_equal(epoch_order(np.arange(200), 2, 1, volumes=ChunkedVolumes(16), batch_size=32),
                              epoch_order(np.arange(200), 2, 1))


def test_the_buffer_is_bounded_in_bytes():
    volumes = ChunkedVolumes(2, chunk_bytes=16 << 20)  # chunks of 2 subvolumes of 8 MiB: at most 2 chunks a window
    order = epoch_order(np.arange(64), 0, 0, volumes=volumes, batch_size=32)
    for lo in range(0, 64, 4):
        assert len(set(volumes.chunk_ids(order[lo : lo + 4]).tolist())) == 2


def test_a_subset_of_a_store_keeps_to_its_own_indices():
    indices = np.arange(10, 90, 3)  # a training split that cuts chunks
    order = epoch_order(indices, 4, 0, volumes=ChunkedVolumes(8), batch_size=4)
    assert sorted(order.tolist()) == indices.tolist()


def test_batches_from_a_chunked_store_resume_with_the_batches_of_an_uninterrupted_run(tmp_path, monkeypatch):
    from autoencoder3d.data.store import store as store_module
    from autoencoder3d.data.store.read import open_store
    from autoencoder3d.data.store.store import store_from_set
    from autoencoder3d.network.train import ArrayBatches
    from autoencoder3d.volume import SubvolumeSet

    n, side = 60, 4
    volumes = np.random.default_rng(2).normal(size=(n, side, side, side)).astype(np.float32)
    monkeypatch.setattr(store_module, "CHUNK_BYTES", 5 * side**3 * 4)
    store_from_set(tmp_path / "d.zarr", SubvolumeSet(uuids=[f"p{i}" for i in range(n)], volumes=volumes, centers=np.zeros((n, 3))))
    stored = open_store(tmp_path / "d.zarr").volumes
    assert stored.subvolumes_per_chunk == 5
    options = dict(shuffle=True, seed=3, mean=0.5, std=2.0)
    whole = ArrayBatches(stored, np.arange(50), 8, **options)
    seen = []
    for _ in range(4):
        seen.append([whole[i][0] for i in range(len(whole))])
        whole.on_epoch_end()
    resumed = ArrayBatches(stored, np.arange(50), 8, epoch=2, **options)
    for epoch in (2, 3):
        for i in range(len(resumed)):
            np.testing.assert_array_equal(resumed[i][0], seen[epoch][i])
        resumed.on_epoch_end()
    # the batches are the samples' own volumes, in the order epoch_order gives
    order = epoch_order(np.arange(50), 3, 0, volumes=stored, batch_size=8)
    for i in range(len(whole)):
        chosen = np.sort(order[i * 8 : (i + 1) * 8])
        np.testing.assert_array_equal(seen[0][i], ((volumes[chosen].astype(np.float64) - 0.5) / 2.0).astype(np.float32)[..., None])
    assert not all(np.array_equal(a, b) for a, b in zip(seen[0], seen[1]))
