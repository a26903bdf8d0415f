"""A store is checked before it is read: crafted, damaged or linked stores are one error line, never zeros or a payload."""

import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.data.store import open_store
from autoencoder3d.data.store.store import store_digest, store_from_set
from autoencoder3d.errors import InputError
from autoencoder3d.volume import SubvolumeSet

SIDE = 8


def make_store(path, n=(3, 4), version=1):
    """A real store of two tomograms (``n`` subvolumes each), written by the package's own writer.

    ``version`` 1 (one subvolume per chunk) by default: the refusals below name its chunk files.
    """
    total = sum(n)
    rng = np.random.default_rng(0)
    subvolumes = SubvolumeSet(
        uuids=[f"p{i}" for i in range(total)], volumes=rng.normal(size=(total, SIDE, SIDE, SIDE)).astype(np.float32) + 3,
        centers=rng.integers(8, 50, (total, 3)).astype(float),
        tomograms=np.array(["TS_01"] * n[0] + ["TS_02"] * n[1], dtype=object))
    store_from_set(path, subvolumes, version=version)
    return str(path), subvolumes


def edit_json(path, change):
    value = json.loads(open(path).read())
    change(value)
    open(path, "w").write(json.dumps(value))


def manifest_of(store):
    return os.path.join(store, ".zattrs")


