"""Crafted pickles that attack the loader, built from raw opcodes right here.

Each one uses only names a data pickle legitimately needs (numpy's array and
dtype rebuilders, ``_codecs.encode``, builtins) and is loaded by the real
command line in a child process with a 2 GB address-space limit and a
timeout, so that a segmentation fault, a memory bomb or a hang fails the test
instead of taking pytest down. Every case must end with exit status 2 and one
short line that names the file and the real problem.
"""

import os
import resource
import struct
import subprocess
import sys

import numpy as np
import pytest

ADDRESS_SPACE_LIMIT = 2 * 1024**3
TIMEOUT_S = 60
MAX_MESSAGE = 400


# ---------------------------------------------------------------- opcode builders


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value):
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def raw(value):
    return b"B" + struct.pack("<I", len(value)) + value


def integer(value):
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<I", len(data)) + data


def tuple_of(*items):
    return b"(" + b"".join(items) + b"t"


def list_of(*items):
    return b"]" + (b"(" + b"".join(items) + b"e" if items else b"")


def dict_of(*pairs):
    return b"}" + b"(" + b"".join(k + v for k, v in pairs) + b"u"


def call(func, *args):
    return func + tuple_of(*args) + b"R"


def build(obj, state):
    return obj + state + b"b"


def pickle_of(body):
    return b"\x80\x04" + body + b"."


def dtype(spec, state_flags=0, names=b"N", fields=b"N", elsize=-1, alignment=-1, endian="<"):
    made = call(glob("numpy", "dtype"), text(spec), b"\x89", b"\x88")
    state = tuple_of(integer(3), text(endian), b"N", names, fields, integer(elsize), integer(alignment), integer(state_flags))
    return build(made, state)


def array(shape, dtype_ops, data):
    made = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), tuple_of(integer(0)), raw(b"b"))
    state = tuple_of(integer(1), tuple_of(*(integer(n) for n in shape)), dtype_ops, b"\x89", raw(data))
    return build(made, state)


def published(v=None, v_siz=None, center=None, key=None):
    """The published format around one hostile part (the rest is a valid 4^3 float32 subvolume)."""
    v = array((4, 4, 4), dtype("f4"), bytes(256)) if v is None else v
    v_siz = array((3,), dtype("i8"), struct.pack("<3q", 4, 4, 4)) if v_siz is None else v_siz
    center = list_of(integer(1), integer(2), integer(3)) if center is None else center
    key = text("uuid-1") if key is None else key
    record = dict_of((text("center"), center), (text("id"), text("uuid-1")), (text("v"), v))
    return pickle_of(dict_of((text("v_siz"), v_siz), (text("vs"), dict_of((key, record)))))


def deep_tuple(depth):
    return b")" + b"\x85" * depth


def billion_laughs(levels=9, fan_out=10):
    """A list of lists, each level holding ``fan_out`` memo references to the one below (plus a string)."""
    ops = list_of(text("lol")) + b"p0\n0"
    for level in range(1, levels + 1):
        ops += list_of(*[b"g%d\n" % (level - 1)] * fan_out, text("x")) + b"p%d\n0" % level
    return ops + b"g%d\n" % levels


# ---------------------------------------------------------------- the corpus


def object_field_dtype():
    """A structured dtype whose one field is a Python object (the pointer comes from the file's bytes)."""
    fields = dict_of((text("a"), tuple_of(dtype("O8", state_flags=63, endian="|"), integer(0))))
    return dtype("V8", state_flags=16, names=tuple_of(text("a")), fields=fields, elsize=8, alignment=1, endian="|")


def out_of_bounds_field_dtype():
    fields = dict_of((text("a"), tuple_of(dtype("f8"), integer(2**20))))
    return dtype("V8", state_flags=16, names=tuple_of(text("a")), fields=fields, elsize=8, alignment=1, endian="|")


def chained_hex(times):
    ops = raw(b"A" * 8)
    for _ in range(times):
        ops = call(glob("_codecs", "encode"), ops, text("hex_codec"))
    return ops


def stride_zero_volume():
    """ndarray((1000, 1000, 1000), float64, 8 bytes, 0, (0, 0, 0)): 10^9 voxels from one value."""
    shape = tuple_of(integer(1000), integer(1000), integer(1000))
    strides = tuple_of(integer(0), integer(0), integer(0))
    return call(glob("numpy", "ndarray"), shape, dtype("f8"), raw(b"\x00" * 8), integer(0), strides)


def colliding_complex_keys(n):
    """A dict whose keys complex(-1000003 * i, i) all have hash 0: filling it takes quadratic time."""
    ops = glob("builtins", "complex") + b"p0\n0}("
    for i in range(1, n + 1):
        ops += b"g0\n" + b"G" + struct.pack(">d", -1000003.0 * i) + b"G" + struct.pack(">d", float(i)) + b"\x86R" + b"N"
    return ops + b"u"


