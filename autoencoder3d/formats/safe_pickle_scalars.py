"""The safe pickle reader's numbers, strings and global names, each read within its limit.

A mixin of :mod:`.safe_pickle`'s machine: the methods read from the file through
the machine's ``_read``/``_readline`` and hand back plain values.
"""

from __future__ import annotations

import codecs

from ..errors import brief
from .safe_pickle_globals import NotAPickle, RefusedPickle, find_global

MAX_INT_BITS = 128
MAX_NUMBER_TEXT = 64
MAX_NAME_TEXT = 256


class ScalarReader:
    """Integers, floats, strings and global names of a pickle, for a machine that provides ``_read``, ``_readline``, ``_pop``."""

    def _checked_int(self, value):
        if value.bit_length() > MAX_INT_BITS:
            raise RefusedPickle(f"an integer of {value.bit_length()} bits; a data pickle holds integers of at most {MAX_INT_BITS} bits")
        return value

    def _int_from_bytes(self, n):
        if n < 0:
            raise NotAPickle("a negative length")
        if n * 8 > MAX_INT_BITS + 8:
            raise RefusedPickle(f"an integer of {n} bytes; a data pickle holds integers of at most {MAX_INT_BITS} bits")
        return int.from_bytes(self._read(n), "little", signed=True)

    def _int_text(self, line):
        try:
            return self._checked_int(int(line))
        except ValueError:
            raise NotAPickle(f"{brief(line)} is not an integer") from None

    def _int(self):
        line = self._readline(MAX_NUMBER_TEXT)
        if line in (b"00", b"01"):  # how protocol 0 writes False and True
            return line == b"01"
        return self._int_text(line)

    def _long(self):
        line = self._readline(MAX_NUMBER_TEXT)
        return self._int_text(line[:-1] if line.endswith(b"L") else line)

    def _float(self):
        line = self._readline(MAX_NUMBER_TEXT)
        try:
            return float(line)
        except ValueError:
            raise NotAPickle(f"{brief(line)} is not a number") from None

    def _quoted_string(self):
        line = self._readline()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise NotAPickle("a STRING instruction whose argument is not quoted")
        try:
            return codecs.escape_decode(line[1:-1])[0].decode("latin1")
        except ValueError:
            raise NotAPickle("a STRING instruction with a broken escape") from None

    def _text(self, data, encoding):
        try:
            return str(data, encoding, "surrogatepass") if encoding == "utf-8" else str(data, encoding)
        except UnicodeDecodeError:
            raise NotAPickle("text that is not valid " + encoding) from None

    def _global_from_lines(self):
        module = self._text(self._readline(MAX_NAME_TEXT), "utf-8")
        name = self._text(self._readline(MAX_NAME_TEXT), "utf-8")
        return find_global(module, name)

    def _stack_global(self):
        name = self._pop()
        module = self._pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise NotAPickle("STACK_GLOBAL needs a module and a name as text")
        return find_global(module, name)