def refused(store, capsys, message):
    """`dataset info` on the store exits 2 with one line naming the problem; open_store raises it too."""
    capsys.readouterr()
    assert main(["dataset", "info", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(InputError, match=re.escape(message)):
        open_store(store)
    return err


class Payload:
    """Unpickling this writes a file: what a hostile pickle codec chunk would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_object_dtype_with_a_pickle_codec_never_reaches_numcodecs(tmp_path, capsys, monkeypatch):
    store, _ = make_store(tmp_path / "s.zarr")
    marker = tmp_path / "payload-ran"
    uuid = os.path.join(store, "parts", "00000", "uuid")
    edit_json(os.path.join(uuid, ".zarray"), lambda z: z.update(dtype="|O", filters=[{"id": "pickle", "protocol": 5}]))
    open(os.path.join(uuid, "0"), "wb").write(pickle.dumps(Payload(str(marker))))
    import numcodecs.pickles

    monkeypatch.setattr(numcodecs.pickles, "ALLOW_UNSAFE_PICKLE_DECODE", True)  # as NUMCODECS_ALLOW_UNSAFE_PICKLE_DECODE=1
    refused(store, capsys, "uuid/.zarray: dtype '|O' is not text of at most 256 characters; refused")
    assert not marker.exists()


@pytest.mark.parametrize("field,value,message", [
    ("compressor", {"id": "pickle"}, "compressor 'pickle' is not one this store uses"),
    ("filters", [{"id": "astype", "encode_dtype": "<f4", "decode_dtype": "<f8"}], "filters"),
    ("dtype", "<i8", "dtype '<i8' is not float32; refused"),
    ("shape", [3, SIDE, SIDE, SIDE + 1], "shape [3, 8, 8, 9], the manifest and box say [3, 8, 8, 8]"),
    ("chunks", [3, SIDE, SIDE, SIDE], "not one subvolume per chunk"),
    ("dimension_separator", "/", "chunk key separator"),
    ("fill_value", "abc", "fill value 'abc' does not fit dtype float32"),
    ("dtype", "<U99999999999999999", "is not float32"),
])
def test_volume_headers_other_than_the_writers_are_refused(tmp_path, capsys, field, value, message):
    store, _ = make_store(tmp_path / "s.zarr")
    edit_json(os.path.join(store, "parts", "00000", "volumes", ".zarray"), lambda z: z.update({field: value}))
    refused(store, capsys, message)


def test_a_deleted_chunk_is_an_error_not_zeros(tmp_path, capsys):
    store, _ = make_store(tmp_path / "s.zarr")
    os.remove(os.path.join(store, "parts", "00001", "volumes", "2.0.0.0"))
    refused(store, capsys, "parts/00001/volumes/2.0.0.0: chunk missing")


def test_a_chunk_deleted_after_opening_is_an_error_not_zeros(tmp_path):
    store, subvolumes = make_store(tmp_path / "s.zarr")
    opened = open_store(store)
    np.testing.assert_array_equal(opened.volumes[[4]], subvolumes.volumes[[4]])
    os.remove(os.path.join(store, "parts", "00001", "volumes", "1.0.0.0"))
    with pytest.raises(InputError, match="parts/00001/volumes/1.0.0.0: chunk missing"):
        opened.volumes[[3, 4]]


@pytest.mark.parametrize("change,message", [
    (lambda m: (m["parts"][0].update(n=4), m["parts"][1].update(n=3)), "shape [3, 8, 8, 8], the manifest and box say [4, 8, 8, 8]"),
    (lambda m: m.update(n_subvolumes=8), "says 8 subvolumes, its parts hold 7"),
    (lambda m: m["parts"][0].update(n=-1), "part 00000 has a count of -1"),
    (lambda m: m["parts"][0].update(n="3"), "part 00000 has a count of '3'"),
    (lambda m: m.update(v_siz=[8, 8]), "box [8, 8] is not three sizes"),
    (lambda m: m.update(version="1"), "version '1' is not a positive integer"),
    (lambda m: m["parts"].reverse(), "part 0 is named '00001', not 00000"),
])
def test_manifests_that_lie_are_refused(tmp_path, capsys, change, message):
    store, _ = make_store(tmp_path / "s.zarr")
    edit_json(manifest_of(store), lambda a: change(a["autoencoder3d"]))
    refused(store, capsys, message)


@pytest.mark.parametrize("name", ["../../other.zarr/parts/00000", "/abs/00000", "00000/../00001"])
def test_part_paths_outside_parts_are_refused(tmp_path, capsys, name):
    other, _ = make_store(tmp_path / "other.zarr")
    store, _ = make_store(tmp_path / "s.zarr")
    target = name.replace("/abs", os.path.join(other, "parts"))
    edit_json(manifest_of(store), lambda a: a["autoencoder3d"]["parts"][0].update(part=target))
    refused(store, capsys, "part 0 is named")


def test_a_symlinked_chunk_is_not_read(tmp_path, capsys):
    store, _ = make_store(tmp_path / "s.zarr")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(SIDE**3, dtype=np.float32).tobytes())  # the right size: read as a subvolume
    chunk = os.path.join(store, "parts", "00000", "volumes", "1.0.0.0")
    os.remove(chunk)
    os.symlink(secret, chunk)
    refused(store, capsys, "volumes/1.0.0.0: a symbolic link inside the store")


@pytest.mark.parametrize("link", ["parts", "parts/00001", "parts/00001/volumes", "parts/00000/uuid/.zarray"])
def test_symlinked_folders_and_headers_are_not_followed(tmp_path, capsys, link):
    store, _ = make_store(tmp_path / "s.zarr")
    real = os.path.join(store, link)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / os.path.basename(link)
    shutil.move(real, moved)
    os.symlink(moved, real)
    refused(store, capsys, f"{link}: a symbolic link inside the store")


def test_store_digest_checks_the_store_first(tmp_path):
    store, _ = make_store(tmp_path / "s.zarr")
    before = store_digest(store)
    os.remove(os.path.join(store, "parts", "00000", "volumes", "0.0.0.0"))
    with pytest.raises(InputError, match="chunk missing"):
        store_digest(store)
    assert before["size"] == 7 * SIDE**3 * 4


def test_a_store_is_checked_once_per_process_until_it_changes(tmp_path, monkeypatch, capsys):
    from autoencoder3d.data.store import trust

    store, _ = make_store(tmp_path / "s.zarr")
    checked = []
    original = trust.check_part
    monkeypatch.setattr(trust, "check_part", lambda *a, **k: (checked.append(a[1]), original(*a, **k)))
    open_store(store)
    store_digest(store)  # a train reads the digest of the store it opened: no second check
    open_store(store)
    assert checked == ["00000", "00001"]
    # a header edited in place after the check (same folder, same file name) is checked again and refused
    edit_json(os.path.join(store, "parts", "00001", "volumes", ".zarray"), lambda meta: meta.update(order="X"))
    with pytest.raises(InputError):
        open_store(store)
    assert checked[2:] == ["00000", "00001"]
