"""EDSS3D on an on-disk data set: the same patches, labels and training as from the pickle, read by index in batches."""

import csv
import os
import pickle
import shutil

import numpy as np
import pytest

from autoencoder3d.data.store.read import StoreVolumes
from autoencoder3d.data.store.store import store_from_set
from autoencoder3d.formats.subvolume_pickle import load_pickle, load_subvolumes
from tests.conftest import make_subvolume_dict

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

N = 40


@pytest.fixture(scope="module")
def pickle_and_store(tmp_path_factory):
    """The same 40 subvolumes of 16^3 as a pickle and as a store of 3 tomograms, and a run folder whose autoencoder is the identity."""
    import keras

    from autoencoder3d.formats.subvolume_pickle import save_pickle

    root = tmp_path_factory.mktemp("seg-store")
    data = str(root / "d.pickle")
    with open(data, "wb") as handle:
        pickle.dump(make_subvolume_dict(n=N, edge=16, classes=4, seed=2), handle, protocol=4)
    subvolumes = load_subvolumes(data)
    subvolumes.tomograms = np.array(["TS_1"] * 14 + ["TS_2"] * 16 + ["TS_3"] * 10, dtype=object)
    store = str(root / "d.zarr")
    store_from_set(store, subvolumes)
    run = root / "run"
    inputs = keras.Input((16, 16, 16, 1))
    os.makedirs(run / "model")
    keras.Model(inputs, keras.layers.Activation("linear")(inputs)).save(run / "model" / "model-autoencoder.keras")
    save_pickle(run / "clus-center" / "kmeans.pickle", {k: subvolumes.uuids[k::4] for k in range(4)})
    return data, store, str(run)


def _history(run):
    with open(os.path.join(run, "model-seg", "history.csv")) as handle:
        return [float(r[key]) for r in csv.DictReader(handle) for key in ("loss", "val_loss")]


def test_edss3d_train_on_a_store_equals_train_on_the_pickle(pickle_and_store, tmp_path, monkeypatch):
    from autoencoder3d.edss3d import patches as seg_patches
    from autoencoder3d.edss3d import run_seg_train

    data, store, run = pickle_and_store
    runs = {}
    for name in ("pickle", "store"):
        runs[name] = str(tmp_path / name)
        shutil.copytree(run, runs[name])
    options = dict(epochs=1, batch_size=8, seed=5, verbose=0, class_balanced=True)
    from_pickle = run_seg_train(data, runs["pickle"], {1: [0], 2: [3]}, **options)

    reads = []
    original = StoreVolumes._read

    def counted(self, indices):
        reads.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(StoreVolumes, "_read", counted)
    monkeypatch.setattr(seg_patches, "DECODE_BLOCK", 6)
    from_store = run_seg_train(store, runs["store"], {1: [0], 2: [3]}, **options)

    assert from_store["patches"] == from_pickle["patches"] and from_store["n_labelled"] == 20 and from_store["n_background"] == 20
    assert from_store["voxels_per_class"] == from_pickle["voxels_per_class"] and all(c > 0 for c in from_store["voxels_per_class"])
    assert from_store["class_weights"] == pytest.approx(from_pickle["class_weights"], rel=1e-12)
    assert from_store["labelled_fraction"] == pytest.approx(from_pickle["labelled_fraction"], rel=1e-12)
    assert _history(runs["store"]) == pytest.approx(_history(runs["pickle"]), rel=1e-5)
    # read a batch or a decode block at a time, never the whole store; no whole-data-set decoded.pickle; no leftovers
    assert reads and max(reads) <= 8
    assert not os.path.exists(os.path.join(runs["store"], "decoded"))
    assert os.path.isfile(os.path.join(runs["pickle"], "decoded", "decoded.pickle"))
    assert not os.path.exists(os.path.join(runs["store"], "model-seg", seg_patches.TARGETS_FILE))


def test_edss3d_predict_command_takes_the_store(pickle_and_store, tmp_path):
    from autoencoder3d.cli.main import main
    from autoencoder3d.edss3d import build_segmenter

    data, store, _ = pickle_and_store
    model = str(tmp_path / "seg.keras")
    build_segmenter((16, 16, 16), 3).save(model)
    for name, source in (("s", store), ("p", data)):
        assert main(["edss3d", "predict", source, "--out", str(tmp_path / name), "--model", model, "--batch-size", "8", "-q"]) == 0
    from_store = load_pickle(str(tmp_path / "s" / "prediction" / "labels.pickle"))
    from_pickle = load_pickle(str(tmp_path / "p" / "prediction" / "labels.pickle"))
    assert list(from_store) == list(from_pickle) and len(from_store) == N
    for uuid in from_pickle:
        np.testing.assert_array_equal(from_store[uuid], from_pickle[uuid])
