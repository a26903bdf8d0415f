"""A killed training, rerun with the same command, ends with the bytes of an uninterrupted run.

Each run is a real ``autoencoder3d train`` process, killed from outside (SIGKILL,
SIGTERM) during a 16^3, 3-epoch training.
"""

import io
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import pytest

from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

RUN = ["--epochs", "3", "--batch-size", "8", "--n-init", "2", "--seed", "5", "-q"]
CLUSTER_FILES = ("kmeans.pickle", "ccents.pickle", "ccents_d.pickle", "encodings.pickle")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.pickle"
    with open(path, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=40), handle, protocol=4)
    return str(path)


@pytest.fixture
def store(data, tmp_path, monkeypatch):
    """The same 40 subvolumes as a store of 4 per chunk (10 chunks): batches come chunk by chunk through a
    shuffle buffer (:func:`~autoencoder3d.network.batches.epoch_order`), whose order depends on (seed, epoch) alone."""
    from autoencoder3d.data.store import store as store_module
    from autoencoder3d.data.store.store import read_manifest, store_from_set
    from autoencoder3d.formats.subvolume_pickle import load_subvolumes

    monkeypatch.setattr(store_module, "CHUNK_BYTES", 4 * 16**3 * 4)
    store_from_set(tmp_path / "data.zarr", load_subvolumes(data))
    assert read_manifest(tmp_path / "data.zarr")["chunk_subvolumes"] == 4
    return str(tmp_path / "data.zarr")


def start(data, out, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    command = [sys.executable, "-m", "autoencoder3d", "train", data, "None", "False", "3", "--out", str(out), *RUN, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc):
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def epochs_logged(out):
    try:
        with open(os.path.join(out, "model", "history.csv")) as handle:
            return len(handle.read().splitlines()) - 1
    except OSError:
        return 0


def kill_after_epoch(proc, out, epoch, sig, delay=0.0):
    """Send ``sig`` once ``epoch`` epochs are logged (plus ``delay`` seconds); return (status, stderr)."""
    deadline = time.time() + 300
    while epochs_logged(out) < epoch:
        assert proc.poll() is None, f"the run ended before epoch {epoch}: {proc.communicate()[1]}"
        assert time.time() < deadline
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(sig)
    return finish(proc)


def weight_arrays(keras_file):
    """Every weight array of a saved ``.keras`` model, as bytes, by name."""
    with zipfile.ZipFile(keras_file) as archive:
        blob = archive.read("model.weights.h5")
    arrays = {}
    with h5py.File(io.BytesIO(blob), "r") as weights:
        weights.visititems(lambda name, item: arrays.__setitem__(name, item[()].tobytes()) if isinstance(item, h5py.Dataset) else None)
    return arrays


def outputs(out):
    clusters = {name: open(os.path.join(out, "clus-center", name), "rb").read() for name in CLUSTER_FILES}
    weights = weight_arrays(os.path.join(out, "model", "model-autoencoder.keras"))
    return clusters, weights


def test_killed_runs_end_with_the_bytes_of_an_uninterrupted_run(store, tmp_path):
    """On a chunked store (a killed run on a pickle is resumed in tests/workflows/test_jax_backend.py and
    tests/network/test_train.py)."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    status, err = finish(start(store, reference))
    assert status == 0, err
    # SIGKILL during the second epoch
    kill_after_epoch(start(store, killed), killed, 1, signal.SIGKILL, delay=0.2)
    # SIGTERM (what SLURM sends before preemption): one line, status 143, resumable
    status, err = kill_after_epoch(start(store, killed), killed, 2, signal.SIGTERM)
    assert status == 143, err
    ours = [line for line in err.splitlines() if line.startswith("autoencoder3d")]
    assert len(ours) == 1 and "terminated (SIGTERM)" in ours[0] and "Traceback" not in err, err
    status, err = finish(start(store, killed))
    assert status == 0, err
    expected, got = outputs(reference), outputs(killed)
    assert got[0] == expected[0], "cluster files differ"
    assert len(expected[1]) >= 10
    same = [name for name in expected[1] if got[1].get(name) == expected[1][name]]
    assert len(same) == len(expected[1]), f"{len(same)} of {len(expected[1])} weight arrays identical"
    leftovers = [name for _, _, names in os.walk(killed) for name in names if ".tmp" in name]
    assert leftovers == []
