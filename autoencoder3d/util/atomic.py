"""Atomic file output: a file is either the old one or the complete new one.

Every writer in the package goes through :func:`atomic_path`, which hands out a
temporary name in the destination folder and renames it over the destination
only when the caller's block finished without an exception. A folder that one
process fills over a long time (a data set's part) is written under
:func:`temporary_folder` and renamed into place by its writer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InputError

# the names handed out below (tempfile's 8 random characters): .NAME.XXXXXXXX.tmp[.ext] and .NAME.XXXXXXXX.old
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp(\..*)?|old)$")
# the name of a folder being filled by process PID: NAME.tmp-PID
_TEMPORARY_FOLDER = re.compile(r"^.+\.tmp-\d+$")


def is_leftover(name: str) -> bool:
    """True when ``name`` (a file or folder name, not a path) is one of this module's temporary names."""
    return bool(_TEMPORARY_NAME.match(name))


def temporary_folder(path: str | os.PathLike[str]) -> str:
    """Where this process fills the folder ``path`` before renaming it into place: ``PATH.tmp-PID``."""
    return f"{os.fspath(path)}.tmp-{os.getpid()}"


def is_temporary_folder(name: str) -> bool:
    """True when ``name`` (a folder name, not a path) is one :func:`temporary_folder` hands out."""
    return bool(_TEMPORARY_FOLDER.match(name))


def original_name(leftover: str) -> str:
    """The name a ``.NAME.XXXXXXXX.old`` folder was moved aside from."""
    return leftover[1:-len(".XXXXXXXX.old")]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Args:
        path: the final destination.
        suffix: ending of the temporary name (some writers, e.g. Keras, insist on
            an extension); defaults to the destination's own extension.

    Raises:
        InputError: if the destination folder cannot be written, or the disk is full
            (then ``path`` keeps its old content).
    """
    path = os.fspath(path)
    if not path or path.endswith(os.sep) or os.path.isdir(path):
        raise InputError(f"{path!r}: not a file name to write (empty, or a folder); give the output file's name")
    folder = os.path.dirname(os.path.abspath(path))
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=folder)
    except OSError as err:
        _raise_if_disk_full(err, path)
        raise InputError(f"{folder}: cannot write output here ({err.strerror})") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like any new file
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except Exception as err:
        _raise_if_disk_full(err, path)
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block ends cleanly."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as handle:
            yield handle


def is_disk_full(err: BaseException | None) -> bool:
    """True if ``err`` (or an error it was raised from) says the disk is full.

    h5py, zipfile and Keras often wrap the operating system's error, so its text is checked too.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err)[:2000]:
            return True
        err = err.__cause__ or err.__context__
    return False


def _raise_if_disk_full(err, path):
    if is_disk_full(err):
        raise InputError(f"{path}: no space left on device; the existing file is unchanged") from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path):
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a fresh temporary folder that replaces the folder ``path`` on success.

    The old folder (if any) is removed only after the new one is complete, so a
    killed run leaves either the old folder or the new one (a kill between the two
    renames leaves the old one as ``.NAME.XXXXXXXX.old``, which
    RunFolder.remove_leftovers puts back).
    """
    path = os.path.abspath(os.fspath(path))
    here = os.path.abspath(os.getcwd())
    if os.path.commonpath([path, here]) == path:  # "" and "." are the current folder: replacing it deletes the user's files
        raise InputError(f"{path}: the current folder or one above it; give a folder of its own to write")
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    except OSError as err:
        raise InputError(f"{parent}: cannot write output here ({err.strerror})") from None
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        try:
            yield tmp
        except Exception as err:
            _raise_if_disk_full(err, path)
            raise
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
