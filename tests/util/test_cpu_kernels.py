"""TensorFlow's oneDNN CPU kernels: on unless the user says otherwise, a warning when off, recorded in run.json.

Each case is a fresh process: TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

WARNING = "oneDNN CPU kernels are off"


def environment(value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    return env


def run_child(code):
    """``python -c code`` in a fresh process with TF_ENABLE_ONEDNN_OPTS unset; fails the test unless it exits 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment(None))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def train(tmp_path, value):
    data = tmp_path / "d.pickle"
    with open(data, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=24), handle, protocol=4)
    out = tmp_path / f"run-{value}"
    command = [sys.executable, "-m", "autoencoder3d", "train", str(data), "None", "False", "2", "--out", str(out),
               "--epochs", "1", "--batch-size", "8", "--n-init", "2", "--seed", "0", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment(value))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "run.json") as handle:
        return json.load(handle)["cpu_kernels"], result.stderr


def test_unset_variable_switches_onednn_on_and_says_so_without_a_warning():
    # what run.json records is kernel_record() (the training run below shows it written there)
    child = (
        "import json, logging, autoencoder3d, tensorflow, autoencoder3d.util.cpu_kernels as k; "
        "logging.basicConfig(); k.warn_if_slow(); print(json.dumps(k.kernel_record()))"
    )
    result = run_child(child)
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["onednn"] is True
    assert record["TF_ENABLE_ONEDNN_OPTS"] == "1" and record["set_by"] == "autoencoder3d"
    assert WARNING not in result.stderr


def test_users_zero_is_kept_with_one_warning_line(tmp_path):
    record, stderr = train(tmp_path, "0")
    assert record == {**record, "onednn": False, "TF_ENABLE_ONEDNN_OPTS": "0", "set_by": "user"}
    lines = [line for line in stderr.splitlines() if WARNING in line]
    assert len(lines) == 1, stderr
    assert "TF_ENABLE_ONEDNN_OPTS=0" in lines[0]


def test_tensorflow_imported_first_keeps_its_own_choice():
    child = (
        "import os, tensorflow, autoencoder3d.util.cpu_kernels as k; "
        "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), k.decided_by, k.onednn_active() in (True, False))"
    )
    assert run_child(child).stdout.split() == ["None", "tensorflow", "True"]
