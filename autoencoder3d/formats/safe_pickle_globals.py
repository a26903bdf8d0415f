"""The few names a data pickle may use, each one rebuilt here with its input checked.

Used by :mod:`autoencoder3d.formats.safe_pickle`. Nothing from the pickle reaches numpy's
own ``__setstate__`` or a codec lookup: arrays are rebuilt with
:func:`numpy.frombuffer` from bytes that hold exactly their elements, dtypes
come from a fixed list of numeric type codes, and the only codec is the one
Python 3 uses for bytes at protocols 0-2 (latin1).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from ..errors import brief

# Numeric and bool type codes (itemsize included) that an array or scalar may have.
ALLOWED_TYPE_CODES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
)
MAX_DIMENSIONS = 32
BYTE_ORDERS = {"<": "<", ">": ">", "=": "=", "|": "|"}


class PickleError(Exception):
    """The pickle cannot be loaded; the message is short and names the problem."""


class NotAPickle(PickleError):
    """The file is not a well-formed pickle (truncated, garbled, or another format)."""


class RefusedPickle(PickleError):
    """The pickle asks for something a data pickle never needs, or exceeds a limit."""


class Global:
    """A name the pickle may refer to.

    Attributes:
        qualname: ``module.name`` as it appears in pickles.
        call: builds the object from a REDUCE argument tuple, or None when the
            name may only be passed as an argument (``numpy.ndarray``).
        value: what the name stands for when a container keeps it (a
            ``defaultdict`` factory), or None.
    """

    def __init__(self, qualname: str, call: Callable[[Any], object] | None = None, value: type | None = None):
        self.qualname, self.call, self.value = qualname, call, value


class Payload:
    """A long byte string read straight into writable memory, so an array can use it without a copy.

    Only the data of an array's BUILD state stays a Payload; anywhere else it
    becomes ``bytes``. The first array to use it takes the buffer; any later
    use gets a copy, so no two arrays share memory.
    """

    __slots__ = ("buffer", "claimed")

    def __init__(self, buffer: bytearray):
        self.buffer, self.claimed = buffer, False

    def __len__(self):
        return len(self.buffer)

    def claim(self) -> bytes | bytearray:
        if self.claimed:
            return bytes(self.buffer)
        self.claimed = True
        return self.buffer


class PendingArray:
    """An array announced by ``_reconstruct``; its BUILD state brings shape, dtype and data."""

    def __init__(self):
        self.value = None

    def build(self, state: object) -> None:
        if self.value is not None:
            raise RefusedPickle("an array is given its contents twice")
        self.value = _array_from_state(state)


class PendingDtype:
    """A dtype announced by ``numpy.dtype(code)``; its BUILD state may only set the byte order."""

    def __init__(self, base: np.dtype):
        self.base, self.value = base, None

    def build(self, state: object) -> None:
        if self.value is not None:
            raise RefusedPickle("a dtype is given its state twice")
        self.value = _dtype_from_state(self.base, state)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_flag(value):
    return isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1))


def _latin1_bytes(value, what):
    """Raw bytes from a Python 3 ``bytes``/``bytearray`` or a Python 2 string read as latin1."""
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin1")
        except UnicodeEncodeError:
            raise RefusedPickle(f"{what} is text with characters beyond latin1, not raw bytes") from None
    raise RefusedPickle(f"{what} must be raw bytes, got {brief(value)}")


def check_key(value: object) -> Hashable:
    """``value`` if it may be a dict key or set member: text, bytes or a number of at most 64 bits.

    Python hashes these so that a pickle cannot make many keys collide (tuples,
    frozensets and complex numbers can be crafted to, which makes filling a
    dict take quadratic time).
    """
    if isinstance(value, (str, bytes, float, bool, np.bool_, np.floating)) or value is None:
        return value
    if _is_int(value) and -(2**64) < int(value) < 2**64:
        return value
    raise RefusedPickle(f"a dict key or set member {brief(value)}: only text, bytes and numbers of at most 64 bits can be keys")


def _args(args, name, counts):
    if not isinstance(args, tuple) or len(args) not in counts:
        raise RefusedPickle(f"{name} is called with {brief(args)}, which is not what a data pickle passes")
    return args


def check_dtype(value: object) -> np.dtype:
    """The dtype itself if it is a plain numeric or bool dtype, else RefusedPickle."""
    if isinstance(value, PendingDtype):
        value = value.value
    if not isinstance(value, np.dtype):
        raise RefusedPickle(f"expected a numpy dtype, got {brief(value)}")
    code = f"{value.kind}{value.itemsize}"
    if code not in ALLOWED_TYPE_CODES or value.fields is not None or value.subdtype is not None or value.metadata:
        raise RefusedPickle(f"dtype {brief(str(value))} is not a plain numeric or bool dtype (structured, object, void and text dtypes are refused)")
    return value


def _make_dtype(args):
    code, align, copy = _args(args, "numpy.dtype", (3,))
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or code not in ALLOWED_TYPE_CODES or not (_is_flag(align) and _is_flag(copy)):
        raise RefusedPickle(f"dtype {brief(code)} is not a plain numeric or bool dtype (structured, object, void and text dtypes are refused)")
    return PendingDtype(np.dtype(code))


def _dtype_from_state(base, state):
    """numpy's dtype state: (3, byte order, None, None, None, -1, -1, 0), or version 4 with metadata None."""
    plain = isinstance(state, tuple) and (
        (len(state) == 8 and state[0] == 3) or (len(state) == 9 and state[0] == 4 and state[8] is None)
    )
    if plain:
        order, subarray, names, fields, elsize, alignment, flags = state[1:8]
        plain = (
            isinstance(order, str) and order in BYTE_ORDERS
            and subarray is None and names is None and fields is None
            and elsize in (-1, base.itemsize) and alignment in (-1, base.alignment) and _is_int(flags) and flags == 0
        )
    if not plain:
        raise RefusedPickle(f"the state of dtype {base} sets more than its byte order (structured, object and sub-array dtypes are refused)")
    return base if order in "|=" or base.itemsize == 1 else base.newbyteorder(order)


