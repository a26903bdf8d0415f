"""Hostile stores: each is refused in one error line, never a traceback, a hang or a huge allocation.

One store is written per module and copied for each test.
"""

import contextlib
import os
import shutil
import threading

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


# --- header fields, part folders and sizes the writer never writes

def cli_exit(*argv):
    from autoencoder3d.cli.main import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("array", ["volumes", "uuid", "center"])
def test_fortran_order_is_refused(store, capsys, array):
    """zarr reads an "F" chunk transposed: every subvolume of the part would be its own transpose."""
    edit_json(os.path.join(store, "parts", "00000", array, ".zarray"), lambda z: z.update(order="F"))
    refused(store, capsys, f"{array}/.zarray: order 'F' is not C")


def test_train_refuses_a_fortran_order_store(store, capsys, tmp_path):
    edit_json(os.path.join(store, "parts", "00001", "volumes", ".zarray"), lambda z: z.update(order="F"))
    capsys.readouterr()
    assert cli_exit("train", store, "None", "False", 2, "--out", tmp_path / "run", "--epochs", "1", "-q") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "order 'F'" in err, err
    assert not (tmp_path / "run").exists()


def test_a_part_folder_the_manifest_does_not_list_is_refused(store, capsys):
    def forget_the_last(attrs):
        manifest = attrs["autoencoder3d"]
        manifest["parts"].pop()
        manifest["n_subvolumes"] = 3

    edit_json(os.path.join(store, ".zattrs"), forget_the_last)
    refused(store, capsys, "parts/00001: a part folder the manifest does not list")


@pytest.mark.parametrize("name", ["extra", "00002", "1"])
def test_any_folder_or_link_in_parts_besides_the_listed_ones_is_refused(store, capsys, name):
    os.mkdir(os.path.join(store, "parts", name))
    refused(store, capsys, f"parts/{name}: a part folder the manifest does not list")


def test_a_part_folder_added_after_a_passed_check_is_refused(store):
    open_store(store)
    shutil.copytree(os.path.join(store, "parts", "00001"), os.path.join(store, "parts", "00002"))
    with pytest.raises(InputError, match="parts/00002: a part folder the manifest does not list"):
        open_store(store)


def test_the_temporary_folder_of_a_killed_build_is_not_a_part(store):
    """A build writes a part under a temporary name and renames it when complete; one left behind is no data."""
    from autoencoder3d.util.atomic import temporary_folder

    leftover = temporary_folder(os.path.join(store, "parts", "00002"))
    shutil.copytree(os.path.join(store, "parts", "00001"), leftover)
    assert len(open_store(store)) == 7


def declare(store, count, arrays=("volumes", "uuid", "center", "rotation", "center_of_mass")):
    """Part 00000 declares ``count`` subvolumes in the manifest and in the headers of ``arrays``."""
    def manifest(attrs):
        attrs["autoencoder3d"]["parts"][0]["n"] = count
        attrs["autoencoder3d"]["n_subvolumes"] = count + 4

    edit_json(os.path.join(store, ".zattrs"), manifest)
    for array in arrays:
        edit_json(os.path.join(store, "parts", "00000", array, ".zarray"), lambda z: z.update(shape=[count, *z["shape"][1:]]))


def test_a_count_of_a_trillion_subvolumes_is_refused_without_building_it(store, capsys):
    declare(store, 10**12)
    refused(store, capsys, "volumes/3.0.0.0: chunk missing (3 chunk files, shape [1000000000000, 8, 8, 8] needs 1000000000000)")


def test_a_chunk_file_more_than_the_shape_needs_is_refused(store, capsys):
    shutil.copy(chunk_of(store, "volumes"), os.path.join(store, "parts", "00000", "volumes", "3.0.0.0"))
    refused(store, capsys, "volumes/3.0.0.0: not a chunk of this array (4 chunk files, shape [3, 8, 8, 8] needs 3)")


