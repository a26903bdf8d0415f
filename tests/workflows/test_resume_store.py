"""A killed training that reads a store of several subvolumes per chunk ends, rerun, with the bytes of an uninterrupted run.

The store's batches come chunk by chunk through a shuffle buffer
(:func:`~autoencoder3d.network.batches.epoch_order`); their order depends on
``(seed, epoch)`` alone, so the resumed epochs see the batches the uninterrupted run saw.
"""

import pickle
import signal

import pytest

from tests.workflows.test_resume import finish, kill_after_epoch, outputs, start

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


@pytest.fixture
def store(tmp_path, monkeypatch):
    from autoencoder3d.data.store import store as store_module
    from autoencoder3d.data.store.store import read_manifest, store_from_set
    from autoencoder3d.formats.subvolume_pickle import load_subvolumes
    from tests.conftest import make_subvolume_dict

    path = tmp_path / "data.pickle"
    with open(path, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=40), handle, protocol=4)
    monkeypatch.setattr(store_module, "CHUNK_BYTES", 4 * 16**3 * 4)  # 4 subvolumes of 16^3 per chunk: 10 chunks
    store_from_set(tmp_path / "data.zarr", load_subvolumes(str(path)))
    assert read_manifest(tmp_path / "data.zarr")["chunk_subvolumes"] == 4
    return str(tmp_path / "data.zarr")


def test_a_killed_run_on_a_chunked_store_ends_with_the_bytes_of_an_uninterrupted_run(store, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    status, err = finish(start(store, reference))
    assert status == 0, err
    kill_after_epoch(start(store, killed), killed, 1, signal.SIGKILL)
    status, err = finish(start(store, killed))
    assert status == 0, err
    expected, got = outputs(reference), outputs(killed)
    assert got[0] == expected[0], "cluster files differ"
    assert len(expected[1]) >= 10 and got[1] == expected[1], "weights differ"
