"""Keras's JAX backend (KERAS_BACKEND=jax) is a supported configuration: it trains, clusters and resumes without TensorFlow.

The GPU servers this runs on may have no TensorFlow at all, so each run is a
process in which ``import tensorflow`` fails. Skipped where JAX is not installed
(``pip install -e ".[jax]"``).
"""

import json
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
