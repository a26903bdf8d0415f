"""Encoding in blocks read from the data: the same codes as encoding the whole array, read by slices only."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from autoencoder3d.data.open import open_data  # noqa: E402
from autoencoder3d.data.store.store import store_from_set  # noqa: E402
from autoencoder3d.network.encoding import block_rows, encode_blocks  # noqa: E402
from autoencoder3d.network.model import build_autoencoder  # noqa: E402
from autoencoder3d.network.train import encode  # noqa: E402
from autoencoder3d.prep.flips import PROPER_FLIPS, flipped_views  # noqa: E402
from autoencoder3d.volume import SubvolumeSet  # noqa: E402
from tests.conftest import CountingReads  # noqa: E402


@pytest.fixture(scope="module")
def encoder_and_volumes():
    keras.utils.set_random_seed(0)
    _, encoder, _, _ = build_autoencoder((8, 8, 8), encoding_dim=6, filters=4, mean=0.4, std=1.3)
    volumes = np.random.default_rng(1).normal(0.4, 1.3, (37, 8, 8, 8)).astype(np.float32)
    return encoder, volumes


class SlicesOnly:
    """Volumes that refuse any index but a slice, and remember the slices read."""

    def __init__(self, volumes):
        self.volumes, self.shape, self.reads = volumes, volumes.shape, []

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, key):
        assert isinstance(key, slice), key
        self.reads.append((key.start, key.stop))
        return self.volumes[key]


def test_streamed_codes_equal_the_whole_array_encoded_at_once(encoder_and_volumes):
    encoder, volumes = encoder_and_volumes
    whole = encoder.predict(volumes[..., None], batch_size=8, verbose=0)
    for block in (8, 16, 20, 1000):  # 20 rounds down to 16: whole batches, the same batches as the whole array
        np.testing.assert_array_equal(encode_blocks(encoder, volumes, 8, block=block), whole)
    np.testing.assert_array_equal(encode(encoder, volumes, 8), whole)


def test_blocks_are_read_as_consecutive_slices_and_only_once(encoder_and_volumes):
    encoder, volumes = encoder_and_volumes
    sliced = SlicesOnly(volumes)
    codes = encode_blocks(encoder, sliced, 8, block=16)
    assert sliced.reads == [(0, 16), (16, 32), (32, 37)]
    np.testing.assert_array_equal(codes, encode_blocks(encoder, volumes, 8, block=16))


def stored(volumes, folder):
    n = len(volumes)
    subvolumes = SubvolumeSet(uuids=[f"p{i}" for i in range(n)], volumes=volumes, centers=np.zeros((n, 3)),
                              tomograms=np.array(["TS_01"] * 20 + ["TS_02"] * (n - 20), dtype=object))
    store_from_set(folder / "d.zarr", subvolumes)
    return open_data(folder / "d.zarr")


def test_a_store_gives_the_codes_of_its_array(encoder_and_volumes, tmp_path):
    encoder, volumes = encoder_and_volumes
    np.testing.assert_array_equal(encode_blocks(encoder, stored(volumes, tmp_path).volumes, 8, block=16), encode_blocks(encoder, volumes, 8))


def each_view_encoded(encoder, volumes, block):
    """The codes of every flipped view of ``volumes`` encoded on its own, (4, N, c)."""
    return np.stack([encode_blocks(encoder, view, 8, block=block) for view in flipped_views(volumes)])


def test_codes_in_the_flips_are_those_of_each_flipped_view_bit_for_bit(encoder_and_volumes, tmp_path):
    encoder, volumes = encoder_and_volumes
    for block in (16, 1000):
        np.testing.assert_array_equal(encode_blocks(encoder, volumes, 8, block=block, flips=PROPER_FLIPS),
                                      each_view_encoded(encoder, volumes, block))
    on_disk = stored(volumes, tmp_path).volumes
    both = encode_blocks(encoder, on_disk, 8, block=16, flips=PROPER_FLIPS)
    np.testing.assert_array_equal(both, each_view_encoded(encoder, on_disk, 16))
    np.testing.assert_array_equal(both[0], encode_blocks(encoder, volumes, 8))  # the identity first
    np.testing.assert_array_equal(encode(encoder, volumes, 8, flips=PROPER_FLIPS[2:]), both[2:])  # any flips, in their order
    assert encode_blocks(encoder, volumes[:0], 8, flips=PROPER_FLIPS).shape == (4, 0, 6)


def test_the_flips_read_each_row_once(encoder_and_volumes):
    encoder, volumes = encoder_and_volumes
    counted = CountingReads(volumes)
    codes = encode_blocks(encoder, counted, 8, block=16, flips=PROPER_FLIPS)
    assert codes.shape == (4, len(volumes), 6)
    np.testing.assert_array_equal(counted.reads, np.ones(len(volumes)))  # not once per flip


def test_block_size_is_whole_batches_within_the_bytes():
    volumes = np.zeros((3, 32, 32, 32), np.float32)
    assert block_rows(volumes, 128) == 1024  # 128 MiB of 32^3 float32
    assert block_rows(volumes, 100) == 1000
    assert block_rows(volumes, 128, block_bytes=1) == 128  # at least one batch


def test_no_subvolumes_no_codes(encoder_and_volumes):
    encoder, volumes = encoder_and_volumes
    assert encode_blocks(encoder, volumes[:0], 8).shape == (0, 6)
