"""Settings decided once and read by every later command: box rule, polarity, code health, training length."""

import json
import os

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.network.codes import code_health, describe_codes
from tests.conftest import write_tomogram

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

TRAIN = ["--epochs", "1", "--batch-size", "16", "--n-init", "2", "--seed", "0", "-q"]


def run_json(run):
    with open(os.path.join(run, "run.json")) as handle:
        return json.load(handle)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def tomogram(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(48, 48, 40)).astype(np.float32)
    data[20:26, 20:26, 18:24] -= 6.0  # one dark blob to pick
    return write_tomogram(tmp_path / "t.mrc", data)


@pytest.mark.parametrize("command", ["pick", "extract", "dataset"])
def test_a_box_training_would_refuse_is_refused_before_cutting(command, tomogram, tmp_path, capsys):
    (tmp_path / "c.csv").write_text("x,y,z\n23,23,21\n")
    (tmp_path / "table.csv").write_text(f"tomogram,x,y,z\n{tomogram},23,23,21\n")
    args = {
        "pick": ["pick", tomogram, str(tmp_path / "out.pickle")],
        "extract": ["extract", tomogram, str(tmp_path / "c.csv"), str(tmp_path / "out.pickle")],
        "dataset": ["dataset", "build", str(tmp_path / "out.zarr"), "--table", str(tmp_path / "table.csv")],
    }[command]
    assert main(args + ["--box", "18"]) == 2
    assert one_error_line(capsys).endswith("--box: must be a multiple of 4 (the autoencoder pools twice by 2), got 18; try 16")
    assert not os.path.exists(tmp_path / "out.pickle") and not os.path.exists(tmp_path / "out.zarr")


def test_code_health_is_decided_once_and_read_back():
    stats = describe_codes(np.eye(6, 4), 3)
    assert stats["health"] == "nearly dead"  # 4 active units but 6 distinct codes < 2 per cluster
    assert code_health(stats, 3) == "nearly dead"
    assert code_health({**stats, "health": "alive"}, 3) == "alive"  # the recorded decision wins
    assert code_health({"active_code_units": 9, "varying_code_units": 0, "distinct_codes": 50}, 3) == "dead"


