"""--distribute: the cluster from SLURM's variables, and a real two-worker training on the CPU."""

import json
import os
import pickle
import subprocess
import sys
import time

import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.network.distribute import cluster_config, describe, expand_nodelist, free_local_ports, is_chief, resolve_port, slurm_tf_config
from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


@pytest.mark.parametrize("text, hosts", [
    ("gpu5", ["gpu5"]),
    ("node[01-03,07],gpu5", ["node01", "node02", "node03", "node07", "gpu5"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("rack[1-2]-n[1,3]", ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]),
    ("a1, b[2]", ["a1", "b2"]),
])
def test_node_lists_expand_as_slurm_writes_them(text, hosts):
    assert expand_nodelist(text) == hosts


@pytest.mark.parametrize("text", ["node[01-03", "node01-03]", "node[3-1]", "node[a-b]", "", "node[[1]]"])
def test_unreadable_node_lists_are_refused_with_the_list_named(text):
    with pytest.raises(InputError, match="SLURM node list"):
        expand_nodelist(text)


SLURM = {"SLURM_JOB_NODELIST": "node[01-02],gpu5", "SLURM_NTASKS": "3", "SLURM_PROCID": "2"}


def test_slurm_variables_give_one_worker_per_node_and_the_rank_as_index():
    config = slurm_tf_config(SLURM, 23456)
    assert config == {
        "cluster": {"worker": ["node01:23456", "node02:23456", "gpu5:23456"]},
        "task": {"type": "worker", "index": 2},
    }
    assert not is_chief(config) and describe(config) == "worker 2 of 3"
    assert is_chief(slurm_tf_config({**SLURM, "SLURM_PROCID": "0"}, 1))


def test_the_step_node_list_wins_over_the_job_one():
    step = {**SLURM, "SLURM_STEP_NODELIST": "node02", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}
    assert slurm_tf_config(step, 7)["cluster"]["worker"] == ["node02:7"]


def test_several_tasks_per_node_or_a_bad_rank_are_refused():
    with pytest.raises(InputError, match="one task per node"):
        slurm_tf_config({**SLURM, "SLURM_NTASKS": "6"}, 1)
    with pytest.raises(InputError, match="SLURM_PROCID"):
        slurm_tf_config({**SLURM, "SLURM_PROCID": "3"}, 1)
    assert slurm_tf_config({"SLURM_PROCID": "0"}, 1) is None  # not in a SLURM job


def test_tf_config_wins_over_slurm_and_the_port_comes_from_option_variable_or_default():
    given = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    config = cluster_config({**SLURM, "TF_CONFIG": json.dumps(given)})
    assert config == given and not is_chief(config)  # with a chief task, worker 0 is not the chief
    assert cluster_config(SLURM, port=4000)["cluster"]["worker"][0] == "node01:4000"
    assert cluster_config({**SLURM, "AUTOENCODER3D_PORT": "4100"})["cluster"]["worker"][0] == "node01:4100"
    assert cluster_config(SLURM)["cluster"]["worker"][0] == "node01:12345"
    assert resolve_port(4000, {"AUTOENCODER3D_PORT": "4100"}) == 4000
    with pytest.raises(InputError, match="AUTOENCODER3D_PORT"):
        resolve_port(None, {"AUTOENCODER3D_PORT": "70000"})


@pytest.mark.parametrize("environ, message", [
    ({}, "needs TF_CONFIG or a SLURM task"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a valid cluster description"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}})}, "TF_CONFIG"),
])
def test_a_missing_or_broken_cluster_is_one_clear_error(environ, message):
    with pytest.raises(InputError, match=message):
        cluster_config(environ)


@pytest.mark.parametrize("flags, kind", [([], False), (["--distribute"], "mirrored"), (["--distribute", "mirrored"], "mirrored"),
                                         (["--distribute", "multiworker", "--port", "4000"], "multiworker")])
def test_distribute_flag_alone_keeps_meaning_mirrored(flags, kind):
    from autoencoder3d.cli.commands.train import options_from_args
    from autoencoder3d.cli.main import AUTOENCODER3D_COMMANDS, build_parser
    from autoencoder3d.runs.options import TrainOptions

    args = build_parser("autoencoder3d", AUTOENCODER3D_COMMANDS).parse_args(["train", "d.pickle", "None", "False", "3", *flags])
    options = options_from_args(args)
    assert options.distribute == kind and options.port == (4000 if "--port" in flags else None)
    assert TrainOptions(distribute=True).distribute == "mirrored" and TrainOptions(distribute=None).distribute is False


def test_multiworker_outside_a_cluster_exits_2_with_one_line_and_writes_nothing(tmp_path):
    data = tmp_path / "d.pickle"
    pickle.dump(make_subvolume_dict(n=8), open(data, "wb"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TF_CONFIG"))}
    command = [sys.executable, "-m", "autoencoder3d", "train", str(data), "None", "False", "2", "--out", str(tmp_path / "run"),
               "--distribute", "multiworker"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "needs TF_CONFIG or a SLURM task" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_two_local_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    data = tmp_path / "d.pickle"
    pickle.dump(make_subvolume_dict(n=40), open(data, "wb"))  # 36 training samples: global batches 16, 16, 4
    workers = [f"localhost:{port}" for port in free_local_ports(2)]
    run = tmp_path / "run"
    procs, scratch = [], []
    for index in range(2):
        tmp = tmp_path / f"tmp{index}"  # each worker's temporary folder, to see that it is cleaned up
        tmp.mkdir()
        scratch.append(tmp)
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(config), TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="2",
                   TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
        command = [sys.executable, "-m", "autoencoder3d", "train", str(data), "None", "False", "3", "--out", str(run),
                   "--epochs", "1", "--batch-size", "16", "--n-init", "2", "--seed", "3", "--distribute", "multiworker"]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    started = time.time()
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err[-3000:]
    assert "worker 1 of 2: trained alongside the chief" in results[1][0]
    assert "clustered 40 subvolumes into 3 clusters" in results[0][0]
    assert "crashed" not in results[0][1] and "Traceback" not in results[0][1] + results[1][1]  # the worker waited for the chief
    print(f"two workers: {time.time() - started:.1f} s")

    record = json.load(open(run / "run.json"))
    assert record["options"]["distribute"] == "multiworker" and record["seed"] == 3
    assert record["training"]["epochs_total"] == 1 and record["training"]["n_train"] == 36
    from autoencoder3d.network.train import load_saved_models

    _, encoder, _ = load_saved_models(str(run / "model"), (16, 16, 16))
    assert encoder.output_shape == (None, 32)
    # both workers reported the same synchronized loss for the one epoch (Keras prints it on standard output)
    losses = [line.split("loss: ")[1].split()[0] for out, _ in results for line in out.splitlines() if " - loss: " in line]
    assert len(losses) == 2 and losses[0] == losses[1], losses
    # the worker's checkpoints went to its own temporary folder, removed at the end; the run folder holds only the chief's
    assert [os.listdir(tmp) for tmp in scratch[1:]] == [[]]
    assert not (run / ".autoencoder3d.lock").exists()
    assert sorted(os.listdir(run)) == ["clus-center", "model", "run.json"]


def test_a_worker_resumes_from_the_chiefs_resume_point_and_writes_only_its_own_folder(tmp_path):
    """The non-chief side of a multi-worker run, in one process: read the chief's model/, write elsewhere."""
    import numpy as np

    from autoencoder3d.formats.subvolume_pickle import load_subvolumes
    from autoencoder3d.network.checkpoints import write_resume_point
    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import LAST_WEIGHTS, published_optimizer
    from autoencoder3d.runs.fingerprint import fingerprint
    from autoencoder3d.runs.options import TrainOptions
    from autoencoder3d.workflows.obtain_models import obtain_models

    data = tmp_path / "d.pickle"
    pickle.dump(make_subvolume_dict(n=20), open(data, "wb"))
    volumes = load_subvolumes(str(data)).volumes
    options = TrainOptions(epochs=1, batch_size=8, n_init=2, verbose=0, distribute="mirrored")  # resumed under a strategy
    current = fingerprint(str(data), None, False, (16, 16, 16), options)
    # the chief's resume point after its only epoch, with the seed it drew
    models = build_autoencoder((16, 16, 16), 32)
    models.trainer.compile(optimizer=published_optimizer(), loss="mse")
    models.trainer.optimizer.build(models.trainer.trainable_variables)
    model_dir = tmp_path / "run" / "model"
    model_dir.mkdir(parents=True)
    state = {"epochs_done": 1, "best": 0.5, "wait": 0, "stopped_early": False, "seed": 7, "deterministic": True, "fingerprint": current,
             "history": [{"epoch": 1, "loss": 0.6, "val_loss": 0.5, "learning_rate": 0.001}]}
    write_resume_point(models.trainer, str(model_dir / LAST_WEIGHTS), state)
    before = {name: os.path.getmtime(model_dir / name) for name in os.listdir(model_dir)}

    mine = tmp_path / "worker"
    mine.mkdir()
    (autoencoder, _, _), info = obtain_models(volumes, str(model_dir), options, {}, current, worker_dir=str(mine))
    assert info["resumed_from_epoch"] == 1 and info["epochs_run"] == 0 and options.seed == 7  # the chief's epoch and seed
    assert all(np.array_equal(a, b) for a, b in zip(autoencoder.get_weights(), models.autoencoder.get_weights()))
    assert "model-autoencoder.keras" in os.listdir(mine)
    # --retrain: the chief is clearing model/; the worker starts afresh and still leaves model/ alone
    fresh = TrainOptions(epochs=1, batch_size=8, n_init=2, verbose=0, retrain=True, seed=7)
    _, info = obtain_models(volumes, str(model_dir), fresh, {}, current, worker_dir=str(mine))
    assert info["resumed_from_epoch"] == 0 and info["epochs_run"] == 1
    assert {name: os.path.getmtime(model_dir / name) for name in os.listdir(model_dir)} == before


SIGTERM_CHILD = """
import json, os, signal, sys, time
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["localhost:%d"]}, "task": {"type": "worker", "index": 0}})
caught = []
signal.signal(signal.SIGTERM, lambda *_: caught.append(1))
from autoencoder3d.network.distribute import make_strategy
make_strategy("multiworker")
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("PYTHON HANDLER", bool(caught))
"""


def test_sigterm_still_reaches_python_under_the_multiworker_strategy():
    """TensorFlow's coordination service would swallow SIGTERM: pre-emption would never stop the run."""
    result = subprocess.run([sys.executable, "-c", SIGTERM_CHILD % free_local_ports(1)[0]], capture_output=True, text=True, timeout=120)
    assert "PYTHON HANDLER True" in result.stdout, result.stderr[-2000:]