def bomb(codec):
    """A chunk whose header claims 1 TiB (zstd) or 2 GiB (blosc, whose sizes are 32 bits) once decompressed."""
    import struct

    if codec["id"] == "zstd":  # frame header: single segment, 8-byte content size; then an empty last raw block
        return b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", 2**40) + b"\x01\x00\x00"
    return bytes([2, 1, 1, 4]) + struct.pack("<III", 2**31 - 16, 2**16, 24) + b"\0" * 8


def compress_with(store, array, codec, data):
    """Give ``array`` of part 00000 the compressor ``codec`` and ``data`` as its every chunk."""
    folder = os.path.join(store, "parts", "00000", array)
    edit_json(os.path.join(folder, ".zarray"), lambda z: z.update(compressor=codec))
    for name in os.listdir(folder):
        if not name.startswith("."):
            open(os.path.join(folder, name), "wb").write(data)


CODECS = [{"id": "zstd", "level": 1}, {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}]


@pytest.mark.parametrize("codec", CODECS, ids=["zstd", "blosc"])
def test_a_chunk_that_claims_more_bytes_than_its_shape_is_not_decompressed(store, capsys, codec):
    compress_with(store, "volumes", codec, bomb(codec))
    opened = open_store(store)
    claims = 2**40 if codec["id"] == "zstd" else 2**31 - 16
    with pytest.raises(InputError, match=rf"parts/00000: unreadable store part \(volumes/0.0.0.0: a {codec['id']} chunk that "
                                         rf"decompresses to {claims} bytes, more than the 2048 a chunk of this array holds\)"):
        opened.volumes[[0]]


@pytest.mark.parametrize("codec", CODECS, ids=["zstd", "blosc"])
def test_a_small_array_chunk_that_claims_more_bytes_is_refused(store, capsys, codec):
    compress_with(store, "center", codec, bomb(codec))
    refused(store, capsys, f"center/0.0: a {codec['id']} chunk that decompresses to")


def test_a_zstd_chunk_that_does_not_say_its_size_is_refused(store, capsys):
    frame = b"\x28\xb5\x2f\xfd\x00\x00" + b"\x29\x00\x00" + b"x" * 5  # no content size; one raw last block of 5 bytes
    compress_with(store, "center", {"id": "zstd", "level": 1}, frame)
    refused(store, capsys, "center/0.0: a zstd chunk that does not say its size")


def test_honest_compressed_chunks_are_read(store):
    import numcodecs

    before = open_store(store)
    expected, centers = before.volumes[[0, 1, 2]], before.centers
    for array, codec in (("volumes", numcodecs.Zstd(3)), ("center", numcodecs.Blosc("lz4", 5, 1))):
        folder = os.path.join(store, "parts", "00000", array)
        edit_json(os.path.join(folder, ".zarray"), lambda z, codec=codec: z.update(compressor=codec.get_config()))
        for name in os.listdir(folder):
            if not name.startswith("."):
                path = os.path.join(folder, name)
                raw = open(path, "rb").read()
                open(path, "wb").write(codec.encode(raw))
    after = open_store(store)
    np.testing.assert_array_equal(after.volumes[[0, 1, 2]], expected)
    np.testing.assert_array_equal(after.centers, centers)


def train_refuses(store, capsys, tmp_path, message):
    capsys.readouterr()
    assert cli_exit("train", store, "None", "False", 2, "--out", tmp_path / "run", "--epochs", "1", "--batch-size", "2", "-q") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_train_refuses_a_decompression_bomb(store, capsys, tmp_path):
    compress_with(store, "volumes", CODECS[0], bomb(CODECS[0]))
    train_refuses(store, capsys, tmp_path, "a zstd chunk that decompresses to 1099511627776 bytes")


