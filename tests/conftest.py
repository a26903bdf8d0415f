"""Tiny data made on the fly: subvolume pickles and tomograms of 16^3 / 32^3 scale."""

import os
import pickle

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def make_subvolume_dict(n=48, edge=16, classes=3, seed=0, center=(20, 20, 20)):
    """A published-format dict: noise plus one dark block whose position depends on the class."""
    rng = np.random.default_rng(seed)
    vs = {}
    for i in range(n):
        v = rng.normal(scale=0.3, size=(edge, edge, edge)).astype(np.float32)
        k = i % classes
        a = edge // 4
        v[a + k * 2 : 2 * a + k * 2, a : 3 * a, a + k : 2 * a + k] -= 2.0
        uuid = f"uuid-{i:04d}"
        vs[uuid] = {"center": list(center), "id": uuid, "v": v}
    return {"v_siz": np.array([edge, edge, edge]), "vs": vs}


def identity_run(root, n, classes, seed):
    """A run folder whose 'autoencoder' is the identity, clustered by class: enough for edss3d train.

    Returns (data pickle path, run folder, the published-format dict).
    """
    import keras

    from autoencoder3d.formats.subvolume_pickle import save_pickle

    d = make_subvolume_dict(n=n, edge=16, classes=classes, seed=seed)
    data = root / "d.pickle"
    with open(data, "wb") as handle:
        pickle.dump(d, handle, protocol=4)
    run = root / "run"
    inputs = keras.Input((16, 16, 16, 1))
    os.makedirs(run / "model")
    keras.Model(inputs, keras.layers.Activation("linear")(inputs)).save(run / "model" / "model-autoencoder.keras")
    uuids = list(d["vs"])
    save_pickle(run / "clus-center" / "kmeans.pickle", {k: uuids[k::classes] for k in range(classes)})
    return data, run, d


@pytest.fixture
def tiny_pickle(tmp_path):
    path = tmp_path / "tiny.pickle"
    with open(path, "wb") as handle:
        pickle.dump(make_subvolume_dict(), handle, protocol=4)
    return str(path)


def write_tomogram(path, data_xyz, voxel_size=10.0):
    import mrcfile

    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(np.asarray(data_xyz, dtype=np.float32).transpose(2, 1, 0)))
        mrc.voxel_size = voxel_size
    return str(path)


def rotation_matrix(rng):
    """A uniformly random proper rotation."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def elongated_particle(shape, center, axes, radii):
    """Dark (negative) ellipsoid: ``axes`` columns are its principal directions."""
    grid = np.indices(shape, dtype=float).reshape(3, -1).T - np.asarray(center)
    local = grid @ axes / np.asarray(radii)
    inside = (local**2).sum(axis=1) <= 1.0
    return -inside.reshape(shape).astype(np.float32)


class CountingReads:
    """A store's volumes as readers see them (by slice or index), counting how often each row is read."""

    def __init__(self, volumes):
        self.volumes, self.shape, self.reads = volumes, volumes.shape, np.zeros(len(volumes), np.int64)

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, key):
        self.reads[np.arange(len(self.volumes))[key]] += 1
        return self.volumes[key]
