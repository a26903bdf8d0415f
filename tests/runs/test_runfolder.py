"""A run folder knows what it holds: reuse and resume only with the same inputs, checked
checkpoints, whole outputs, one writer, no leftovers, clear errors for full disks and NaN losses."""

import fcntl
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.runs.folder import remove_leftovers
from autoencoder3d.util.lock import LOCK_NAME
from tests.conftest import make_subvolume_dict, write_tomogram

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

TRAIN = ["--epochs", "1", "--batch-size", "16", "--n-init", "2", "--seed", "3", "-q"]


def run_cli(*args):
    return main([str(a) for a in args])


def write_pickle(path, **kwargs):
    with open(path, "wb") as handle:
        pickle.dump(make_subvolume_dict(**kwargs), handle, protocol=4)
    return str(path)


def error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(data, run folder) of one finished 1-epoch training with k=3; tests work on copies."""
    folder = tmp_path_factory.mktemp("finished")
    data = write_pickle(folder / "data.pickle", n=32)
    assert run_cli("train", data, "None", "False", 3, "--out", folder / "run", *TRAIN) == 0
    return data, folder / "run"


@pytest.fixture
def run_copy(finished, tmp_path):
    data, run = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    local = shutil.copy(data, tmp_path / "data.pickle")
    return local, copy


def test_replaced_data_or_other_options_are_refused_with_retrain(run_copy, capsys):
    data, run = run_copy
    before = (run / "run.json").read_bytes()
    write_pickle(data, n=32, seed=1)  # same path, other data
    assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN) == 2
    err = error_line(capsys)
    assert "DATA holds other data" in err and "--retrain" in err
    assert run_cli("cluster", data, 2, "--out", run, "-q") == 2
    assert "DATA holds other data" in error_line(capsys)
    write_pickle(data, n=32)
    assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN, "--encoding-dim", "8", "--l1", "0") == 2
    err = error_line(capsys)
    assert "--encoding-dim 8 (was 32)" in err and "--l1 0.0 (was 0.0001)" in err and "--retrain" in err
    assert (run / "run.json").read_bytes() == before


@pytest.mark.parametrize("name,damage", [
    ("model-autoencoder.keras", "truncate"),
    ("model-encoder.keras", "garble"),
    ("train-state.json", "truncate"),
])
def test_damaged_model_files_give_one_line_naming_retrain(run_copy, capsys, name, damage):
    data, run = run_copy
    path = run / "model" / name
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else np.random.default_rng(0).bytes(4096))
    assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN) == 2
    err = error_line(capsys)
    assert name in err and "--retrain" in err


def test_rerun_replaces_the_clustering_whole_and_cleans_up(run_copy, capsys):
    data, run = run_copy
    (run / "clus-center" / "evaluation").mkdir()
    (run / "clus-center" / "evaluation" / "evaluation.json").write_text("{}")
    leftovers = [run / ".run.json.ab12cd34.tmp.json", run / "model" / ".checkpoint-last.weights.h5.x_y1z2w3.tmp.weights.h5"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    (run / LOCK_NAME).write_text("pid 999999 on a-dead-node\n")  # a stale lock: its process is gone
    assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN) == 0
    assert sorted(os.listdir(run / "clus-center" / "mrc")) == ["000.mrc", "001.mrc"]
    assert len(os.listdir(run / "clus-center" / "fig")) == 2
    assert not (run / "clus-center" / "evaluation").exists()
    assert not any(path.exists() for path in leftovers) and not (run / LOCK_NAME).exists()
    record = json.loads((run / "run.json").read_text())
    assert record["training"]["reused_saved_models"] and record["training"]["epochs_total"] == 1
    assert record["fingerprint"]["inputs"]["box"] == [16, 16, 16]


def test_a_second_writer_is_refused(run_copy, capsys):
    data, run = run_copy
    with open(run / LOCK_NAME, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("pid 4242 on here\n")
        handle.flush()
        assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN) == 2
    err = error_line(capsys)
    assert "another autoencoder3d process (pid 4242 on here) is writing this run folder" in err


def test_a_folder_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    (tmp_path / ".clus-center.abcd1234.old").mkdir()
    (tmp_path / ".clus-center.abcd1234.old" / "kmeans.pickle").write_bytes(b"old")
    (tmp_path / ".clus-center.efgh5678.tmp").mkdir()
    removed = remove_leftovers(str(tmp_path))
    assert (tmp_path / "clus-center" / "kmeans.pickle").read_bytes() == b"old"
    assert removed == [str(tmp_path / ".clus-center.efgh5678.tmp")]


def test_failed_train_leaves_no_output_folder(tmp_path, capsys):
    data = write_pickle(tmp_path / "odd.pickle", n=6, edge=3)  # below the smallest box: refused (other edges are cropped)
    assert run_cli("train", data, "None", "False", 2, "--out", tmp_path / "new", "-q") == 2
    assert not (tmp_path / "new").exists()


def test_swapped_data_and_tomogram_are_named(tmp_path, capsys):
    data = write_pickle(tmp_path / "data.pickle", n=6)
    tomogram = write_tomogram(tmp_path / "tomo.rec", np.zeros((32, 32, 32)))
    assert run_cli("train", tomogram, data, "True", 2, "--out", tmp_path / "run", "-q") == 2
    assert "DATA and TOMOGRAM look swapped" in error_line(capsys)


def test_a_non_finite_loss_stops_training_without_a_success_record(tmp_path, capsys):
    d = make_subvolume_dict(n=32)
    for rec in d["vs"].values():
        rec["v"] = rec["v"] * np.float32(1e30)
    data = tmp_path / "huge.pickle"
    pickle.dump(d, open(data, "wb"))
    # the default standardizes the input, so 1e30 trains as well as 1; the literal published setting diverges
    assert run_cli("train", data, "None", "False", 2, "--out", tmp_path / "run", *TRAIN, "--published") == 2
    err = error_line(capsys)
    assert "training diverged" in err and "epoch 1" in err
    assert not (tmp_path / "run" / "run.json").exists()
    assert not (tmp_path / "run" / "model" / "model-autoencoder.keras").exists()


def test_an_interrupted_training_resumes_only_as_it_began(tmp_path, monkeypatch, capsys):
    from autoencoder3d.network import train as training

    data = write_pickle(tmp_path / "data.pickle", n=32)
    run = tmp_path / "run"
    args = ["train", data, "None", "False", 2, "--out", run, "--epochs", "2", "--batch-size", "16", "--n-init", "2", "-q"]
    original = training.ResumableCheckpoint.on_epoch_end

    def killed_after_one(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.ResumableCheckpoint, "on_epoch_end", killed_after_one)
    assert run_cli(*args) == 130  # no --seed: one is drawn and recorded in the resume point
    monkeypatch.setattr(training.ResumableCheckpoint, "on_epoch_end", original)
    capsys.readouterr()
    seed = training.resume_state(str(run / "model"))["seed"]
    assert run_cli(*args, "--seed", seed + 1) == 2
    assert f"used --seed {seed}, not {seed + 1}" in error_line(capsys)
    assert run_cli(*args, "--patience", "3") == 2
    assert "--patience 3 (was 20)" in error_line(capsys)
    garbled = tmp_path / "garbled"
    shutil.copytree(run, garbled)
    (garbled / "model" / training.LAST_WEIGHTS).write_bytes(np.random.default_rng(0).bytes(4096))
    assert run_cli(*args[:6], garbled, *args[7:]) == 2
    err = error_line(capsys)
    assert "checkpoint-last.weights.h5: not a readable resume point" in err and "--retrain" in err
    assert run_cli(*args) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == seed and record["training"]["resumed_from_epoch"] == 1


def _mount_tmpfs(path, size):
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


def test_a_full_disk_gives_one_line_and_keeps_existing_files(run_copy, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "3m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        data, run = run_copy
        shutil.copytree(run / "clus-center", disk / "run" / "clus-center")
        shutil.copy(run / "run.json", disk / "run" / "run.json")
        before = {p: open(os.path.join(r, p), "rb").read() for r, _, names in os.walk(disk) for p in names}
        command = [sys.executable, "-m", "autoencoder3d", "train", data, "None", "False", "2", "--out", str(disk / "run"), *TRAIN]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        lines = [line for line in result.stderr.splitlines() if line.startswith("autoencoder3d")]
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and "no space left on device" in lines[0] and "Traceback" not in result.stderr, result.stderr
        after = {p: open(os.path.join(r, p), "rb").read() for r, _, names in os.walk(disk) for p in names}
        assert {p: after.get(p) for p in before} == before
    finally:
        subprocess.run(["umount", str(disk)], check=False)
