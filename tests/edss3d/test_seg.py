"""EDSS3D (published section 8): selection, labels, background, weights, network, train/predict, bad input."""

import json
import logging
import os
import pickle

import h5py
import numpy as np
import pytest

from autoencoder3d.edss3d import (
    VoxelWeights,
    build_targets,
    check_selection,
    class_weights,
    keep_max,
    label_subvolumes,
    load_selection,
    one_hot,
    parse_select,
    sample_background,
)
from autoencoder3d.errors import InputError
from autoencoder3d.network.checkpoints import STATE_ATTRIBUTE
from tests.conftest import identity_run, make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

MEMBERS = {0: ["a", "b"], 1: ["c"], 2: ["d", "e"], 3: ["f"]}


# ---------------------------------------------------------------- selection

def test_parse_select_and_file_agree(tmp_path):
    selection = parse_select(["1=3,21,28", "2=15, 25"])
    assert selection == {1: [3, 21, 28], 2: [15, 25]}
    path = tmp_path / "sel.json"
    path.write_text(json.dumps({"1": [3, 21, 28], "2": [15, 25]}))
    assert load_selection(str(path)) == selection


@pytest.mark.parametrize(
    "items, words",
    [
        (["0=1"], "labels start at 1"),
        (["-1=1"], "labels start at 1"),
        (["x=1"], "not an integer"),
        (["1=a"], "not an integer"),
        (["1="], "no clusters"),
        (["13"], "LABEL=CLUSTER"),
        (["1=2", "1=3"], "given twice"),
    ],
)
def test_parse_select_rejects(items, words):
    with pytest.raises(InputError, match=words):
        parse_select(items)


def test_load_selection_rejects(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{1: [2]")
    with pytest.raises(InputError, match="bad.json: not valid JSON"):
        load_selection(str(bad))
    zero = tmp_path / "zero.json"
    zero.write_text('{"0": [2]}')
    with pytest.raises(InputError, match="labels start at 1"):
        load_selection(str(zero))
    with pytest.raises(InputError, match="cannot read"):
        load_selection(str(tmp_path / "missing.json"))


def test_check_selection():
    check_selection({1: [0, 2], 2: [3]}, MEMBERS)
    with pytest.raises(InputError, match="cluster 7 .* does not exist.*0..3"):
        check_selection({1: [7]}, MEMBERS)
    with pytest.raises(InputError, match="cluster 2 is under two labels"):
        check_selection({1: [2], 2: [2]}, MEMBERS)
    with pytest.raises(InputError, match="no clusters selected"):
        check_selection({}, MEMBERS)


def test_label_subvolumes():
    assert label_subvolumes({1: [0, 2], 2: [3]}, MEMBERS) == {"a": 1, "b": 1, "d": 1, "e": 1, "f": 2}


# ---------------------------------------------------------------- background

def test_background_sampling_counts():
    uuids = [f"u{i}" for i in range(30)]
    labels = {u: 1 for u in uuids[:8]}
    drawn = sample_background(uuids, labels, np.random.default_rng(0))
    assert len(drawn) == 8 and len(set(drawn)) == 8
    assert not set(drawn) & set(labels)
    assert drawn == [u for u in uuids if u in drawn]  # data order
    assert drawn == sample_background(uuids, labels, np.random.default_rng(0))


def test_background_fewer_than_labelled_uses_all_and_warns(caplog):
    uuids = [f"u{i}" for i in range(10)]
    labels = {u: 2 for u in uuids[:7]}
    with caplog.at_level(logging.WARNING):
        drawn = sample_background(uuids, labels, np.random.default_rng(0))
    assert drawn == uuids[7:]
    assert "only 3 unlabelled subvolumes for 7 labelled" in caplog.text


# ---------------------------------------------------------------- targets and weights

def test_targets_sign_iso_and_background_channel():
    decoded = np.array([-2.0, -0.5, -0.51, 0.0, 0.7, 3.0], dtype=np.float32).reshape(1, 2, 3)
    maps = build_targets(decoded, 2, iso=0.5)
    # dense matter is negative: only -decoded > 0.5 is labelled; exactly 0.5 is not
    assert maps.ravel().tolist() == [2, 0, 2, 0, 0, 0]
    assert maps.dtype == np.uint8
    assert build_targets(decoded, 2, iso=-1.0).ravel().tolist() == [2, 2, 2, 2, 2, 0]
    hot = one_hot(maps, 3)
    assert hot.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(hot[..., 2], (-decoded > 0.5))  # channel l = mask
    np.testing.assert_array_equal(hot[..., 0], ~(-decoded > 0.5))  # channel 0 = 1 outside the mask
    assert not hot[..., 1].any()
    background = build_targets(decoded, 0)
    np.testing.assert_array_equal(one_hot(background, 3)[..., 0], 1)  # background patch: channel 0 everywhere


def test_targets_are_in_standard_deviations_of_the_data_and_follow_the_polarity():
    decoded = np.array([-2.0, -0.5, -0.51, 0.0, 0.7, 3.0], dtype=np.float32).reshape(1, 2, 3)
    published = build_targets(decoded, 2, iso=0.5)
    # the same data stored x100 with an offset: the same labels
    np.testing.assert_array_equal(build_targets(decoded * 100 + 7, 2, iso=0.5, mean=7.0, std=100.0), published)
    # (mean - decoded) / std > iso by hand: mean 0.2, std 2 -> decoded < 0.2 - 2 * 0.5 = -0.8
    assert build_targets(decoded, 1, iso=0.5, mean=0.2, std=2.0).ravel().tolist() == [1, 0, 0, 0, 0, 0]
    # bright contrast: the negated data give the same labels
    np.testing.assert_array_equal(build_targets(-decoded, 2, iso=0.5, polarity="bright"), published)


def test_class_weights_are_the_published_formula():
    rng = np.random.default_rng(3)
    maps = rng.choice(3, size=(5, 4, 4, 4), p=[0.7, 0.2, 0.1]).astype(np.uint8)
    lbl = one_hot(maps, 3).reshape(5, -1, 3)  # the published target array (patches, voxels, classes)
    published = [lbl.size / lbl[:, :, c].sum() for c in range(3)]
    np.testing.assert_allclose(class_weights(maps, 3), published)
    per_voxel = VoxelWeights(maps.reshape(5, -1), class_weights(maps, 3))[np.array([1, 3])]
    np.testing.assert_allclose(per_voxel, np.asarray(published)[maps.reshape(5, -1)[[1, 3]]], rtol=1e-6)


def test_class_weights_absent_class_is_zero(caplog):
    with caplog.at_level(logging.WARNING):
        weights = class_weights(np.zeros((2, 4, 4, 4), np.uint8), 2)
    assert weights.tolist() == [2.0, 0.0] and "class 1 has no voxel" in caplog.text


def test_keep_max_layout():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.2, 0.7]], dtype=np.float32)
    kept = keep_max(probs.reshape(1, 1, 3, 3))
    np.testing.assert_array_equal(kept.reshape(3, 3), np.float32([[0, 0.5, 0], [0.6, 0, 0], [0, 0, 0.7]]))
    assert kept.dtype == np.float32


