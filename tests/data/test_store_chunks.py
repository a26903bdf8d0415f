"""Stores of several subvolumes per chunk: written, read in whole chunks, checked, and converted from one per chunk."""

import os

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.data.store import open_store
from autoencoder3d.data.store import store as store_module
from autoencoder3d.data.store.store import read_manifest, store_digest, store_from_set
from autoencoder3d.errors import InputError
from autoencoder3d.volume import SubvolumeSet
from tests.data.test_dataset_build import project  # noqa: F401 - a fixture
from tests.data.test_dataset_trust import edit_json, manifest_of, refused

SIDE = 8


def a_set(counts=(13, 22), dtype=np.float32):
    total = sum(counts)
    rng = np.random.default_rng(3)
    names = [name for name, n in zip(("TS_01", "TS_02"), counts) for _ in range(n)]
    return SubvolumeSet(uuids=[f"p{i:03d}" for i in range(total)], volumes=rng.normal(size=(total, SIDE, SIDE, SIDE)).astype(dtype),
                        centers=rng.integers(8, 50, (total, 3)).astype(float), tomograms=np.array(names, dtype=object))


@pytest.fixture
def four_per_chunk(monkeypatch):
    """New stores hold 4 subvolumes of 8^3 float32 per chunk (tiny chunks: many of them in a small test)."""
    monkeypatch.setattr(store_module, "CHUNK_BYTES", 4 * SIDE**3 * 4)


def test_a_new_store_holds_several_subvolumes_per_chunk_and_reads_them_back(tmp_path, four_per_chunk):
    subvolumes = a_set()
    manifest = store_from_set(tmp_path / "d.zarr", subvolumes)
    assert manifest["version"] == 2 and manifest["chunk_subvolumes"] == 4
    # parts 00000 and 00001 (13 and 22 subvolumes): 4 and 6 chunk files, the last of each padded to 4 subvolumes
    files = {p: sorted(os.listdir(tmp_path / "d.zarr" / "parts" / p / "volumes")) for p in ("00000", "00001")}
    assert [len(f) - 1 for f in files.values()] == [4, 6]
    assert os.path.getsize(tmp_path / "d.zarr" / "parts" / "00001" / "volumes" / "5.0.0.0") == 4 * SIDE**3 * 4
    opened = open_store(tmp_path / "d.zarr")
    np.testing.assert_array_equal(np.asarray(opened.volumes), subvolumes.volumes)
    assert opened.uuids == subvolumes.uuids and list(opened.tomograms) == list(subvolumes.tomograms)
    assert opened.volumes.subvolumes_per_chunk == 4
    assert list(opened.volumes.chunk_ids([0, 3, 4, 12, 13, 16, 17, 34])) == [0, 0, 1, 3, 4, 4, 5, 9]


