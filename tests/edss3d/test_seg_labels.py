"""EDSS3D's label threshold: Otsu's method by hand, and --iso auto after a short real training."""

import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from autoencoder3d.edss3d.labels import DensenessHistogram, check_selection, otsu_threshold, parse_iso, parse_select
from autoencoder3d.errors import InputError
from tests.conftest import identity_run as shared_identity_run
from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def test_otsu_threshold_of_a_hand_made_histogram():
    # 50 voxels at 0.5, 30 at 1.5, 20 at 4.5 (bin centres).
    # cut after 0.5: w 0.5 / 0.5, means 0.5 and (45 + 90) / 50 = 2.7: 0.25 * 2.2^2 = 1.21
    # cut after 1.5: w 0.8 / 0.2, means (25 + 45) / 80 = 0.875 and 4.5: 0.16 * 3.625^2 = 2.1025 (larger)
    # so the classes are {0.5, 1.5} and {4.5}, and the threshold is halfway between 1.5 and 4.5
    counts = [50, 30, 0, 0, 20]
    assert otsu_threshold(counts, np.arange(6.0)) == 3.0
    assert otsu_threshold([0, 7, 0], np.arange(4.0)) is None  # one value: nothing to split


def test_otsu_threshold_of_a_bimodal_array():
    values = np.concatenate([np.zeros(50), np.ones(30), np.full(20, 4.0)])  # the same split: halfway between 1 and 4
    histogram = DensenessHistogram()
    histogram.add(values[:37])
    histogram.add(values[37:])  # blocks add up
    assert histogram.threshold() == pytest.approx(2.5, abs=1e-3)
    gaussians = np.random.default_rng(0).normal(size=20000) + np.repeat([0.0, 6.0], 10000)
    histogram = DensenessHistogram()
    histogram.add(gaussians)
    assert histogram.threshold() == pytest.approx(3.0, abs=0.1)  # two equal modes: the middle


def test_an_unknown_cluster_is_named_with_the_clusters_the_run_has():
    consecutive = {k: [f"u{k}"] for k in range(4)}
    with pytest.raises(InputError, match=r"cluster 7 \(label 1\) does not exist; kmeans.pickle has clusters 0..3$"):
        check_selection({1: [7]}, consecutive)
    merged = {k: [f"u{k}"] for k in (0, 2, 5) + tuple(range(10, 22))}  # a merged run: ids with gaps
    with pytest.raises(InputError, match=r"has clusters 0, 2, 5, 10, 11, 12, 13, 14, 15, 16, 17, 18 and 3 more$"):
        check_selection({1: [7]}, merged)


def test_a_cluster_given_twice_under_one_label_counts_once():
    assert parse_select(["1=3,0,3", "2=5"]) == {1: [3, 0], 2: [5]}