# ---------------------------------------------------------------- network

def test_network_shape_softmax_and_loss_equivalence():
    import keras

    from autoencoder3d.edss3d import build_segmenter, segmenter_box, segmenter_classes

    model = build_segmenter((16, 16, 16), 3)
    assert model.output_shape == (None, 16**3, 3)
    assert segmenter_box(model) == (16, 16, 16) and segmenter_classes(model) == 3
    names = [layer.__class__.__name__ for layer in model.layers]
    assert names.count("Conv3D") == 6 and names.count("MaxPooling3D") == 2 and names.count("UpSampling3D") == 2
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16, 1)).astype(np.float32)
    p = np.asarray(model(x))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    # sparse cross-entropy on class indices == the published categorical cross-entropy on one-hot targets
    maps = np.random.default_rng(1).integers(0, 3, size=(2, 16**3))
    sparse = float(keras.losses.SparseCategoricalCrossentropy()(maps, p))
    dense = float(keras.losses.CategoricalCrossentropy()(one_hot(maps, 3), p))
    assert sparse == pytest.approx(dense, rel=1e-5)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished-looking 'autoencoder3d train' run on 16^3 data.

    Its "autoencoder" is the identity, so the decoded volumes are the inputs and
    the labels are exactly the planted dark blocks (-2, below -0.5).
    """
    data, run, d = identity_run(tmp_path_factory.mktemp("edss3d"), n=40, classes=4, seed=2)
    return str(data), str(run), d


def test_train_predict_end_to_end(run_folder, caplog):
    from autoencoder3d.edss3d import run_seg_predict, run_seg_train
    from autoencoder3d.formats.subvolume_pickle import load_pickle

    data, run, d = run_folder
    with caplog.at_level(logging.INFO):
        record = run_seg_train(data, run, {1: [0], 2: [1, 3]}, epochs=2, batch_size=8, seed=4, verbose=0, class_balanced=True)
    # 10 + 20 labelled, 10 unlabelled left: all used as background, with a warning
    assert record["n_labelled"] == 30 and record["n_background"] == 10
    assert "only 10 unlabelled subvolumes for 30 labelled" in caplog.text
    assert record["training"]["epochs_total"] == 2 and np.isfinite(record["training"]["final_train_loss"])
    assert record["n_class"] == 3 and all(c > 0 for c in record["voxels_per_class"])
    for name in ("model-seg.keras", "model-seg--weights--best.weights.h5", "history.csv", "seg.json"):
        assert os.path.isfile(os.path.join(run, "model-seg", name))
    decoded = load_pickle(os.path.join(run, "decoded", "decoded.pickle"))
    first = next(iter(d["vs"]))
    np.testing.assert_allclose(decoded[first], d["vs"][first]["v"], atol=1e-6)
    # the targets of a label-1 patch are the planted block
    patches = record["patches"]
    assert {patches[u] for u in list(d["vs"])[0::4]} == {1} and {patches[u] for u in list(d["vs"])[2::4]} == {0}

    result = run_seg_predict(data, None, run, batch_size=16)
    vs_p = load_pickle(result["vs_p"])
    labels = load_pickle(result["labels"])
    assert list(vs_p) == list(d["vs"]) and vs_p[first].shape == (16, 16, 16, 3)
    assert ((vs_p[first] > 0).sum(-1) == 1).all()  # one class kept per voxel
    np.testing.assert_array_equal(np.argmax(vs_p[first], -1), labels[first])
    assert labels[first].dtype == np.uint8

    # skip-if-trained, refusal of another selection, then --retrain
    with caplog.at_level(logging.INFO):
        again = run_seg_train(data, run, {1: [0], 2: [1, 3]}, epochs=2, batch_size=8, seed=4, verbose=0, class_balanced=True)
    assert again["reused_saved_model"] and "reusing the trained EDSS3D model" in caplog.text
    with pytest.raises(InputError, match="pass --retrain"):
        run_seg_train(data, run, {1: [2]}, epochs=1, seed=4, verbose=0)
    redone = run_seg_train(data, run, {1: [2]}, epochs=1, batch_size=8, seed=4, verbose=0, retrain=True)
    assert redone["n_class"] == 2 and redone["training"]["epochs_total"] == 1

    # an interrupted run (no final model yet) resumes with its recorded seed, and refuses another selection
    seg = os.path.join(run, "model-seg")
    os.remove(os.path.join(seg, "model-seg.keras"))
    last = os.path.join(seg, "checkpoint-last.weights.h5")
    with open(os.path.join(seg, "model-seg--weights--best.weights.h5"), "rb") as src, open(last, "wb") as dst:
        dst.write(src.read())
    history = [{"epoch": 1, "loss": 1.0, "val_loss": 1.0, "learning_rate": 0.001}]
    with h5py.File(last, "a") as handle:  # the resume point carries its training state
        handle.attrs[STATE_ATTRIBUTE] = json.dumps({"epochs_done": 1, "best": 1.0, "wait": 0, "stopped_early": False, "history": history})
    with open(os.path.join(seg, "seg.json"), "w") as handle:
        json.dump({"selection": {"1": [2]}, "iso": "auto", "class_balanced": False, "seed": 4, "finished": False}, handle)
    with pytest.raises(InputError, match="pass --retrain"):
        run_seg_train(data, run, {1: [0]}, epochs=2, verbose=0)
    resumed = run_seg_train(data, run, {1: [2]}, epochs=2, batch_size=8, verbose=0)
    assert resumed["seed"] == 4 and resumed["training"]["resumed_from_epoch"] == 1 and resumed["training"]["epochs_total"] == 2
    assert resumed["patches"] == redone["patches"]


def test_resume_after_interruption(run_folder, tmp_path, monkeypatch):
    """A run stopped after epoch 1 continues at epoch 2 and ends with the history of both."""
    from autoencoder3d.edss3d import train_segmenter
    from autoencoder3d.network import train as ae_train

    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(12, 16, 16, 16)).astype(np.float32)
    maps = (volumes < -1).astype(np.uint8)
    first = tmp_path / "a"
    original = ae_train.ResumableCheckpoint.on_epoch_end

    def killed_after_one(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ae_train.ResumableCheckpoint, "on_epoch_end", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(volumes, maps, 2, str(first), epochs=2, batch_size=4, seed=1, verbose=0)
    monkeypatch.setattr(ae_train.ResumableCheckpoint, "on_epoch_end", original)
    assert ae_train.resume_state(str(first))["epochs_done"] == 1 and not (first / "model-seg.keras").exists()
    _, info = train_segmenter(volumes, maps, 2, str(first), epochs=2, batch_size=4, seed=1, verbose=0)
    assert info["resumed_from_epoch"] == 1 and info["epochs_total"] == 2 and info["epochs_run"] == 1


def test_bad_inputs(run_folder, tmp_path):
    from autoencoder3d.edss3d import run_seg_predict, run_seg_train
    from autoencoder3d.formats.subvolume_pickle import save_pickle

    data, run, d = run_folder
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no trained autoencoder.*run 'autoencoder3d train' first"):
        run_seg_train(data, str(empty), {1: [0]})
    os.makedirs(empty / "model")
    shutil_src = os.path.join(run, "model", "model-autoencoder.keras")
    with open(shutil_src, "rb") as src, open(empty / "model" / "model-autoencoder.keras", "wb") as dst:
        dst.write(src.read())
    with pytest.raises(InputError, match="no clus-center/kmeans.pickle.*autoencoder3d train"):
        run_seg_train(data, str(empty), {1: [0]})
    save_pickle(empty / "clus-center" / "kmeans.pickle", {0: ["nobody"], 1: ["none"]})
    with pytest.raises(InputError, match="cluster 5 .*does not exist"):
        run_seg_train(data, str(empty), {1: [5]})
    with pytest.raises(InputError, match="under two labels"):
        run_seg_train(data, str(empty), {1: [0], 2: [0]})
    with pytest.raises(InputError, match="none of the subvolumes of the selected clusters"):
        run_seg_train(data, str(empty), {1: [0]}, seed=0)
    save_pickle(empty / "clus-center" / "kmeans.pickle", {0: list(d["vs"])})
    big = tmp_path / "big.pickle"
    with open(big, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=4, edge=32), handle, protocol=4)
    with pytest.raises(InputError, match="subvolumes are 32x32x32 but the autoencoder"):
        run_seg_train(str(big), str(empty), {1: [0]}, seed=0)
    from autoencoder3d.edss3d import build_segmenter

    small_model = str(tmp_path / "small.keras")
    build_segmenter((16, 16, 16), 2).save(small_model)
    with pytest.raises(InputError, match="takes 16x16x16 subvolumes but .*big.pickle has 32x32x32"):
        run_seg_predict(str(big), small_model, str(tmp_path))
    with pytest.raises(InputError, match="no trained EDSS3D model here; run 'edss3d train' first"):
        run_seg_predict(data, None, str(tmp_path))


def test_command_line_errors(run_folder, tmp_path, capsys):
    from autoencoder3d.cli.main import EDSS3D_COMMANDS, main, run

    data, run_dir, _ = run_folder
    assert run("edss3d", EDSS3D_COMMANDS, ["train", data, "--out", run_dir, "--select", "0=1"]) == 2
    assert "edss3d: error: --select '0=1': label 0 is not allowed" in capsys.readouterr().err
    assert run("edss3d", EDSS3D_COMMANDS, ["train", data, "--out", run_dir]) == 2
    assert "no clusters selected" in capsys.readouterr().err
    sel = tmp_path / "s.json"
    sel.write_text('{"1": [0]}')
    assert main(["edss3d", "train", data, "--out", run_dir, "--select", "1=0", "--selection", str(sel)]) == 2
    assert "either --select or --selection" in capsys.readouterr().err
    assert run("edss3d", EDSS3D_COMMANDS, ["predict", data, "--out", str(tmp_path)]) == 2
    assert "run 'edss3d train' first" in capsys.readouterr().err


def test_a_label_without_voxels_is_refused_with_a_suggested_iso():
    from autoencoder3d.edss3d.labels import check_labelled_voxels

    decoded = {0: np.full((4, 4, 4), -0.2, np.float32), 1: np.linspace(-0.3, 0.1, 64, dtype=np.float32).reshape(4, 4, 4)}
    scale = {"mean": 0.0, "std": 1.0, "polarity": "dark"}
    # the label-1 patch is decoded[1]: values -0.3 .. 0.1, the densest 10 % beyond 0.26
    with pytest.raises(InputError, match=r"--iso 0.5: label 1 gets no voxel: .* at most 0.3 standard deviations .*try --iso 0\.26"):
        check_labelled_voxels(np.array([100, 0]), {1: [5]}, decoded, [1, 0], [1, 0], 0.5, scale)
    check_labelled_voxels(np.array([100, 3]), {1: [5]}, decoded, [0, 1], [1, 0], 0.5, scale)  # voxels: fine