def test_float16_chunks_read_as_float32(tmp_path, four_per_chunk):
    subvolumes = a_set()
    store_from_set(tmp_path / "h.zarr", subvolumes, dtype="float16")
    np.testing.assert_array_equal(open_store(tmp_path / "h.zarr").volumes[[34, 0, 17]],
                                  subvolumes.volumes[[34, 0, 17]].astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("version", [1, 2])
def test_chunk_grouped_reads_equal_reads_one_by_one(tmp_path, four_per_chunk, version):
    subvolumes = a_set()
    store_from_set(tmp_path / "d.zarr", subvolumes, version=version)
    volumes = open_store(tmp_path / "d.zarr").volumes
    rng = np.random.default_rng(0)
    for indices in (rng.integers(0, 35, 60), [34, 0, 34, 5, 5, 13, 12, -1], np.arange(35)[::-1], [7], []):
        one_by_one = np.stack([volumes[int(i)] for i in indices]) if len(indices) else np.zeros((0, SIDE, SIDE, SIDE), np.float32)
        np.testing.assert_array_equal(volumes[np.asarray(indices, dtype=np.int64)], one_by_one)
        np.testing.assert_array_equal(one_by_one, subvolumes.volumes[np.asarray(indices, dtype=np.int64)])
    np.testing.assert_array_equal(volumes[5:30:3], subvolumes.volumes[5:30:3])


def test_each_chunk_is_read_once_per_call(tmp_path, four_per_chunk, monkeypatch):
    from autoencoder3d.data.store import chunks

    store_from_set(tmp_path / "d.zarr", a_set())
    volumes = open_store(tmp_path / "d.zarr").volumes
    volumes._cache = None  # no chunk kept between calls
    reads = []
    original = chunks.PartChunks.read
    monkeypatch.setattr(chunks.PartChunks, "read", lambda self, chunk: (reads.append((self.folder, chunk)), original(self, chunk))[1])
    volumes[[15, 14, 13, 16, 0, 3, 1, 2, 34, 33, 12]]
    assert len(reads) == len(set(reads)) == 4  # chunks 0 (0..3) and 3 (12) of part 00000; 0 (13..16) and 5 (33, 34) of part 00001


def test_an_old_store_is_still_read_and_converts_to_the_same_subvolumes_and_digest(tmp_path, four_per_chunk, capsys):
    subvolumes = a_set()
    store_from_set(tmp_path / "old.zarr", subvolumes, version=1)
    assert read_manifest(tmp_path / "old.zarr")["version"] == 1
    assert sorted(os.listdir(tmp_path / "old.zarr" / "parts" / "00001" / "volumes"))[-1] == "9.0.0.0"  # one per chunk
    old = open_store(tmp_path / "old.zarr")
    assert main(["dataset", "convert", str(tmp_path / "old.zarr"), str(tmp_path / "new.zarr"), "-q"]) == 0
    assert "35 subvolumes" in capsys.readouterr().out
    new = open_store(tmp_path / "new.zarr")
    assert read_manifest(tmp_path / "new.zarr")["chunk_subvolumes"] == 4
    np.testing.assert_array_equal(np.asarray(new.volumes), np.asarray(old.volumes))
    assert new.uuids == old.uuids and np.array_equal(new.centers, old.centers)
    assert np.array_equal(new.rotations, old.rotations, equal_nan=True)
    assert store_digest(tmp_path / "new.zarr") == store_digest(tmp_path / "old.zarr")
    # in place, replacing the old store only when the new one is complete
    assert main(["dataset", "convert", str(tmp_path / "old.zarr"), str(tmp_path / "old.zarr"), "--overwrite", "-q"]) == 0
    assert read_manifest(tmp_path / "old.zarr")["version"] == 2
    assert store_digest(tmp_path / "old.zarr") == store_digest(tmp_path / "new.zarr")
    assert sorted(os.listdir(tmp_path)) == ["new.zarr", "old.zarr"]


def test_convert_refuses_pickle_options_for_a_store(tmp_path, four_per_chunk, capsys):
    store_from_set(tmp_path / "old.zarr", a_set(), version=1)
    assert main(["dataset", "convert", str(tmp_path / "old.zarr"), str(tmp_path / "new.zarr"), "--dtype", "float16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--dtype: for a pickle" in err
    assert not (tmp_path / "new.zarr").exists()


# --- the check: chunk shapes must be the manifest's

@pytest.fixture
def chunked(tmp_path, four_per_chunk):
    store_from_set(tmp_path / "s.zarr", a_set())
    return str(tmp_path / "s.zarr")


@pytest.mark.parametrize("chunks,message", [
    ([1, SIDE, SIDE, SIDE], "chunks [1, 8, 8, 8], not the manifest's 4 subvolumes per chunk [4, 8, 8, 8]; refused"),
    ([8, SIDE, SIDE, SIDE], "chunks [8, 8, 8, 8], not the manifest's 4 subvolumes per chunk"),
    ([4, SIDE, SIDE, 4], "not the manifest's 4 subvolumes per chunk"),
    ([23, SIDE, SIDE, SIDE], "chunks [23, 8, 8, 8] do not fit shape [22, 8, 8, 8]"),
])
def test_volume_chunks_other_than_the_manifests_are_refused(chunked, capsys, chunks, message):
    edit_json(os.path.join(chunked, "parts", "00001", "volumes", ".zarray"), lambda z: z.update(chunks=chunks))
    refused(chunked, capsys, message)


@pytest.mark.parametrize("count,message", [
    (10**12, "chunk_subvolumes 1000000000000 makes chunks of 1953125000 MiB, more than the 256 MiB a chunk may hold; refused"),
    (0, "chunk_subvolumes 0 is not a positive integer"),
    ("4", "chunk_subvolumes '4' is not a positive integer"),
    (None, "chunk_subvolumes None is not a positive integer"),
    (2, "chunks [4, 8, 8, 8], not the manifest's 2 subvolumes per chunk"),
])
def test_a_manifest_with_an_absurd_or_inconsistent_chunk_size_is_refused(chunked, capsys, count, message):
    edit_json(manifest_of(chunked), lambda a: a["autoencoder3d"].update(chunk_subvolumes=count))
    refused(chunked, capsys, message)


def test_a_version_1_store_may_not_hold_several_subvolumes_per_chunk(chunked, capsys):
    edit_json(manifest_of(chunked), lambda a: a["autoencoder3d"].update(version=1))
    refused(chunked, capsys, "chunks [4, 8, 8, 8], not one subvolume per chunk [1, 8, 8, 8]")


@pytest.mark.parametrize("damage,message", [
    ("missing", "parts/00001/volumes/3.0.0.0: chunk missing"),
    ("short", "parts/00001/volumes/3.0.0.0: 100 bytes, a chunk of this array holds 8192"),
    ("fifo", "parts/00001/volumes/3.0.0.0: not a regular file but a named pipe"),
])
def test_a_chunk_damaged_after_opening_is_one_error_not_zeros(chunked, damage, message):
    opened = open_store(chunked)
    chunk = os.path.join(chunked, "parts", "00001", "volumes", "3.0.0.0")
    os.remove(chunk)
    if damage == "short":
        open(chunk, "wb").write(b"x" * 100)
    elif damage == "fifo":
        os.mkfifo(chunk)
    with pytest.raises(InputError, match=message):
        opened.volumes[[0, 13 + 12]]  # part 00001's row 12: its chunk 3


def test_a_missing_chunk_of_several_subvolumes_is_refused_by_the_check(chunked, capsys):
    os.remove(os.path.join(chunked, "parts", "00001", "volumes", "5.0.0.0"))
    refused(chunked, capsys, "parts/00001/volumes/5.0.0.0: chunk missing (5 chunk files, shape [22, 8, 8, 8] needs 6)")


def test_a_non_finite_voxel_in_a_chunk_is_refused_where_it_is_read(chunked):
    import zarr

    zarr.open_array(os.path.join(chunked, "parts", "00001", "volumes"), mode="r+")[9, 1, 1, 1] = np.nan
    opened = open_store(chunked)
    assert np.isfinite(opened.volumes[[13 + 8, 13 + 10, 0]]).all()  # its chunk, other rows
    with pytest.raises(InputError, match="subvolume 9 of part 00001 holds NaN or infinite voxels"):
        opened.volumes[[1, 13 + 9]]


def test_a_build_writes_several_subvolumes_per_chunk_whatever_its_block(project, tmp_path, four_per_chunk):  # noqa: F811
    from tests.data.test_dataset_build import BOX, assert_rows_right, build, write_table

    store_module.CHUNK_BYTES = 4 * BOX**3 * 4  # 4 subvolumes of 16^3 per chunk (restored by the fixture)
    assert build(tmp_path / "ds.zarr", "--table", write_table(project, tmp_path / "picks.csv"), "--block", 6) == 0
    manifest = read_manifest(tmp_path / "ds.zarr")
    assert manifest["version"] == 2 and manifest["chunk_subvolumes"] == 4
    assert len(os.listdir(tmp_path / "ds.zarr" / "parts" / "00000" / "volumes")) - 1 == 5  # 18 subvolumes
    assert_rows_right(tmp_path / "ds.zarr", project, project[2])


@pytest.mark.parametrize("damage", [None, "missing", "short"])
def test_a_few_subvolumes_of_a_chunk_are_read_alone(tmp_path, monkeypatch, damage):
    """Scattered indices (a report's, an export's) read their own bytes, not 16 subvolumes for one."""
    from autoencoder3d.data.store import chunks

    monkeypatch.setattr(store_module, "CHUNK_BYTES", 16 * SIDE**3 * 4)
    subvolumes = a_set((40, 10))
    store_from_set(tmp_path / "d.zarr", subvolumes)
    volumes = open_store(tmp_path / "d.zarr").volumes
    monkeypatch.setattr(chunks.PartChunks, "read", lambda self, chunk: pytest.fail("a whole chunk was read"))
    chunk = tmp_path / "d.zarr" / "parts" / "00000" / "volumes" / "2.0.0.0"
    if damage:
        os.remove(chunk)
        if damage == "short":
            chunk.write_bytes(b"x" * 100)
        with pytest.raises(InputError, match={"missing": "2.0.0.0: chunk missing", "short": "2.0.0.0: 100 bytes"}[damage]):
            volumes[[1, 33]]
        return
    indices = [33, 1, 33, 45, 17]
    np.testing.assert_array_equal(volumes[indices], subvolumes.volumes[indices])