def corpus():
    big = array((3,), dtype("i8"), struct.pack("<3q", 10**6, 10**6, 10**6))
    cases = {
        "object-field-dtype": (published(center=array((1,), object_field_dtype(), b"A" * 8)), "dtype"),
        "field-out-of-bounds": (published(center=array((1,), out_of_bounds_field_dtype(), b"\0" * 8)), "dtype"),
        "deep-tuple-dict-key": (published(key=deep_tuple(200_000)), "nested"),
        "deep-tuple-frozenset": (published(center=b"(" + deep_tuple(200_000) + b"\x91"), "nested"),
        "deep-tuple-v-siz": (published(v_siz=deep_tuple(200_000)), "nested"),
        "deep-tuple-center": (published(center=deep_tuple(200_000)), "nested"),
        "hex-codec-chain": (published(v=chained_hex(34)), "codec"),
        "stride-zero-volume": (published(v=stride_zero_volume(), v_siz=list_of(*[integer(1000)] * 3)), "numpy.ndarray"),
        "billion-laughs": (published(center=billion_laughs()), "shared references"),
        "bytes-2**70": (published(v=call(glob("builtins", "bytes"), integer(2**70))), "bytes"),
        "v-siz-10**6-cubed": (published(v_siz=big), "v_siz"),
        "unknown-codec": (published(v=call(glob("_codecs", "encode"), raw(b"x"), text("no_such_codec"))), "codec"),
        "str-zlib-codec": (published(v=call(glob("builtins", "str"), raw(b"x" * 64), text("zlib_codec"))), "builtins.str"),
        "deep-list-center": (published(center=b"]" * 200_000 + b"a" * 199_999), "nested"),
        "cyclic-list-center": (published(center=b"]p0\ng0\na"), "inside itself"),
        "length-claim-2**60": (published(v=b"\x8e" + struct.pack("<Q", 2**60) + b"x" * 8), "past the end"),
        "huge-integer-v-siz": (published(v_siz=list_of(integer(7**400_000), integer(4), integer(4))), "integer"),
        "colliding-dict-keys": (published(center=colliding_complex_keys(100_000)), "key"),
        "shared-string-bomb": (published(center=text("x" * 2**20) + b"p0\n0" + list_of(*[b"g0\n"] * 20_000)), "shared references"),
    }
    return cases


CASES = corpus()


def _limit_resources():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def load_in_child(path, workdir):
    """Run ``autoencoder3d pose PATH`` (which loads the pickle first) in a limited child process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="")
    command = [sys.executable, "-m", "autoencoder3d", "pose", str(path), "missing-tomogram.mrc", "out.pickle"]
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, errors="replace",
        timeout=TIMEOUT_S, preexec_fn=_limit_resources,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_crafted_pickle_is_refused_in_one_short_line(tmp_path, name):
    data, reason = CASES[name]
    path = tmp_path / f"{name}.pickle"
    path.write_bytes(data)
    result = load_in_child(path, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert len(lines) == 1 and len(lines[0]) <= MAX_MESSAGE, result.stderr[:2000]
    assert str(path) in lines[0] and "Traceback" not in result.stderr
    assert reason in lines[0], lines[0]
    assert "not enough memory" not in lines[0]
    assert not (tmp_path / "out.pickle").exists()


# ---------------------------------------------------------------- mechanism checks, in-process

SMALL_CASES = {
    "name-as-data": (pickle_of(list_of(glob("numpy", "ndarray"))), "refused to load: .*'numpy.ndarray' as data"),
    "changed-after-nesting": (pickle_of(b"]p0\n" + list_of(b"g0\n") + b"0g0\n" + integer(1) + b"a"), "changes a list after"),
    "reduce-from-tuple": (pickle_of(call(glob("collections", "OrderedDict"), tuple_of(tuple_of(text("k"), glob("numpy", "dtype"))))), "expected a list"),
    "newobj": (pickle_of(glob("builtins", "set") + b")\x81"), "instruction NEWOBJ"),
    "inst": (b"(i__builtin__\nset\n.", "instruction INST"),
    "truncated": (pickle_of(list_of(integer(1)))[:-3], "not a readable pickle"),
    "memo-never-stored": (pickle_of(b"g7\n"), "not a readable pickle .*memo entry 7"),
    "build-on-a-list": (pickle_of(b"]" + dict_of() + b"b"), "sets the state of"),
    "text-dtype": (pickle_of(array((1,), dtype("U1"), b"\0" * 4)), "dtype 'U1'"),
    "dtype-with-subarray-state": (pickle_of(array((1,), dtype("f4", names=tuple_of(text("a"))), b"\0" * 4)), "more than its byte order"),
    "data-shorter-than-shape": (pickle_of(array((1000, 1000), dtype("f8"), b"\0" * 8)), "holds 8 bytes, but shape"),
    "tuple-dict-key": (pickle_of(dict_of((tuple_of(integer(1)), integer(2)))), "only text, bytes and numbers"),
}


@pytest.mark.parametrize("name", sorted(SMALL_CASES))
def test_small_crafted_pickles_refused_in_process(tmp_path, name):
    from autoencoder3d.errors import InputError
    from autoencoder3d.formats.subvolume_pickle import load_pickle

    data, pattern = SMALL_CASES[name]
    path = tmp_path / f"{name}.pickle"
    path.write_bytes(data)
    with pytest.raises(InputError, match=pattern) as err:
        load_pickle(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_one_byte_string_used_by_two_arrays_gives_two_separate_arrays(tmp_path):
    """A long byte string becomes the first array's memory; a second array from it gets a copy."""
    from autoencoder3d.formats.subvolume_pickle import load_pickle

    data = struct.pack("<8192d", *range(8192))
    made = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), tuple_of(integer(0)), raw(b"b"))
    first_state = tuple_of(integer(1), tuple_of(integer(8192)), dtype("f8"), b"\x89", raw(data) + b"p8\n")
    second_state = tuple_of(integer(1), tuple_of(integer(8192)), dtype("f8"), b"\x89", b"g8\n")
    path = tmp_path / "shared.pickle"
    path.write_bytes(pickle_of(list_of(build(made, first_state), build(made, second_state))))
    a, b = load_pickle(path)
    assert a.flags.writeable and b.flags.writeable and not np.shares_memory(a, b)
    a[0] = -1
    assert b[0] == 0 and b[-1] == 8191
