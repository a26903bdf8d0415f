"""Keras's JAX backend (KERAS_BACKEND=jax) is a supported configuration: it trains, clusters and resumes without TensorFlow.

The GPU servers this runs on may have no TensorFlow at all, so each run is a
process in which ``import tensorflow`` fails. Skipped where JAX is not installed
(``pip install -e ".[jax]"``).
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.workflows.test_resume import CLUSTER_FILES, epochs_logged, outputs

pytest.importorskip("jax")
pytestmark = pytest.mark.slow  # trains a network or runs whole commands

NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None; from autoencoder3d.cli.main import main; sys.exit(main(sys.argv[1:]))"
RUN = ["--epochs", "2", "--batch-size", "8", "--n-init", "2", "--seed", "5", "-q"]


def start(data, out):
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    command = [sys.executable, "-c", NO_TENSORFLOW, "train", data, "None", "False", "3", "--out", str(out), *RUN]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def data(tmp_path):
    import pickle

    from tests.conftest import make_subvolume_dict

    path = tmp_path / "data.pickle"
    with open(path, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=16), handle, protocol=4)
    return str(path)


def test_jax_trains_clusters_and_a_killed_run_resumes_to_the_same_bytes(tmp_path, data):
    whole = start(data, tmp_path / "whole")
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    record = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert record["versions"]["keras_backend"] == "jax" and "tensorflow" not in record["versions"]
    assert all((tmp_path / "whole" / "clus-center" / name).is_file() for name in CLUSTER_FILES)

    killed = start(data, tmp_path / "killed")
    while epochs_logged(tmp_path / "killed") < 1:
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert epochs_logged(tmp_path / "killed") == 1  # killed between the two epochs, before the clustering
    again = start(data, tmp_path / "killed")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "whole")


def test_jax_distribute_trains_one_model_on_two_devices_with_every_batch_split_evenly(tmp_path):
    import pickle

    from tests.conftest import make_subvolume_dict

    data = tmp_path / "d17.pickle"
    with open(data, "wb") as handle:  # 15 training subvolumes in batches of 7: 6, 6 (a last single one is left out); 2 to validate
        pickle.dump(make_subvolume_dict(n=17), handle, protocol=4)
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false")
    run = tmp_path / "run"
    command = [sys.executable, "-c", NO_TENSORFLOW, "train", str(data), "None", "False", "3", "--out", str(run), "--epochs", "2",
               "--batch-size", "7", "--n-init", "2", "--seed", "5", "-q", "--distribute"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    assert record["options"]["distribute"] == "mirrored" and record["versions"]["keras_backend"] == "jax"
    training = record["training"]
    assert training["distribution"] == {"kind": "mirrored", "backend": "jax", "devices": 2, "device_type": "cpu"}
    assert training["optimizer_steps"] == 4 and training["epochs_total"] == 2  # two batches an epoch
    with open(run / "model" / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 2 and all(math.isfinite(float(row[key])) for row in history for key in ("loss", "val_loss")), history
    assert all((run / "clus-center" / name).is_file() for name in CLUSTER_FILES)
    assert len(record["cluster_sizes"]) == 3
