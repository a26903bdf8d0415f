"""Progress bars that appear when, and only when, a person is watching.

A bar belongs on a terminal: in a log file or a pipe its carriage returns
become a wall of half-lines. The command line hides TensorFlow's native log
lines by sending file descriptor 2 through a pipe (``cli/quiet.py``), which
makes ``sys.stderr.isatty()`` false even in a terminal; so the filter calls
:func:`remember_terminal` before it redirects, and :func:`stderr_is_terminal`
answers from that record while the filter is active.
"""

import os
import sys

_recorded = {"terminal": None, "columns": None}


def remember_terminal(fd=2):
    """Record whether ``fd`` is a terminal (and its width) before it is redirected."""
    terminal = _fd_is_terminal(fd)
    _recorded["terminal"] = terminal
    _recorded["columns"] = _columns(fd) if terminal else None


def forget_terminal():
    """Back to asking ``sys.stderr`` itself (the redirection ended)."""
    _recorded["terminal"] = None
    _recorded["columns"] = None


def _fd_is_terminal(fd):
    try:
        return os.isatty(fd)
    except (OSError, ValueError):
        return False


def _columns(fd):
    try:
        return os.get_terminal_size(fd).columns or None
    except (OSError, ValueError):
        return None


def stderr_is_terminal():
    """Whether the user's standard error is a terminal (true also under the native-log filter)."""
    if _recorded["terminal"] is not None:
        return _recorded["terminal"]
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable=None, *, total=None, desc=None, unit="it", enabled=True, leave=True):
    """A tqdm bar with the remaining-time estimate on stderr, or the bare iterable.

    The bar is shown only when ``enabled`` (the caller's -q) and standard error
    is a terminal; otherwise ``iterable`` is returned unchanged (a disabled tqdm
    when ``iterable`` is None, so ``update()`` still works).
    """
    from tqdm import tqdm

    show = bool(enabled) and stderr_is_terminal()
    if not show and iterable is not None:
        return iterable
    columns = _recorded["columns"] if _recorded["terminal"] else None
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show, leave=leave, file=sys.stderr, ncols=columns)
