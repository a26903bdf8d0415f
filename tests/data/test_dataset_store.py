"""The on-disk store as DATA: reading by index, digests, training and clustering that stream from it."""

import numpy as np
import pytest

from autoencoder3d.data.open import open_data
from autoencoder3d.data.store.read import StoreVolumes
from autoencoder3d.data.store.store import store_digest, store_from_set
from autoencoder3d.errors import InputError
from autoencoder3d.formats.subvolume_pickle import save_subvolumes
from autoencoder3d.volume import SubvolumeSet

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def _set(n=24, side=16, tomograms=None, seed=0):
    rng = np.random.default_rng(seed)
    volumes = rng.normal(5.0, 0.05, (n, side, side, side)).astype(np.float32)
    volumes[: n // 2, 4:12, 4:12, 4:12] -= 0.3  # two kinds: a dark cube or none
    return SubvolumeSet(
        uuids=[f"p{i:03d}" for i in range(n)], volumes=volumes, centers=rng.integers(8, 90, (n, 3)).astype(float),
        tomograms=None if tomograms is None else np.array(tomograms, dtype=object), source="/data/set.pickle",
    )


def test_store_volumes_read_any_index_order_across_tomograms(tmp_path):
    names = ["TS_01"] * 5 + ["TS_02"] * 7 + ["TS_03"] * 4
    subvolumes = _set(16, 8, names)
    store_from_set(tmp_path / "d.zarr", subvolumes)
    loaded = open_data(tmp_path / "d.zarr")
    assert isinstance(loaded.volumes, StoreVolumes) and not loaded.in_memory
    assert loaded.volumes.shape == (16, 8, 8, 8) and len(loaded) == 16
    assert loaded.uuids == subvolumes.uuids
    assert [loaded.tomogram_of(i) for i in range(16)] == names
    assert [p["name"] for p in loaded.manifest["parts"]] == ["TS_01", "TS_02", "TS_03"]
    for index in ([15, 0, 6, 6, 4, 5], np.arange(16)[::-1], [-1], slice(3, 11, 2)):
        np.testing.assert_array_equal(loaded.volumes[index], subvolumes.volumes[index])
    np.testing.assert_array_equal(loaded.volumes[7], subvolumes.volumes[7])
    np.testing.assert_array_equal(loaded.centers, subvolumes.centers)
    with pytest.raises(IndexError):
        loaded.volumes[[16]]


def test_float16_store_reads_float32(tmp_path):
    subvolumes = _set(6, 8)
    store_from_set(tmp_path / "h.zarr", subvolumes, dtype="float16")
    loaded = open_data(tmp_path / "h.zarr")
    block = loaded.volumes[[0, 5]]
    assert block.dtype == np.float32 and loaded.volumes.stored_dtype == np.float16
    np.testing.assert_allclose(block, subvolumes.volumes[[0, 5]], rtol=1e-3)


def test_digest_sees_a_changed_subvolume_and_order(tmp_path):
    subvolumes = _set(10, 8)
    store_from_set(tmp_path / "a.zarr", subvolumes)
    changed = _set(10, 8)
    changed.volumes[0, 0, 0, 0] += 1.0
    store_from_set(tmp_path / "b.zarr", changed)
    store_from_set(tmp_path / "c.zarr", subvolumes.subset(np.arange(10)[::-1]))
    digests = [store_digest(tmp_path / name)["sha256"] for name in ("a.zarr", "b.zarr", "c.zarr")]
    assert len(set(digests)) == 3
    store_from_set(tmp_path / "a2.zarr", subvolumes)
    assert store_digest(tmp_path / "a2.zarr") == store_digest(tmp_path / "a.zarr")


def test_folder_that_is_not_a_store_is_one_error_line(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="plain: is a folder, not a subvolume pickle or a store"):
        open_data(tmp_path / "plain")


def test_unfinished_store_is_refused(tmp_path):
    from autoencoder3d.data.store.store import create_store

    create_store(tmp_path / "u.zarr", (8, 8, 8))
    with pytest.raises(InputError, match="build did not finish"):
        open_data(tmp_path / "u.zarr")


def test_pose_true_on_a_store_built_without_pose_says_how(tmp_path):
    from autoencoder3d.workflows.train import prepare_subvolumes

    store_from_set(tmp_path / "d.zarr", _set(6, 8))
    with pytest.raises(InputError, match="built without --pose"):
        prepare_subvolumes(str(tmp_path / "d.zarr"), None, True)


def test_training_and_encoding_from_the_store_equal_the_pickle(tmp_path):
    """The same batches in the same order: the store path trains the same weights and codes."""
    import keras

    from autoencoder3d.network.train import encode, train_autoencoder

    subvolumes = _set(24, 16)
    store_from_set(tmp_path / "d.zarr", subvolumes)
    stored = open_data(tmp_path / "d.zarr")
    codes = []
    for name, volumes in (("mem", subvolumes.volumes), ("disk", stored.volumes)):
        keras.utils.set_random_seed(3)
        models, info = train_autoencoder(volumes, str(tmp_path / name), epochs=1, batch_size=8, encoding_dim=8, seed=3, verbose=0)
        codes.append(encode(models[1], volumes, 8))
    np.testing.assert_allclose(codes[0], codes[1], rtol=1e-5, atol=1e-6)


def test_kmeans_switches_to_minibatch_above_the_measured_size(monkeypatch):
    from autoencoder3d.clustering import kmeans as cluster

    assert cluster.kmeans_method(10_000, 100) == "full"
    assert cluster.kmeans_method(200_000, 100) == "minibatch"
    assert cluster.kmeans_method(200_000, 100, "full") == "full"
    with pytest.raises(InputError, match="--kmeans fast"):
        cluster.kmeans_method(10, 2, "fast")
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(0, 0.1, (300, 4)), rng.normal(5, 0.1, (300, 4))])
    monkeypatch.setattr(cluster, "MINIBATCH_ABOVE", 100)
    result = cluster.cluster_encodings(codes, [str(i) for i in range(600)], 2, seed=0)
    assert result.method == "minibatch"
    assert sorted(result.sizes().values()) == [300, 300]
    assert len(set(result.labels[:300])) == 1 and result.labels[0] != result.labels[-1]


def test_pickle_still_loads_in_memory(tmp_path):
    subvolumes = _set(4, 8)
    save_subvolumes(tmp_path / "s.pickle", subvolumes)
    loaded = open_data(tmp_path / "s.pickle")
    assert loaded.in_memory and loaded.tomograms is None and loaded.source == str(tmp_path / "s.pickle")