def test_parse_iso():
    assert parse_iso("auto") == "auto" and parse_iso(" AUTO ") == "auto" and parse_iso("0.25") == 0.25 and parse_iso(-1) == -1.0
    for bad in ("nan", "inf", "half", None):
        with pytest.raises(InputError, match="expected auto or a number"):
            parse_iso(bad)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A real 'autoencoder3d train' of one epoch: its decoded volumes stay close to the mean."""
    from autoencoder3d.runs.options import TrainOptions
    from autoencoder3d.workflows.train import run_train

    root = tmp_path_factory.mktemp("short")
    data = root / "d.pickle"
    with open(data, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=40, edge=16, seed=4), handle, protocol=4)
    run = root / "run"
    run_train(str(data), None, False, 3, str(run), TrainOptions(epochs=1, batch_size=16, n_init=3, seed=1, verbose=0))
    return str(data), str(run)


def test_default_iso_labels_voxels_after_a_short_training(short_run, tmp_path, capsys):
    from autoencoder3d.cli.main import main
    from autoencoder3d.edss3d import run_seg_train

    data, run = short_run
    fixed = str(tmp_path / "fixed")
    shutil.copytree(run, fixed)
    # the old default, 0.5 standard deviations, labels nothing after one epoch
    with pytest.raises(InputError, match=r"--iso 0.5: label 1 gets no voxel"):
        run_seg_train(data, fixed, {1: [0], 2: [1]}, iso=0.5, epochs=1, batch_size=16, seed=0, verbose=0)

    assert main(["edss3d", "train", data, "--out", run, "--select", "1=0", "--select", "2=1", "--epochs", "1",
                 "--batch-size", "16", "--seed", "0", "-q"]) == 0
    with open(os.path.join(run, "model-seg", "seg.json")) as handle:
        record = json.load(handle)
    assert record["iso"] == "auto" and record["iso_rule"] == "otsu"
    assert 0 < record["iso_threshold"] < 0.5 and all(count > 0 for count in record["voxels_per_class"])
    assert f"{record['iso_threshold']:.3g} standard deviations denser than the mean, Otsu's threshold" in capsys.readouterr().out
    # the threshold Otsu chose, given as a number, labels the same voxels
    again = run_seg_train(data, fixed, {1: [0], 2: [1]}, iso=record["iso_threshold"], epochs=1, batch_size=16, seed=0, verbose=0)
    assert again["voxels_per_class"] == record["voxels_per_class"] and again["iso_rule"] == "given"


def test_auto_iso_of_a_published_run_is_the_published_rule(tmp_path):
    """A run trained with --published keeps the published -decoded > 0.5."""
    from autoencoder3d.edss3d import run_seg_train

    data, run, d = shared_identity_run(tmp_path, n=24, classes=4, seed=2)
    (run / "run.json").write_text(json.dumps({"options": {"published": True}}))
    record = run_seg_train(str(data), str(run), {1: [0]}, epochs=1, batch_size=8, seed=0, verbose=0)
    assert record["iso_rule"] == "published" and record["iso_threshold"] == 0.5
    # the identity "autoencoder": the labels are exactly the voxels below -0.5
    labelled = [d["vs"][u]["v"] for u, label in record["patches"].items() if label == 1]
    assert record["voxels_per_class"][1] == sum(int((v < -0.5).sum()) for v in labelled)


def identity_run(root, volumes_of_cluster_0):
    """A run folder whose 'autoencoder' decodes every subvolume as itself; cluster 0 holds the given volumes."""
    import keras

    from autoencoder3d.formats.subvolume_pickle import save_pickle

    d = make_subvolume_dict(n=16, edge=16, classes=2, seed=1)
    uuids = list(d["vs"])
    for uuid, volume in zip(uuids[0::2], volumes_of_cluster_0):
        d["vs"][uuid]["v"] = volume.astype(np.float32)
    root.mkdir()
    data = root / "d.pickle"
    with open(data, "wb") as handle:
        pickle.dump(d, handle, protocol=4)
    inputs = keras.Input((16, 16, 16, 1))
    os.makedirs(root / "model")
    keras.Model(inputs, keras.layers.Activation("linear")(inputs)).save(root / "model" / "model-autoencoder.keras")
    save_pickle(root / "clus-center" / "kmeans.pickle", {0: uuids[0::2], 1: uuids[1::2]})
    return str(data), str(root)


def test_the_suggested_iso_labels_voxels_when_the_densest_tenth_ties(tmp_path):
    """Half of each labelled subvolume is one dense value: its 90th percentile is its maximum, which '>' never passes."""
    from autoencoder3d.edss3d import run_seg_train

    half = np.zeros((16, 16, 16))
    half[:8] = -1.0  # dense (dark) half
    data, run = identity_run(tmp_path / "run", [half] * 8)
    with pytest.raises(InputError, match=r"label 1 gets no voxel") as refused:
        run_seg_train(data, run, {1: [0]}, iso=50.0, epochs=1, batch_size=16, seed=0, verbose=0)
    suggested = re.search(r"try --iso (\S+), which marks the densest (\S+) %", str(refused.value))
    assert suggested and float(suggested.group(2)) == 50
    record = run_seg_train(data, run, {1: [0]}, iso=float(suggested.group(1)), epochs=1, batch_size=16, seed=0, verbose=0)
    assert record["voxels_per_class"][1] == 8 * 16**3 // 2


def test_uniform_labelled_subvolumes_get_no_suggestion_that_fails_again(tmp_path):
    from autoencoder3d.edss3d import run_seg_train

    data, run = identity_run(tmp_path / "run", [np.full((16, 16, 16), 0.5)] * 8)
    with pytest.raises(InputError, match=r"--iso 0.5: label 1 gets no voxel: the decoded subvolumes of its clusters "
                                         r"are uniform .* give label 1 other clusters"):
        run_seg_train(data, run, {1: [0]}, iso=0.5, epochs=1, batch_size=16, seed=0, verbose=0)
