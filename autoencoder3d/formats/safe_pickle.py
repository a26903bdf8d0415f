"""A pickle reader for data pickles: plain data only, within limits that the file's size sets.

Python's unpickler calls whatever a pickle names. Restricting the names is
not enough: numpy's array and dtype rebuilders and the codec registry, used
with crafted arguments, crash the process, read memory out of bounds or
allocate without bound. So this module runs the pickle instructions itself
(protocols 0 to 5, Python 2 or 3) and builds only:

- None, bools, integers up to 128 bits, floats, complex numbers, strings, bytes;
- lists, tuples, dicts (also OrderedDict and defaultdict), sets and frozensets;
- numpy arrays, scalars and dtypes of numeric or bool type, each rebuilt by
  :mod:`autoencoder3d.formats.safe_pickle_globals` from bytes that hold exactly its elements.

Limits: nesting at most ``MAX_DEPTH`` levels; the data seen as a tree (a shared
reference counted each time it appears, strings and arrays by their bytes) at
most ``EXPANSION_FLOOR + EXPANSION_FACTOR * file size`` bytes; every length in
the file is checked against the bytes left before anything is read. A
container cannot be changed once it is inside another object, so nothing can
contain itself and nesting is known exactly as it grows. Dict keys and set
members are text, bytes or numbers of at most 64 bits, whose hashes a pickle
cannot make collide.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from ..errors import brief
from .safe_pickle_globals import Global, NotAPickle, Payload, PendingArray, PendingDtype, RefusedPickle, check_key
from .safe_pickle_scalars import MAX_INT_BITS, MAX_NAME_TEXT, MAX_NUMBER_TEXT, ScalarReader  # noqa: F401 - the limits are this reader's

MAX_DEPTH = 100
EXPANSION_FLOOR = 64 * 2**20
EXPANSION_FACTOR = 4
PAYLOAD_MIN = 64 * 2**10  # byte strings at least this long are read as a Payload
ATOM_WEIGHT = 8
HIGHEST_PROTOCOL = 5

REFUSED_INSTRUCTIONS = {
    b"i": "INST", b"o": "OBJ", b"\x81": "NEWOBJ", b"\x92": "NEWOBJ_EX", b"\x82": "EXT1", b"\x83": "EXT2",
    b"\x84": "EXT4", b"P": "PERSID", b"Q": "BINPERSID", b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER",
}


def load(handle: BinaryIO, size: int) -> Any:
    """Read one pickle from the binary file ``handle`` of ``size`` bytes.

    Raises:
        NotAPickle: the bytes are not a well-formed pickle.
        RefusedPickle: the pickle asks for anything beyond plain data, or exceeds a limit.
    """
    return _Machine(handle, size).run()


class _Info:
    """What is known about a container: nesting depth, size as a tree, whether it may still change."""

    __slots__ = ("depth", "weight", "open", "special")

    def __init__(self, depth, weight, is_open, special):
        self.depth, self.weight, self.open, self.special = depth, weight, is_open, special


def _is_unfinished(item):
    """Names and unbuilt arrays/dtypes: allowed only as call arguments, never as data."""
    return isinstance(item, Global) or (isinstance(item, (PendingArray, PendingDtype)) and item.value is None)


class _Machine(ScalarReader):
    def __init__(self, handle, size):
        self._handle = handle
        self._left = size
        self._budget = EXPANSION_FLOOR + EXPANSION_FACTOR * size
        self._stack, self._metastack, self._memo = [], [], {}
        self._info = {}  # id -> _Info of every container and tuple built
        self._keep = []  # holds what _info describes, so that no id is reused
        self._dispatch = self._instructions()

    # ------------------------------------------------------------ reading the file

    def _read(self, n):
        if n > self._left:
            raise NotAPickle(f"a length of {n} bytes points past the end of the file ({self._left} bytes left)")
        data = self._handle.read(n)
        if len(data) != n:
            raise NotAPickle("the file ends in the middle of the pickle")
        self._left -= n
        return data

    def _read_bytes(self, n):
        """A BINBYTES payload: ``bytes``, or a :class:`Payload` when long (array data need no copy then)."""
        if n < PAYLOAD_MIN:
            return self._read(n)
        if n > self._left:
            raise NotAPickle(f"a length of {n} bytes points past the end of the file ({self._left} bytes left)")
        buffer = bytearray(n)
        if self._handle.readinto(buffer) != n:
            raise NotAPickle("the file ends in the middle of the pickle")
        self._left -= n
        return Payload(buffer)

    def _unpack(self, fmt):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _readline(self, limit=None):
        line = self._handle.readline(-1 if limit is None else limit + 1)
        self._left -= len(line)
        if not line.endswith(b"\n"):
            if limit is not None and len(line) > limit:
                raise NotAPickle(f"a number or name longer than {limit} characters")
            raise NotAPickle("the file ends in the middle of the pickle")
        return line[:-1]

    def run(self):
        while True:
            if self._left <= 0:
                raise NotAPickle("the file ends before the pickle does")
            op = self._read(1)
            if op == b".":
                return self._take(self._pop())
            handler = self._dispatch.get(op)
            if handler is None:
                if op in REFUSED_INSTRUCTIONS:
                    raise RefusedPickle(f"the pickle uses the instruction {REFUSED_INSTRUCTIONS[op]}, which a data pickle never needs")
                raise NotAPickle(f"byte {op!r} at offset {self._offset() - 1} is not a pickle instruction")
            handler()

    def _offset(self):
        return self._handle.tell()

    # ------------------------------------------------------------ the stack

    def _push(self, value):
        self._stack.append(value)

    def _pop(self):
        if not self._stack:
            raise NotAPickle("the pickle takes more from its stack than it put there")
        return self._stack.pop()

    def _mark(self):
        self._metastack.append(self._stack)
        self._stack = []

    def _pop_mark(self):
        if not self._metastack:
            raise NotAPickle("the pickle closes a MARK it never opened")
        items, self._stack = self._stack, self._metastack.pop()
        return items

    # ------------------------------------------------------------ sizes, depth, sealing

    def _measure(self, value):
        info = self._info.get(id(value))
        if info is not None:
            return info.depth, info.weight
        if isinstance(value, (str, bytes, bytearray, Payload)):
            return 0, ATOM_WEIGHT + len(value)
        nbytes = getattr(value, "nbytes", 0)
        return 0, ATOM_WEIGHT + (nbytes if isinstance(nbytes, int) else 0)

    def _check(self, depth, weight):
        if depth > MAX_DEPTH:
            raise RefusedPickle(f"the data are nested deeper than {MAX_DEPTH} levels")
        if weight > self._budget:
            raise RefusedPickle(
                f"the data expand through shared references to more than {self._budget // 2**20} MiB "
                f"(the file has {(self._budget - EXPANSION_FLOOR) // EXPANSION_FACTOR} bytes)"
            )

    def _register(self, value, items, is_open, special=False):
        measures = [self._measure(item) for item in items]
        depth = 1 + max((d for d, _ in measures), default=0)
        weight = ATOM_WEIGHT + sum(w for _, w in measures)
        self._check(depth, weight)
        self._info[id(value)] = _Info(depth, weight, is_open, special)
        self._keep.append(value)
        return value

    def _take(self, item, allow_unfinished=False):
        """``item`` as it goes inside another object: a built array or dtype becomes its value; a container is sealed."""
        if isinstance(item, (PendingArray, PendingDtype)) and item.value is not None:
            return item.value
        if isinstance(item, Payload):
            return bytes(item.buffer)
        info = self._info.get(id(item))
        if info is not None and info.special == "payload":  # only a BUILD takes an array state as it is
            item = self._register(item[:-1] + (bytes(item[-1].buffer),), list(item[:-1]) + [item[-1]], is_open=False)
            info = self._info[id(item)]
        if not allow_unfinished and (_is_unfinished(item) or (info is not None and info.special)):
            what = f"'{item.qualname}'" if isinstance(item, Global) else "an unfinished array or dtype"
            raise RefusedPickle(f"the pickle stores {what} as data, which a data pickle never does")
        if info is not None:
            info.open = False
        return item

    def _add(self, container, items, kinds, what):
        info = self._info.get(id(container))
        if not isinstance(container, kinds) or info is None:
            raise RefusedPickle(f"the pickle adds {what} to {brief(container)}")
        if not info.open:
            raise RefusedPickle(f"the pickle changes a {type(container).__name__} after putting it inside another object")
        taken = [self._take(item) for item in items]
        if any(item is container for item in taken):
            raise RefusedPickle(f"the pickle puts a {type(container).__name__} inside itself")
        measures = [self._measure(item) for item in taken]
        info.depth = max([info.depth] + [d + 1 for d, _ in measures])
        info.weight += sum(w for _, w in measures)
        self._check(info.depth, info.weight)
        info.open = True
        return taken

    def _extend(self, container, items):
        container.extend(self._add(container, items, list, "items"))

    def _set_items(self, container, items):
        if len(items) % 2:
            raise NotAPickle("an odd number of items for a dict's keys and values")
        taken = self._add(container, items, dict, "keys and values")
        for key, value in zip(taken[::2], taken[1::2]):
            container[check_key(key)] = value

    def _add_to_set(self, container, items):
        taken = self._add(container, items, set, "items")
        container.update(check_key(item) for item in taken)

    def _new_tuple(self, items):
        """A tuple; a long byte string stays a Payload only as the data of an array state (its last item)."""
        keep_payload = len(items) in (4, 5) and isinstance(items[-1], Payload)
        head = items[:-1] if keep_payload else items
        taken = [self._take(item, allow_unfinished=True) for item in head]
        special = any(_is_unfinished(item) or getattr(self._info.get(id(item)), "special", False) for item in taken)
        special = special or ("payload" if keep_payload else False)
        if keep_payload:
            taken.append(items[-1])
        return self._register(tuple(taken), taken, is_open=False, special=special)

    def _new_frozenset(self, items):
        taken = [check_key(self._take(item)) for item in items]
        return self._register(frozenset(taken), taken, is_open=False)

    def _registered_result(self, value):
        """Register a container made by an admitted call (its items were already sealed)."""
        if isinstance(value, (set, dict, list)):
            items = [x for pair in value.items() for x in pair] if isinstance(value, dict) else list(value)
            return self._register(value, items, is_open=True)
        if isinstance(value, frozenset):
            return self._register(value, list(value), is_open=False)
        return value

    # ------------------------------------------------------------ calls and state

    def _reduce(self):
        args = self._pop()
        func = self._pop()
        if not isinstance(func, Global):
            raise RefusedPickle(f"the pickle calls {brief(func)}, which is not a function")
        if func.call is None:
            raise RefusedPickle(f"the pickle calls '{func.qualname}', which a data pickle never calls")
        if not isinstance(args, tuple):
            raise RefusedPickle(f"'{func.qualname}' is called with {brief(args)} instead of an argument tuple")
        try:
            result = func.call(args)
        except (ValueError, TypeError, OverflowError) as err:
            raise RefusedPickle(f"'{func.qualname}' fails on its arguments ({type(err).__name__}: {brief(str(err), 100, quote=False)})") from None
        self._push(self._registered_result(result))

    def _build(self):
        state = self._pop()
        if not self._stack or not isinstance(self._stack[-1], (PendingArray, PendingDtype)):
            target = brief(self._stack[-1]) if self._stack else "nothing"
            raise RefusedPickle(f"the pickle sets the state of {target}, which a data pickle never does")
        try:
            self._stack[-1].build(state)
        except (ValueError, TypeError, OverflowError) as err:
            raise RefusedPickle(f"an array or dtype cannot be rebuilt ({type(err).__name__}: {brief(str(err), 100, quote=False)})") from None

    # ------------------------------------------------------------ memo

    def _memo_get(self, index):
        if index not in self._memo:
            raise NotAPickle(f"the pickle refers to memo entry {index}, which it never stored")
        self._push(self._memo[index])

    def _memo_put(self, index):
        if not self._stack:
            raise NotAPickle("the pickle stores an empty stack in its memo")
        self._memo[index] = self._stack[-1]

    def _memo_index_text(self):
        line = self._readline(MAX_NUMBER_TEXT)
        try:
            return int(line)
        except ValueError:
            raise NotAPickle(f"{brief(line)} is not a memo index") from None

    def _protocol(self):
        version = self._read(1)[0]
        if version > HIGHEST_PROTOCOL:
            raise NotAPickle(f"pickle protocol {version} is newer than this Python reads")

    def _pop_top(self):
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    # ------------------------------------------------------------ the instruction table

    def _instructions(self):
        push, read, unpack = self._push, self._read, self._unpack

        def pushing(make):
            return lambda: push(make())

        table = {
            b"\x80": self._protocol,
            b"\x95": lambda: read(8),  # FRAME: a length hint only
            b"(": self._mark,
            b"0": self._pop_top,
            b"1": self._pop_mark,
            b"2": lambda: push(self._top()),
            b"N": pushing(lambda: None),
            b"\x88": pushing(lambda: True),
            b"\x89": pushing(lambda: False),
            b"I": pushing(self._int),
            b"L": pushing(self._long),
            b"J": pushing(lambda: unpack("<i")),
            b"K": pushing(lambda: read(1)[0]),
            b"M": pushing(lambda: unpack("<H")),
            b"\x8a": pushing(lambda: self._int_from_bytes(read(1)[0])),
            b"\x8b": pushing(lambda: self._int_from_bytes(unpack("<i"))),
            b"F": pushing(self._float),
            b"G": pushing(lambda: unpack(">d")),
            b"S": pushing(self._quoted_string),
            b"T": pushing(lambda: read(self._length("<i")).decode("latin1")),
            b"U": pushing(lambda: read(read(1)[0]).decode("latin1")),
            b"V": pushing(lambda: self._text(self._readline(), "raw-unicode-escape")),
            b"X": pushing(lambda: self._text(read(unpack("<I")), "utf-8")),
            b"\x8c": pushing(lambda: self._text(read(read(1)[0]), "utf-8")),
            b"\x8d": pushing(lambda: self._text(read(unpack("<Q")), "utf-8")),
            b"B": pushing(lambda: self._read_bytes(unpack("<I"))),
            b"C": pushing(lambda: read(read(1)[0])),
            b"\x8e": pushing(lambda: self._read_bytes(unpack("<Q"))),
            b"\x96": pushing(lambda: bytearray(read(unpack("<Q")))),
            b"]": pushing(lambda: self._register([], (), is_open=True)),
            b"}": pushing(lambda: self._register({}, (), is_open=True)),
            b"\x8f": pushing(lambda: self._register(set(), (), is_open=True)),
            b")": pushing(lambda: self._new_tuple(())),
            b"l": self._list_from_mark,
            b"d": self._dict_from_mark,
            b"t": pushing(lambda: self._new_tuple(self._pop_mark())),
            b"\x85": lambda: push(self._new_tuple([self._pop()])),
            b"\x86": lambda: push(self._new_tuple(self._pop_n(2))),
            b"\x87": lambda: push(self._new_tuple(self._pop_n(3))),
            b"\x91": pushing(lambda: self._new_frozenset(self._pop_mark())),
            b"a": self._append,
            b"e": lambda: self._with_marked(self._extend),
            b"s": lambda: self._set_items_top(self._pop_n(2)),
            b"u": lambda: self._with_marked(self._set_items),
            b"\x90": lambda: self._with_marked(self._add_to_set),
            b"c": pushing(self._global_from_lines),
            b"\x93": pushing(self._stack_global),
            b"R": self._reduce,
            b"b": self._build,
            b"p": lambda: self._memo_put(self._memo_index_text()),
            b"q": lambda: self._memo_put(read(1)[0]),
            b"r": lambda: self._memo_put(unpack("<I")),
            b"\x94": lambda: self._memo_put(len(self._memo)),
            b"g": lambda: self._memo_get(self._memo_index_text()),
            b"h": lambda: self._memo_get(read(1)[0]),
            b"j": lambda: self._memo_get(unpack("<I")),
        }
        return table

    def _length(self, fmt):
        n = self._unpack(fmt)
        if n < 0:
            raise NotAPickle("a negative length")
        return n

    def _pop_n(self, n):
        if len(self._stack) < n:
            raise NotAPickle("the pickle takes more from its stack than it put there")
        items = self._stack[-n:]
        del self._stack[-n:]
        return items

    def _top(self):
        if not self._stack:
            raise NotAPickle("the pickle takes more from its stack than it put there")
        return self._stack[-1]

    def _append(self):
        item = self._pop()
        self._extend(self._top(), [item])

    def _with_marked(self, add):
        items = self._pop_mark()
        add(self._top(), items)

    def _set_items_top(self, pair):
        self._set_items(self._top(), pair)

    def _list_from_mark(self):
        items = self._pop_mark()
        container = self._register([], (), is_open=True)
        self._extend(container, items)
        self._push(container)

    def _dict_from_mark(self):
        items = self._pop_mark()
        container = self._register({}, (), is_open=True)
        self._set_items(container, items)
        self._push(container)
