"""--mixed-precision and --distribute, exercised on the CPU (two logical devices)."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

CHILD = """

import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from autoencoder3d.workflows.train import run_train
from autoencoder3d.runs.options import TrainOptions
options = TrainOptions(epochs=1, batch_size=8, n_init=2, seed=0, mixed_precision="bfloat16", distribute=True, verbose=0)
record = run_train(sys.argv[1], None, False, 3, sys.argv[2], options)
import keras

from autoencoder3d.network.train import load_saved_models
_, encoder, decoder = load_saved_models(sys.argv[2] + "/model")
core = encoder.get_layer("core_encoder")
print("DTYPES", core.layers[-1].compute_dtype, decoder.get_layer("core_decoder").layers[-1].compute_dtype, core.layers[1].compute_dtype)
"""


def test_mixed_bfloat16_on_two_replicas_with_an_uneven_last_batch(tmp_path):
    data = tmp_path / "d.pickle"
    pickle.dump(make_subvolume_dict(n=25), open(data, "wb"))  # 22 training samples: batches 8, 8, 6; encoding ends on 1
    # TensorFlow 2.21's oneDNN graph rewrite breaks convolutions on *logical* CPU
    # replicas ("input and filter must have the same depth"); GPUs are unaffected.
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    result = subprocess.run([sys.executable, "-c", CHILD, str(data), str(tmp_path / "run")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.load(open(tmp_path / "run" / "run.json"))
    assert record["options"]["mixed_precision"] == "bfloat16" and record["options"]["distribute"]
    assert np.isfinite(record["training"]["best_val_loss"])
    # the code and the reconstruction stay float32; the convolutions compute in bfloat16
    assert "DTYPES float32 float32 bfloat16" in result.stdout
