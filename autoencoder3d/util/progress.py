"""Progress bars that appear when, and only when, a person is watching.

A bar belongs on a terminal: in a log file or a pipe its carriage returns
become a wall of half-lines. So bars are shown only when standard error is a
terminal and the command was not given -q. (The filter that hides
TensorFlow's native log lines, ``cli/quiet.py``, leaves Python's
``sys.stderr`` on the original standard error, so this check sees the user's
terminal.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str | None = None, unit: str = "it",
    enabled: bool = True, leave: bool = True,
) -> Iterable[Any] | tqdm:
    """A tqdm bar with the remaining-time estimate on stderr, or the bare iterable.

    The bar is shown only when ``enabled`` (the caller's -q) and standard error
    is a terminal; otherwise ``iterable`` is returned unchanged (a disabled tqdm
    when ``iterable`` is None, so ``update()`` still works).
    """
    from tqdm import tqdm

    show = bool(enabled) and stderr_is_terminal()
    if not show and iterable is not None:
        return iterable
    columns, rows = _size_if_unknown()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show, leave=leave, file=sys.stderr, ncols=columns, nrows=rows)


def _size_if_unknown():
    """(None, None): tqdm asks the terminal; a terminal that reports no size (a fresh
    pseudo-terminal) gets COLUMNS/LINES or 80 x 24 instead, or tqdm draws nothing."""
    import shutil

    try:
        if os.get_terminal_size(sys.stderr.fileno()).columns > 0:
            return None, None
    except (AttributeError, OSError, ValueError):
        pass
    size = shutil.get_terminal_size()
    return size.columns, size.lines