@contextlib.contextmanager
def fifo_at(path):
    """``path`` made a named pipe; yields a list that is not empty if a reader waited on it.

    Reading a named pipe waits for a writer that never comes: after 5 s (a reader that refuses the pipe
    has done so by then) each waiting reader is fed, so a test fails instead of hanging.
    """
    os.remove(path)
    os.mkfifo(path)
    stuck, done = [], threading.Event()

    def feed():
        done.wait(5)
        while not done.wait(0.5):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader waiting
                continue
            stuck.append(True)
            os.write(fd, b"{}")
            os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield stuck
    finally:
        done.set()
        feeder.join()


@pytest.mark.parametrize("where", [".zattrs", "parts/00000/.zgroup", "parts/00000/volumes/.zarray",
                                   "parts/00000/center/.zarray", "parts/00000/uuid/0", "parts/00000/volumes/0.0.0.0"])
def test_a_fifo_in_the_store_is_refused_not_waited_on(store, capsys, where):
    with fifo_at(os.path.join(store, where)) as stuck:
        capsys.readouterr()
        assert cli_exit("dataset", "info", store) == 2
        err = capsys.readouterr().err.strip()
        with pytest.raises(InputError) as raised:
            open_store(store).volumes[[0]]
    assert not stuck
    assert len(err.splitlines()) == 1 and f"{where}: not a regular file but a named pipe" in err, err
    assert f"{where}: not a regular file" in str(raised.value)


def test_a_chunk_that_became_a_fifo_after_the_check_is_refused_not_waited_on(store):
    opened = open_store(store)
    with fifo_at(os.path.join(store, "parts", "00001", "volumes", "1.0.0.0")) as stuck:
        with pytest.raises(InputError, match="parts/00001/volumes/1.0.0.0: not a regular file but a named pipe"):
            opened.volumes[[3, 4]]
    assert not stuck


@pytest.mark.parametrize("name", ["TS_\udcff", "\ud800"])
def test_a_tomogram_name_that_is_not_utf8_is_refused(store, capsys, name):
    """A name read with surrogateescape (or a lone surrogate in the manifest's JSON) cannot be written to any file."""
    edit_json(os.path.join(store, ".zattrs"), lambda a: a["autoencoder3d"]["parts"][1].update(name=name))
    refused(store, capsys, "part 00001's tomogram name")


def test_the_build_refuses_a_tomogram_name_that_is_not_utf8():
    from autoencoder3d.data.sources.jobs import TomogramJob, check_jobs

    job = TomogramJob(b"TS_\xff".decode("utf-8", "surrogateescape"), None, np.zeros((1, 3)), None)
    with pytest.raises(InputError, match="tomogram name 'TS_\\\\udcff' holds"):
        check_jobs([job], "picks.csv")


def test_a_particle_id_that_is_not_utf8_is_refused(store, capsys):
    """The particle lists (CSV) hold every id; one with a lone surrogate was a UnicodeEncodeError in export."""
    import zarr

    uuids = zarr.open_array(os.path.join(store, "parts", "00001", "uuid"), mode="r+")
    uuids[2] = "p\udcff"
    refused(store, capsys, "parts/00001/uuid: particle id 'p\\udcff' holds a character UTF-8 cannot encode")


def test_the_build_refuses_a_particle_id_that_is_not_utf8():
    from autoencoder3d.data.sources.jobs import TomogramJob, check_jobs

    job = TomogramJob("TS_01", {"kind": "mrc", "path": "TS_01.mrc"}, np.zeros((2, 3)), ["p0", "p\udcff"])
    with pytest.raises(InputError, match="particle id 'p\\\\udcff' of tomogram 'TS_01' holds a character UTF-8 cannot encode"):
        check_jobs([job], "picks.csv")


def test_chunks_larger_than_the_array_are_refused(store, capsys):
    """The declared size of a compressed chunk is bounded by the chunk's shape, so that shape is bounded by the array's."""
    edit_json(os.path.join(store, "parts", "00000", "center", ".zarray"), lambda z: z.update(chunks=[10**12, 3]))
    compress_with(store, "center", CODECS[0], bomb(CODECS[0]))
    refused(store, capsys, "center/.zarray: chunks [1000000000000, 3] do not fit shape [3, 3]")
