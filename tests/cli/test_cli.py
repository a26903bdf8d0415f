"""The commands end to end on tiny data, and every bad input the issue lists."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from autoencoder3d.cli.common import boolean
from autoencoder3d.cli.main import main
from tests.conftest import make_subvolume_dict, write_tomogram

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

FAST = ["--epochs", "1", "--n-init", "3", "--seed", "3", "-q"]


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.mark.parametrize("word,value", [("True", True), ("yes", True), ("1", True), ("FALSE", False), ("no", False), ("0", False)])
def test_pose_flag_words(word, value):
    assert boolean(word) is value


def test_full_tiny_run_writes_every_published_output(tiny_pickle, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", tiny_pickle, "None", "False", 3, "--out", out, *FAST) == 0
    kmeans = pickle.load(open(out / "clus-center" / "kmeans.pickle", "rb"))
    assert sorted(kmeans) == [0, 1, 2] and all(type(k) is int for k in kmeans)
    assert sorted(u for members in kmeans.values() for u in members) == sorted(make_subvolume_dict()["vs"])
    ccents = pickle.load(open(out / "clus-center" / "ccents.pickle", "rb"))
    assert sorted(ccents) == [0, 1, 2] and ccents[0].shape == (16, 16, 16)
    assert pickle.load(open(out / "clus-center" / "ccents_d.pickle", "rb")).shape == (3, 32)
    figs = sorted(os.listdir(out / "clus-center" / "fig"))
    assert figs == sorted(f"{k:03d}--{len(v)}.png" for k, v in kmeans.items())
    assert sorted(os.listdir(out / "clus-center" / "mrc")) == ["000.mrc", "001.mrc", "002.mrc"]
    for name in ("model-autoencoder.keras", "model-encoder.keras", "model-decoder.keras", "history.csv", "loss.png"):
        assert (out / "model" / name).is_file(), name
    record = json.load(open(out / "run.json"))
    assert record["seed"] == 3 and record["n_subvolumes"] == 48 and record["inputs"]["pose"] is False
    assert record["options"]["n_init"] == 3 and "tensorflow" in record["versions"]
    assert set(record["timings"]) >= {"load_s", "train_s", "encode_s", "kmeans_s", "figures_s", "total_s"}


def test_same_seed_same_clusters_and_rerun_reuses_the_model(tiny_pickle, tmp_path, capsys):
    for name in ("a", "b"):
        assert run_cli("train", tiny_pickle, "None", "False", 3, "--out", tmp_path / name, *FAST) == 0
    first = open(tmp_path / "a" / "clus-center" / "kmeans.pickle", "rb").read()
    assert first == open(tmp_path / "b" / "clus-center" / "kmeans.pickle", "rb").read()
    # rerun with another k: the published way redoes only the clustering
    model_file = tmp_path / "a" / "model" / "model-encoder.keras"
    stamp = model_file.stat().st_mtime_ns
    capsys.readouterr()
    assert run_cli("train", tiny_pickle, "None", "False", 4, "--out", tmp_path / "a", "--n-init", "2", "--seed", "3", "--epochs", "1") == 0
    assert "reusing the trained models" in capsys.readouterr().err
    assert model_file.stat().st_mtime_ns == stamp
    assert len(pickle.load(open(tmp_path / "a" / "clus-center" / "kmeans.pickle", "rb"))) == 4
    training = json.load(open(tmp_path / "a" / "run.json"))["training"]
    assert training["reused_saved_models"] is True and training["epochs_total"] == 1  # the details are kept
    assert run_cli("cluster", tiny_pickle, 2, "--out", tmp_path / "a", "--n-init", "2", "-q") == 0
    assert len(os.listdir(tmp_path / "a" / "clus-center" / "fig")) == 2


def test_pose_command_and_train_with_pose_give_the_same_subvolumes(tmp_path):
    rng = np.random.default_rng(0)
    tomo = rng.normal(size=(64, 64, 48)).astype(np.float32)
    tomo[20:30, 28:34, 20:26] -= 3
    tomo[40:46, 36:48, 20:26] -= 3
    tomogram = write_tomogram(tmp_path / "tomo.rec", tomo, voxel_size=12.5)
    d = make_subvolume_dict(n=12, center=(24, 30, 22))
    for i, rec in enumerate(d["vs"].values()):
        rec["center"] = [24 + i % 3, 30 + i % 4, 22]
    data = tmp_path / "d.pickle"
    pickle.dump(d, open(data, "wb"))
    assert run_cli("pose", data, tomogram, tmp_path / "posed.pickle", "-q") == 0
    assert run_cli("train", data, tomogram, "True", 2, "--out", tmp_path / "run", *FAST) == 0
    posed = pickle.load(open(tmp_path / "posed.pickle", "rb"))
    in_run = pickle.load(open(tmp_path / "run" / "pose-normalized.pickle", "rb"))
    assert list(posed["vs"]) == list(d["vs"])
    for uuid, rec in posed["vs"].items():
        np.testing.assert_array_equal(rec["v"], in_run["vs"][uuid]["v"])
        assert rec["center"] == d["vs"][uuid]["center"] and rec["rotation"].shape == (3, 3)
    assert json.load(open(tmp_path / "run" / "run.json"))["voxel_size"] == [12.5, 12.5, 12.5]


def bad_inputs(tmp_path, tiny_pickle):
    odd = make_subvolume_dict(n=6, edge=3)  # below the smallest box: refused (other edges are cropped)
    pickle.dump(odd, open(tmp_path / "odd.pickle", "wb"))
    image2d = tmp_path / "micrograph.mrc"
    import mrcfile

    with mrcfile.new(str(image2d)) as mrc:
        mrc.set_data(np.zeros((32, 32), np.float32))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go")
    far = make_subvolume_dict(n=4, center=(900, 900, 900))
    pickle.dump(far, open(tmp_path / "far.pickle", "wb"))
    tomogram = write_tomogram(tmp_path / "small.mrc", np.zeros((40, 40, 40)))
    return [
        (["train", tmp_path / "missing.pickle", "None", "False", 3], "missing.pickle: cannot read file"),
        (["train", tmp_path / "odd.pickle", "None", "False", 3], "every edge must be divisible by 4"),
        (["train", tiny_pickle, "None", "False", 49], "48 usable subvolumes, fewer than the 49 clusters"),
        (["train", tiny_pickle, "None", "True", 3], "pose normalization needs a tomogram, but TOMOGRAM is None"),
        (["train", tiny_pickle, image2d, "True", 3], "micrograph.mrc: is a 2D image"),
        (["train", tiny_pickle, "None", "False", 3, "--out", blocker / "run"], "output folder cannot be written"),
        (["train", tmp_path / "far.pickle", tomogram, "True", 2], "no subvolume centre lies inside the tomogram"),
        (["cluster", tiny_pickle, 3, "--out", tmp_path / "empty"], "no trained autoencoder here; run 'autoencoder3d train' first"),
    ]


def test_bad_inputs_give_one_line_and_status_2(tmp_path, tiny_pickle, capsys):
    for args, message in bad_inputs(tmp_path, tiny_pickle):
        assert run_cli(*args, "-q") == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err, (args, err)
        assert err.startswith("autoencoder3d: error: ") and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["True", "abc"], "expected a positive integer, got 'abc'"),
    (["True", "0"], "expected a positive integer, got '0'"),
    (["maybe", "3"], "expected True or False"),
    (["__import__('os')", "3"], "expected True or False"),
])
def test_bad_arguments_are_refused_by_the_parser(tiny_pickle, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("train", tiny_pickle, "None", *args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_console_script_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autoencoder3d", "train", str(tmp_path / "none.pickle"), "None", "False", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("autoencoder3d: error: ")
    assert "Traceback" not in result.stderr


def test_l1_option_reaches_the_model(tiny_pickle, tmp_path):
    assert run_cli("train", tiny_pickle, "None", "False", 2, "--out", tmp_path / "r", "--l1", "0", *FAST) == 0
    record = json.load(open(tmp_path / "r" / "run.json"))
    assert record["options"]["l1"] == 0.0 and set(record["codes"]) == {"active_code_units", "varying_code_units", "distinct_codes", "zero_fraction", "health"}
    from autoencoder3d.network.train import load_saved_models

    encoder = load_saved_models(str(tmp_path / "r" / "model"))[1]
    assert encoder.get_layer("core_encoder").get_layer("code_l1").factor == 0.0
