"""Hostile stores the trust checks of issue 18 let through: each is one error line, never a traceback.

One store is written per module and copied for each test.
"""

import os
import shutil

import numpy as np
import pytest

from autoencoder3d.data.store import open_store
from autoencoder3d.data.store.store import part_origin, read_manifest
from autoencoder3d.errors import InputError
from tests.data.test_dataset_trust import edit_json, make_store, refused


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    store, _ = make_store(tmp_path_factory.mktemp("pristine") / "s.zarr")
    return store


@pytest.fixture
def store(pristine, tmp_path):
    copy = str(tmp_path / "s.zarr")
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def chunk_of(store, array):
    """The first chunk file of ``array`` in part 00000."""
    folder = os.path.join(store, "parts", "00000", array)
    return os.path.join(folder, sorted(n for n in os.listdir(folder) if not n.startswith("."))[0])


@pytest.mark.parametrize("array", ["uuid", "center", "rotation", "center_of_mass"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "longer"])
def test_a_damaged_chunk_of_a_small_array_is_one_line(store, capsys, array, damage):
    chunk = chunk_of(store, array)
    data = open(chunk, "rb").read()
    open(chunk, "wb").write({"truncated": data[:7], "empty": b"", "longer": data + b"x" * 100}[damage])
    refused(store, capsys, "parts/00000: unreadable store part")


@pytest.mark.parametrize("array", ["uuid", "center"])
@pytest.mark.parametrize("codec", [{"id": "zstd", "level": 1}, {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}])
def test_compressed_garbage_in_a_small_array_is_one_line(store, capsys, array, codec):
    edit_json(os.path.join(store, "parts", "00000", array, ".zarray"), lambda z: z.update(compressor=codec))
    open(chunk_of(store, array), "wb").write(b"\x28\xb5\x2f\xfd garbage" * 10)
    refused(store, capsys, "parts/00000: unreadable store part")


def test_a_header_dtype_that_does_not_match_the_chunk_is_one_line(store, capsys):
    edit_json(os.path.join(store, "parts", "00000", "center", ".zarray"), lambda z: z.update(dtype="<f4"))
    refused(store, capsys, "parts/00000: unreadable store part")


def test_uuids_of_zero_characters_are_refused(store, capsys):
    edit_json(os.path.join(store, "parts", "00000", "uuid", ".zarray"), lambda z: z.update(dtype="<U0"))
    refused(store, capsys, "uuid/.zarray: dtype '<U0' is not text")


@pytest.mark.parametrize("where", [".zattrs", "parts/00000/volumes/.zarray"])
def test_json_nested_too_deeply_is_one_line(store, capsys, where):
    open(os.path.join(store, where), "w").write("[" * 100_000 + "]" * 100_000)
    refused(store, capsys, where)


def test_a_part_origin_nested_too_deeply_is_no_origin(store):
    open(os.path.join(store, "parts", "00000", ".zattrs"), "w").write("[" * 100_000 + "]" * 100_000)
    assert part_origin(store, 0) is None


def test_two_tomograms_of_one_name_are_refused(store, capsys):
    """Parts of one name are read as one tomogram; parts that give it two voxel sizes would export both as one."""
    def rename(attrs):
        attrs["autoencoder3d"]["parts"][0].update(voxel_size=[10.0, 10.0, 10.0])
        attrs["autoencoder3d"]["parts"][1].update(name="TS_01", voxel_size=[7.0, 7.0, 7.0])

    edit_json(os.path.join(store, ".zattrs"), rename)
    refused(store, capsys, "two parts of tomogram 'TS_01' say different things of it")


def test_two_parts_of_one_tomogram_that_agree_are_one_tomogram(store):
    """A converted set whose tomograms come in several runs has several parts of one name (store_from_set)."""
    edit_json(os.path.join(store, ".zattrs"), lambda a: a["autoencoder3d"]["parts"][1].update(name="TS_01"))
    assert list(open_store(store).tomogram_table) == ["TS_01"]


def test_the_pristine_store_still_opens(store):
    opened = open_store(store)
    assert len(opened) == 7 and np.isfinite(np.asarray(opened.volumes)).all()
    assert read_manifest(store)["complete"]


@pytest.mark.parametrize("name", ["TS\t01", "TS\n01", "TS\x1b[31m01"])
def test_a_tomogram_name_with_a_control_character_is_refused(store, capsys, name):
    """Export writes each particle's tomogram name into STAR files, which cannot hold it (it was a csv.Error traceback)."""
    edit_json(os.path.join(store, ".zattrs"), lambda a: a["autoencoder3d"]["parts"][1].update(name=name))
    refused(store, capsys, "part 00001's tomogram name")


def test_the_build_refuses_a_tomogram_name_with_a_control_character():
    from autoencoder3d.data.sources.jobs import TomogramJob, check_jobs

    job = TomogramJob("TS\t01", None, np.zeros((1, 3)), None)
    with pytest.raises(InputError, match="tomogram name 'TS\\\\t01' holds a control character"):
        check_jobs([job], "picks.csv")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_voxel_is_refused_where_it_is_read(store, value):
    """Training on it reported 'training diverged ... smaller --learning-rate' (or 'no intensity variation')."""
    import zarr

    zarr.open_array(os.path.join(store, "parts", "00001", "volumes"), mode="r+")[2, 1, 1, 1] = value
    opened = open_store(store)
    assert np.isfinite(opened.volumes[[0, 1, 6]]).all()
    with pytest.raises(InputError, match=r"s.zarr: subvolume 2 of part 00001 holds NaN or infinite voxels"):
        opened.volumes[[0, 5]]