def _shape(value):
    if not isinstance(value, tuple) or len(value) > MAX_DIMENSIONS or not all(_is_int(n) and 0 <= n < 2**62 for n in value):
        raise RefusedPickle(f"an array shape must be at most {MAX_DIMENSIONS} non-negative integers, got {brief(value)}")
    return tuple(int(n) for n in value)


def _array_from_bytes(data, dtype, shape, fortran):
    """An array whose data are exactly the elements ``data`` holds (no stride tricks).

    A ``bytearray`` becomes the array's memory; immutable ``bytes`` are copied,
    so that the array is writable like one numpy itself unpickles.
    """
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data):
        raise RefusedPickle(
            f"array data holds {len(data)} bytes, but shape {brief(shape)} of {dtype} needs {count * dtype.itemsize}"
        )
    order = "F" if fortran else "C"
    if count == 0:
        return np.zeros(shape, dtype=dtype, order=order)
    flat = np.frombuffer(data, dtype=dtype, count=count)
    array = flat.reshape(shape, order=order)
    return array if isinstance(data, bytearray) else array.copy(order="K")


def _array_from_state(state):
    """numpy's array state: (1, shape, dtype, is_fortran, raw bytes), or the older form without the 1."""
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise RefusedPickle(f"an array's state must be (shape, dtype, is_fortran, data), got {brief(state)}")
    shape, dtype, fortran, data = state
    if isinstance(data, list):
        raise RefusedPickle("the pickle holds an array of Python objects; only numeric arrays are accepted")
    if not _is_flag(fortran):
        raise RefusedPickle(f"an array's Fortran-order flag must be True or False, got {brief(fortran)}")
    if isinstance(data, Payload):
        data = data.claim()
    elif isinstance(data, str):  # Python 2: the raw bytes as a latin1-decoded string
        data = bytearray(_latin1_bytes(data, "array data"))
    return _array_from_bytes(_latin1_bytes(data, "array data"), check_dtype(dtype), _shape(shape), bool(fortran))


def _reconstruct(args):
    cls, shape, typecode = _args(args, "numpy _reconstruct", (3,))
    if cls is not NDARRAY or not isinstance(shape, tuple) or typecode not in (b"b", "b"):
        raise RefusedPickle(f"numpy _reconstruct is called with {brief(args)}; only numpy.ndarray, (0,), b'b' is accepted")
    return PendingArray()


def _frombuffer(args):
    """Protocol 5 in-band arrays: _frombuffer(bytes or bytearray, dtype, shape, order)."""
    data, dtype, shape, order = _args(args, "numpy _frombuffer", (4,))
    if not isinstance(data, (bytes, bytearray)) or order not in ("C", "F"):
        raise RefusedPickle(f"numpy _frombuffer is called with {brief(args)}")
    return _array_from_bytes(data, check_dtype(dtype), _shape(shape), order == "F")


