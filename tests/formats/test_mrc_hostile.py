"""MRC headers and files that do not hold what they say: the error says what is wrong, the voxel size is never inf."""

import struct
import warnings

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram
from tests.conftest import write_tomogram

SIZE = (12, 10, 8)  # x, y, z
DATA_BYTES = 12 * 10 * 8 * 4


@pytest.fixture
def tomogram_bytes(tmp_path):
    write_tomogram(tmp_path / "t.mrc", np.zeros(SIZE))
    return bytearray((tmp_path / "t.mrc").read_bytes())


def patched(tmp_path, raw, **fields):
    """A copy of the file with header words changed (int32 at their MRC2014 offsets)."""
    offsets = {"nx": 0, "mode": 12, "mx": 28, "my": 32, "mz": 36}
    raw = bytearray(raw)
    for name, value in fields.items():
        struct.pack_into("<i", raw, offsets[name], value)
    path = tmp_path / "bad.mrc"
    path.write_bytes(bytes(raw))
    return str(path)


def refused(path):
    with pytest.raises(InputError) as err:
        read_tomogram(path)
    return str(err.value)


def test_a_file_cut_short_says_how_many_bytes_its_header_needs(tmp_path, tomogram_bytes):
    path = tmp_path / "cut.mrc"
    path.write_bytes(bytes(tomogram_bytes[: 1024 + DATA_BYTES // 2]))
    assert refused(str(path)) == (
        f"{path}: not a readable MRC file (its header says 12 x 10 x 8 voxels of mode 2, {1024 + DATA_BYTES} bytes with "
        f"the header, but the file holds {1024 + DATA_BYTES // 2}: cut short (copy it again) or a damaged header)")


@pytest.mark.parametrize("mode,words", [(4, "mode 4, complex 32-bit data, is not supported"),
                                        (101, "mode 101, 4-bit data, is not supported"),
                                        (99, "mode 99 is no MRC data type")])
def test_a_mode_without_real_values_is_named(tmp_path, tomogram_bytes, mode, words):
    assert words in refused(patched(tmp_path, tomogram_bytes, mode=mode))


def test_a_negative_size_is_named(tmp_path, tomogram_bytes):
    assert "its header gives the size -5 x 10 x 8, not three positive numbers" in refused(patched(tmp_path, tomogram_bytes, nx=-5))


def test_a_header_without_sampling_gives_no_voxel_size_and_no_warning(tmp_path, tomogram_bytes):
    path = patched(tmp_path, tomogram_bytes, mx=0, my=0, mz=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tomogram = read_tomogram(path)
    assert tomogram.voxel_size == (0.0, 0.0, 0.0) and tomogram.shape == SIZE
    tomogram.close()
