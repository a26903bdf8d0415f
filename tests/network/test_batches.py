"""One input pipeline per fit: ArrayBatches' exact batches, epoch after epoch, from memory and from a store."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from autoencoder3d.network.batches import training_dataset, validation_dataset  # noqa: E402
from autoencoder3d.network.train import ArrayBatches  # noqa: E402

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def volumes_in(where, tmp_path, n=37, edge=8):
    volumes = np.random.default_rng(1).normal(size=(n, edge, edge, edge)).astype(np.float32)
    if where == "memory":
        return volumes
    from autoencoder3d.data.open import open_data
    from autoencoder3d.data.store.store import store_from_set
    from autoencoder3d.volume import SubvolumeSet

    subvolumes = SubvolumeSet(uuids=[f"p{i:03d}" for i in range(n)], volumes=volumes, centers=np.zeros((n, 3)))
    store_from_set(tmp_path / "d.zarr", subvolumes)
    stored = open_data(tmp_path / "d.zarr").volumes
    assert not isinstance(stored, np.ndarray)
    return stored


def keras_order(volumes, first_epoch, end_epoch, **kwargs):
    """The batches Keras takes from an ArrayBatches, epoch by epoch (on_epoch_end between epochs)."""
    batches = ArrayBatches(volumes, np.arange(33), 8, epoch=first_epoch, **kwargs)
    out = []
    for _ in range(first_epoch, end_epoch):
        out.append([batches[i][0] for i in range(len(batches))])
        batches.on_epoch_end()
    return out


@pytest.mark.parametrize("where", ["memory", "store"])
@pytest.mark.parametrize("first_epoch", [0, 2])  # 2: a run resumed after two epochs
def test_pipeline_gives_the_batches_of_array_batches_in_order_every_epoch(tmp_path, where, first_epoch):
    volumes = volumes_in(where, tmp_path)
    options = dict(shuffle=True, seed=7, multiple_of=2, mean=0.5, std=2.0)
    expected = keras_order(volumes, first_epoch, 5, **options)
    batches = ArrayBatches(volumes, np.arange(33), 8, epoch=first_epoch, **options)
    got = [(x.numpy(), y.numpy()) for x, y in training_dataset(batches, first_epoch, 5, read_threads=2)]
    flat = [b for epoch in expected for b in epoch]
    assert len(got) == len(flat) == (5 - first_epoch) * 5
    for (x, y), want in zip(got, flat):
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(y, want)
    # the epochs really differ (reshuffled), and the original ArrayBatches was not advanced
    assert not np.array_equal(expected[0][0], expected[1][0])
    assert batches.epoch == first_epoch


@pytest.mark.parametrize("where", ["memory", "store"])
def test_validation_pipeline_repeats_its_one_order(tmp_path, where):
    volumes = volumes_in(where, tmp_path)
    batches = ArrayBatches(volumes, np.arange(33, 37), 3, shuffle=False)
    once = [batches[i][0] for i in range(len(batches))]
    got = [x.numpy() for x, _ in validation_dataset(batches).take(3 * len(batches))]
    for x, want in zip(got, once * 3):
        np.testing.assert_array_equal(x, want)
