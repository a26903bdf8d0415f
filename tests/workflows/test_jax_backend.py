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
RUN = ["--epochs", "2", "--batch-size", "7", "--n-init", "2", "--seed", "5", "-q", "--distribute"]


def start(data, out):
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false")
    command = [sys.executable, "-c", NO_TENSORFLOW, "train", data, "None", "False", "3", "--out", str(out), *RUN]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_jax_trains_on_two_devices_clusters_and_a_killed_run_resumes_to_the_same_bytes(tmp_path):
    """One model on two host devices (--distribute, keras.distribution data parallelism); a run killed between
    its epochs and started again ends with the bytes of an uninterrupted one."""
    import pickle

    from tests.conftest import make_subvolume_dict

    data = tmp_path / "d17.pickle"
    with open(data, "wb") as handle:  # 15 training subvolumes in batches of 7: 6, 6 (a last single one is left out); 2 to validate
        pickle.dump(make_subvolume_dict(n=17), handle, protocol=4)
    whole = start(str(data), tmp_path / "whole")
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    run = tmp_path / "whole"
    record = json.loads((run / "run.json").read_text())
    assert record["options"]["distribute"] == "mirrored" and record["versions"]["keras_backend"] == "jax"
    assert "tensorflow" not in record["versions"]
    training = record["training"]
    assert training["distribution"] == {"kind": "mirrored", "backend": "jax", "devices": 2, "device_type": "cpu"}
    assert training["optimizer_steps"] == 4 and training["epochs_total"] == 2  # two batches an epoch
    with open(run / "model" / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 2 and all(math.isfinite(float(row[key])) for row in history for key in ("loss", "val_loss")), history
    assert all((run / "clus-center" / name).is_file() for name in CLUSTER_FILES)
    assert len(record["cluster_sizes"]) == 3

    killed = start(str(data), tmp_path / "killed")
    while epochs_logged(tmp_path / "killed") < 1:
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert epochs_logged(tmp_path / "killed") == 1  # killed between the two epochs, before the clustering
    again = start(str(data), tmp_path / "killed")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "whole")
