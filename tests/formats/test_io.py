import io
import os
import pickle
import struct

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram, write_mrc
from autoencoder3d.formats.subvolume_pickle import load_pickle, load_subvolumes, save_subvolumes
from tests.conftest import make_subvolume_dict, write_tomogram


def dump(obj, path, protocol=4):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    return str(path)


class Python2StylePickler(pickle._Pickler):
    """Writes bytes and str the way Python 2 did: as 8-bit STRING opcodes, no _codecs.

    Protocol 0 gets Python 2's quoted, escaped ``S'...'`` lines; protocols 1 and 2
    the length-prefixed BINSTRING forms.
    """

    def save_bytes(self, obj):
        self._write_string(obj, obj)

    def save_str(self, obj):
        self._write_string(obj, obj.encode("latin1"))

    def _write_string(self, obj, data):
        if self.proto == 0:
            escaped = "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in data)
            self.write(pickle.STRING + b"'" + escaped.encode("ascii") + b"'\n")
        elif len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(data)) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def test_round_trip_keeps_order_centres_values_and_extras(tmp_path):
    d = make_subvolume_dict(n=5)
    first = load_subvolumes(dump(d, tmp_path / "a.pickle"))
    first.extras["uuid-0002"] = {"rotation": np.eye(3)}
    save_subvolumes(tmp_path / "b.pickle", first)
    second = load_subvolumes(str(tmp_path / "b.pickle"))
    assert second.uuids == list(d["vs"])
    assert second.volumes.dtype == np.float32
    np.testing.assert_array_equal(second.volumes, first.volumes)
    np.testing.assert_array_equal(second.centers, [[20, 20, 20]] * 5)
    np.testing.assert_array_equal(second.extras["uuid-0002"]["rotation"], np.eye(3))
    raw = pickle.load(open(tmp_path / "b.pickle", "rb"))
    assert list(raw["v_siz"]) == [16, 16, 16] and raw["vs"]["uuid-0000"]["id"] == "uuid-0000"


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_every_python3_protocol_loads(tmp_path, protocol):
    d = make_subvolume_dict(n=3)
    loaded = load_subvolumes(dump(d, tmp_path / "p.pickle", protocol))
    np.testing.assert_array_equal(loaded.volumes[1], d["vs"]["uuid-0001"]["v"])


def mixed_dtype_dict(edge=6):
    """Volumes of every voxel type a data pickle may hold, in both byte orders and memory orders."""
    rng = np.random.default_rng(3)
    base = rng.normal(scale=20, size=(edge, edge, edge))
    kinds = {
        "f4-little": base.astype("<f4"), "f4-big": base.astype(">f4"), "f8-big": base.astype(">f8"),
        "f8-fortran": np.asfortranarray(base), "i2-big": base.astype(">i2"), "i2-little": base.astype("<i2"),
        "u1": np.abs(base).astype(np.uint8), "bool": base > 0, "f4-strided": np.repeat(base, 2, axis=0)[::2].astype("f4"),
    }
    vs = {name: {"center": [1, 2.5, np.int64(3)], "id": name, "v": v} for name, v in kinds.items()}
    return {"v_siz": np.array([edge] * 3), "vs": vs}


def python2_pickle(obj, protocol):
    """``obj`` pickled the way Python 2 with numpy 1.x wrote it (8-bit strings, numpy.core names)."""
    buffer = io.BytesIO()
    Python2StylePickler(buffer, protocol=protocol).dump(obj)
    data = buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")
    assert b"_codecs" not in data and b"numpy._core" not in data
    return data


@pytest.mark.parametrize("writer", ["py2-0", "py2-1", "py2-2", "py3-0", "py3-1", "py3-2", "py3-3", "py3-4", "py3-5"])
def test_every_voxel_type_byte_order_and_protocol_loads_exactly(tmp_path, writer):
    d = mixed_dtype_dict()
    version, protocol = writer.split("-")
    path = tmp_path / f"{writer}.pickle"
    path.write_bytes(python2_pickle(d, int(protocol)) if version == "py2" else pickle.dumps(d, protocol=int(protocol)))
    loaded = load_subvolumes(str(path))
    assert loaded.uuids == list(d["vs"])
    for i, record in enumerate(d["vs"].values()):
        np.testing.assert_array_equal(loaded.volumes[i], record["v"].astype(np.float32))
    np.testing.assert_array_equal(loaded.centers, [[1, 2.5, 3]] * len(d["vs"]))


def test_python2_style_pickle_loads(tmp_path):
    d = make_subvolume_dict(n=3)
    path = tmp_path / "py2.pickle"
    path.write_bytes(python2_pickle(d, 2))
    loaded = load_subvolumes(str(path))
    assert loaded.uuids == ["uuid-0000", "uuid-0001", "uuid-0002"]
    np.testing.assert_array_equal(loaded.volumes[2], d["vs"]["uuid-0002"]["v"])


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_round_trips_at_every_protocol(tmp_path, protocol):
    from collections import OrderedDict, defaultdict

    members = defaultdict(list)
    members[0].append("uuid-1")
    obj = {
        "members": members, "ordered": OrderedDict([("b", 1), ("a", 2)]), "set": {1, "x"}, "frozen": frozenset([1, "2", 2.5, b"3", None]),
        "numbers": [None, True, False, -5, 2**63, -(2**100), 1.5, float("inf"), 1 - 2j, np.float32(0.25), np.int64(-7), np.bool_(True)],
        "text": ["", "é∑", b"", b"\x00\xff" * 300, bytearray(b"ab"), b"long" * 40000, (1, 2, 3, b"tail" * 40000), ((1, 2, 3, b"tail" * 40000),)],
        "nested": (((1,),), [[2]]),
        "arrays": [np.zeros((0, 3)), np.array(5.0), np.arange(12, dtype=">u2").reshape(3, 4), np.ones((2, 2), bool),
                   np.eye(3, dtype=np.complex64), np.arange(40000, dtype=np.float32)],
    }
    path = dump(obj, tmp_path / "plain.pickle", protocol)
    loaded = load_pickle(path)
    for key in obj:
        assert same(obj[key], loaded[key]), key
    assert loaded["members"]["new"] == [] and all(a.flags.writeable for a in loaded["arrays"])