def _scalar(args):
    dtype, data = _args(args, "numpy scalar", (2,))
    dtype = check_dtype(dtype)
    data = _latin1_bytes(data, "a numpy scalar")
    if len(data) != dtype.itemsize:
        raise RefusedPickle(f"a numpy {dtype} scalar needs {dtype.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(args):
    """Python 3 writes bytes at protocols 0-2 as _codecs.encode(text, 'latin1'); nothing else is accepted."""
    text, codec = _args(args, "_codecs.encode", (2,))
    if codec != "latin1":
        raise RefusedPickle(f"_codecs.encode with codec {brief(codec)}: only 'latin1' (how Python writes bytes) is accepted")
    if not isinstance(text, str):
        raise RefusedPickle(f"_codecs.encode of {brief(text)}: expected text")
    return _latin1_bytes(text, "_codecs.encode's text")


def _bytes_like(kind):
    def build(args):
        _args(args, f"builtins.{kind.__name__}", (0, 1))
        if args and not isinstance(args[0], (bytes, bytearray)):
            raise RefusedPickle(f"builtins.{kind.__name__} of {brief(args[0])}: only bytes are accepted")
        return kind(*args)

    return build


def _items(value, name):
    """The list a set, frozenset or OrderedDict is made from (a list holds only finished data)."""
    if not isinstance(value, list):
        raise RefusedPickle(f"{name} of {brief(value)}: expected a list")
    return value


def _set_like(kind):
    def build(args):
        _args(args, f"builtins.{kind.__name__}", (0, 1))
        return kind(check_key(item) for item in (_items(args[0], f"builtins.{kind.__name__}") if args else ()))

    return build


def _complex(args):
    real, imag = _args(args, "builtins.complex", (2,))
    if not all(isinstance(part, (int, float)) and not isinstance(part, bool) for part in (real, imag)):
        raise RefusedPickle(f"builtins.complex of {brief(args)}: expected two numbers")
    return complex(real, imag)


def _ordered_dict(args):
    _args(args, "collections.OrderedDict", (0, 1))
    pairs = _items(args[0], "collections.OrderedDict") if args else ()
    if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
        raise RefusedPickle("collections.OrderedDict needs a list of (key, value) pairs")
    for key, _ in pairs:
        check_key(key)
    return collections.OrderedDict(pairs)


def _defaultdict(args):
    _args(args, "collections.defaultdict", (0, 1))
    factory = args[0] if args else None
    if factory is not None and not (isinstance(factory, Global) and factory.value is not None):
        raise RefusedPickle(f"collections.defaultdict with factory {brief(factory)}: only list, dict, set, int or float")
    return collections.defaultdict(factory.value if factory is not None else None)


NDARRAY = Global("numpy.ndarray")


def _admitted():
    names = [
        NDARRAY,
        Global("numpy.dtype", _make_dtype),
        Global("_codecs.encode", _codecs_encode),
        Global("builtins.set", _set_like(set), set),
        Global("builtins.frozenset", _set_like(frozenset)),
        Global("builtins.bytes", _bytes_like(bytes)),
        Global("builtins.bytearray", _bytes_like(bytearray)),
        Global("builtins.complex", _complex),
        Global("builtins.list", value=list),
        Global("builtins.dict", value=dict),
        Global("builtins.int", value=int),
        Global("builtins.float", value=float),
        Global("collections.OrderedDict", _ordered_dict),
        Global("collections.defaultdict", _defaultdict),
    ]
    for core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell the module differently
        names.append(Global(f"{core}.multiarray._reconstruct", _reconstruct))
        names.append(Global(f"{core}.multiarray.scalar", _scalar))
        names.append(Global(f"{core}.numeric._frombuffer", _frombuffer))
    return {g.qualname: g for g in names}


ADMITTED = _admitted()
PYTHON2_MODULES = {"__builtin__": "builtins"}


def find_global(module: str, name: str) -> Global:
    """The admitted :class:`Global` for ``module.name`` (Python 2 spellings included), else RefusedPickle."""
    module = PYTHON2_MODULES.get(module, module)
    found = ADMITTED.get(f"{module}.{name}")
    if found is None:
        raise RefusedPickle(
            f"the pickle asks for '{brief(module, 60, quote=False)}.{brief(name, 60, quote=False)}', which a data pickle never needs "
            "(pickles can run code; only numpy arrays, numbers, strings and containers are accepted)"
        )
    return found