def test_cluster_keeps_the_polarity_the_run_was_trained_with(tiny_pickle, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", tiny_pickle, "None", "False", "2", "--out", run, "--polarity", "bright", *TRAIN]) == 0
    assert main(["cluster", tiny_pickle, "3", "--out", run, "-q"]) == 0
    record = run_json(run)
    assert record["options"]["polarity"] == "bright" and record["contrast"]["used"] == "bright"
    capsys.readouterr()
    assert main(["cluster", tiny_pickle, "3", "--out", run, "--polarity", "dark", "-q"]) == 2
    err = one_error_line(capsys)
    assert "the trained model was made with --polarity bright, not dark" in err
    assert run_json(run)["inputs"]["n_clusters"] == 3  # the refused command changed nothing


def test_auto_is_the_decided_polarity_before_and_after_training(tiny_pickle, tmp_path, capsys):
    """--polarity auto decides once: naming what it decided agrees with it, and auto after a decided model is that model's."""
    auto, bright = str(tmp_path / "auto"), str(tmp_path / "bright")
    assert main(["train", tiny_pickle, "None", "False", "2", "--out", auto, "--polarity", "auto", *TRAIN]) == 0
    assert run_json(auto)["contrast"]["used"] == "dark"  # the tiny pickle's blocks are dark
    assert main(["cluster", tiny_pickle, "3", "--out", auto, "--polarity", "dark", "-q"]) == 0
    assert run_json(auto)["contrast"]["used"] == "dark"
    capsys.readouterr()
    assert main(["cluster", tiny_pickle, "3", "--out", auto, "--polarity", "bright", "-q"]) == 2
    assert "made with --polarity auto, which decided dark, not bright" in one_error_line(capsys)

    assert main(["train", tiny_pickle, "None", "False", "2", "--out", bright, "--polarity", "bright", *TRAIN]) == 0
    assert main(["cluster", tiny_pickle, "3", "--out", bright, "--polarity", "auto", "-q"]) == 0
    assert run_json(bright)["contrast"]["used"] == "bright" and run_json(bright)["options"]["polarity"] == "bright"


def test_a_pickle_pose_normalized_bright_trains_bright(tiny_pickle, tomogram, tmp_path, capsys):
    """pose --polarity bright records it in the pickle; train reads it, and refuses another in one line."""
    from autoencoder3d.formats.subvolume_pickle import load_subvolumes

    posed = str(tmp_path / "posed.pickle")
    assert main(["pose", tiny_pickle, tomogram, posed, "--polarity", "bright", "-q"]) == 0
    run = str(tmp_path / "run")
    capsys.readouterr()
    assert main(["train", posed, "None", "False", "2", "--out", run, "--polarity", "dark", *TRAIN]) == 2
    assert "posed.pickle: its subvolumes were made with --polarity bright, not dark" in one_error_line(capsys)
    assert main(["train", posed, "None", "False", "2", "--out", run, *TRAIN]) == 0
    record = run_json(run)
    assert record["options"]["polarity"] == "bright" and record["contrast"]["used"] == "bright"
    assert main(["cluster", posed, "3", "--out", run, "-q"]) == 0 and run_json(run)["contrast"]["used"] == "bright"
    assert load_subvolumes(posed).prepared == {"polarity": "bright"}


def test_train_again_with_another_k_reuses_the_model_whatever_the_epochs(tiny_pickle, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", tiny_pickle, "None", "False", "2", "--out", run, *TRAIN]) == 0
    weights = os.path.getmtime(os.path.join(run, "model", "model-autoencoder.keras"))
    args = [a for a in TRAIN if a != "-q"]
    args[args.index("--epochs") + 1] = "100"
    assert main(["train", tiny_pickle, "None", "False", "3", "--out", run, *args, "--patience", "5"]) == 0
    err = capsys.readouterr().err
    assert "the trained model was made with --epochs 1, --patience 20; --epochs 100, --patience 5 changes only how long it trains" in err
    record = run_json(run)
    assert record["training"]["reused_saved_models"] and record["options"]["epochs"] == 1
    assert record["inputs"]["n_clusters"] == 3
    assert os.path.getmtime(os.path.join(run, "model", "model-autoencoder.keras")) == weights
    # anything else that makes the model is still refused
    assert main(["train", tiny_pickle, "None", "False", "3", "--out", run, *TRAIN, "--l1", "0"]) == 2
    assert "--l1 0.0 (was 0.0001)" in one_error_line(capsys)


def test_a_store_built_bright_trains_bright(tmp_path, capsys):
    from autoencoder3d.data.sources.jobs import jobs_from_table
    from autoencoder3d.data.store.build import BuildOptions, build_dataset

    rng = np.random.default_rng(1)
    data = rng.normal(size=(48, 48, 48)).astype(np.float32)
    tomogram = write_tomogram(tmp_path / "t.mrc", data)
    rows = [f"{tomogram},{x},{y},{z}" for x, y, z in rng.integers(10, 38, size=(24, 3))]
    (tmp_path / "table.csv").write_text("tomogram,x,y,z\n" + "\n".join(rows) + "\n")
    store = str(tmp_path / "ds.zarr")
    build_dataset(store, jobs_from_table(str(tmp_path / "table.csv")), BuildOptions(box=16, polarity="bright"))
    run = str(tmp_path / "run")
    assert main(["train", store, "None", "False", "2", "--out", run, *TRAIN]) == 0
    record = run_json(run)
    assert record["options"]["polarity"] == "bright" and record["contrast"]["used"] == "bright"
    capsys.readouterr()
    assert main(["train", store, "None", "False", "2", "--out", str(tmp_path / "run2"), *TRAIN, "--polarity", "dark"]) == 2
    assert "the data set was made with --polarity bright, not dark" in one_error_line(capsys)
    assert not os.path.exists(tmp_path / "run2" / "run.json")