class Hostile:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = dump({"v_siz": np.array([4, 4, 4]), "vs": {"a": {"v": Hostile()}}}, tmp_path / "evil.pickle")
    with pytest.raises(InputError, match="refused to load.*(posix|os)\\.system"):
        load_subvolumes(path)
    assert not (tmp_path / "PWNED").exists()


def test_none_volumes_skipped_and_integers_become_float32(tmp_path):
    d = make_subvolume_dict(n=3)
    d["vs"]["uuid-0001"]["v"] = None
    d["vs"]["uuid-0002"]["v"] = np.ones((16, 16, 16), dtype=np.int16)
    d["vs"]["uuid-0002"]["score"] = 0.5
    loaded = load_subvolumes(dump(d, tmp_path / "x.pickle"))
    assert loaded.uuids == ["uuid-0000", "uuid-0002"]
    assert loaded.volumes.dtype == np.float32 and loaded.volumes[1].sum() == 16**3
    assert loaded.extras == {"uuid-0002": {"score": 0.5}}


def bad_cases():
    d = make_subvolume_dict(n=2)
    wrong_shape = make_subvolume_dict(n=2)
    wrong_shape["vs"]["uuid-0001"]["v"] = np.zeros((16, 16, 8), np.float32)
    nan = make_subvolume_dict(n=2)
    nan["vs"]["uuid-0000"]["v"][0, 0, 0] = np.nan
    empty = make_subvolume_dict(n=1)
    empty["vs"]["uuid-0000"]["v"] = None
    return [
        ({"vs": d["vs"]}, "expected a dict with the keys 'v_siz' and 'vs'"),
        ([1, 2, 3], "expected a dict with the keys"),
        (wrong_shape, "subvolume uuid-0001 has shape \\(16, 16, 8\\), but 'v_siz' says \\(16, 16, 16\\)"),
        (nan, "subvolume uuid-0000 contains non-finite voxels"),
        (empty, "no usable subvolumes"),
    ]


@pytest.mark.parametrize("obj,message", bad_cases())
def test_bad_pickles_name_file_and_problem(tmp_path, obj, message):
    path = dump(obj, tmp_path / "bad.pickle")
    with pytest.raises(InputError, match=message) as err:
        load_subvolumes(path)
    assert str(err.value).startswith(path)


def test_missing_file_and_not_a_pickle(tmp_path):
    with pytest.raises(InputError, match="cannot read file"):
        load_subvolumes(str(tmp_path / "nope.pickle"))
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a pickle\n")
    with pytest.raises(InputError, match="not a readable pickle"):
        load_subvolumes(str(text))


def test_tomogram_axes_transposed_and_voxel_size_read(tmp_path):
    zyx = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    import mrcfile

    with mrcfile.new(str(tmp_path / "t.mrc")) as mrc:
        mrc.set_data(zyx)
        mrc.voxel_size = (7.5, 7.5, 7.5)
    tomo = read_tomogram(str(tmp_path / "t.mrc"))
    assert tomo.shape == (4, 3, 2)
    assert tomo.data[3, 2, 1] == zyx[1, 2, 3]
    assert tomo.voxel_size == (7.5, 7.5, 7.5)
    tomo.close()


def test_write_mrc_round_trip_with_voxel_size(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(5, 6, 7))
    write_mrc(tmp_path / "o.mrc", xyz, voxel_size=(4.2, 4.2, 4.2))
    tomo = read_tomogram(str(tmp_path / "o.mrc"))
    np.testing.assert_allclose(tomo.data, xyz.astype(np.float32))
    np.testing.assert_allclose(tomo.voxel_size, (4.2, 4.2, 4.2), rtol=1e-6)
    tomo.close()


def test_2d_image_and_non_mrc_rejected(tmp_path):
    import mrcfile

    with mrcfile.new(str(tmp_path / "micrograph.mrc")) as mrc:
        mrc.set_data(np.zeros((64, 64), np.float32))
    with pytest.raises(InputError, match="2D image.*not a 3D tomogram"):
        read_tomogram(str(tmp_path / "micrograph.mrc"))
    (tmp_path / "junk.rec").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.rec: not a readable MRC file"):
        read_tomogram(str(tmp_path / "junk.rec"))
    with pytest.raises(InputError, match="tomogram file not found"):
        read_tomogram(str(tmp_path / "missing.rec"))
    write_tomogram(tmp_path / "ok.mrc", np.zeros((8, 8, 8)))


def test_messages_about_hostile_values_stay_one_short_line(tmp_path):
    uuid = "line\nbreak" + "u" * 10**6
    d = {"v_siz": np.array([4, 4, 4]), "vs": {uuid: {"center": ["x" * 10**6, 1, 2], "id": uuid, "v": np.zeros((4, 4, 4))}}}
    with pytest.raises(InputError, match="'center' must be three finite numbers") as err:
        load_subvolumes(dump(d, tmp_path / "long.pickle"))
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    d["v_siz"] = [10**6] * 3
    with pytest.raises(InputError, match="not a subvolume size"):
        load_subvolumes(dump(d, tmp_path / "huge.pickle"))
