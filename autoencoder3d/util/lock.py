"""One writer at a time: an advisory ``flock`` on ``<folder>/.autoencoder3d.lock``.

The kernel releases the lock when its holder dies, so the lock of a killed
process is simply taken over. Every command that writes into a run folder or a
data-set store takes it (``train``, ``cluster``, ``report``, ``export``,
``evaluate``, ``edss3d train`` and ``predict``, ``dataset build`` and
``convert``), and ``export --format copick`` takes it on the copick project's
overlay folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from ..errors import InputError

LOCK_NAME = ".autoencoder3d.lock"


class RunFolderLock:
    """``with RunFolderLock(folder):`` -- refuse a second concurrent writer of ``folder``.

    On a failure, a folder that this run created and left empty is removed again.
    ``what`` names the folder in the refusal's line (default: this run folder) and
    ``advice`` ends it (default: wait, or use another ``--out``); ``elsewhere``
    names the option of that other place (a data-set store: ``what="store"``,
    ``elsewhere="OUT"``).
    """

    def __init__(self, folder: str | os.PathLike[str], what: str | None = None, elsewhere: str = "--out", *, advice: str | None = None):
        self.folder = os.path.abspath(folder)
        self.what = f"this {what}" if what in ("store", "run folder") else (what or "this run folder")
        self.advice = advice or f"wait for it to finish or use another {elsewhere}"
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.created = not os.path.isdir(self.folder)
        self.handle = None

    def __enter__(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
            while self.handle is None:
                self.handle = self._acquire()
        except OSError as err:
            raise InputError(f"{self.folder}: output folder cannot be written ({err.strerror})") from None
        return self

    def _acquire(self):
        handle = _open_lock_file(self.path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise InputError(
                f"{self.folder}: another autoencoder3d process ({holder}) is writing {self.what}; {self.advice}"
            ) from None
        if not _same_file(handle, self.path):  # the holder removed it meanwhile: lock the new one
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        return handle

    def __exit__(self, kind, value, traceback):
        try:
            if _same_file(self.handle, self.path):  # not a later writer's, if the folder was replaced meanwhile
                os.remove(self.path)
        except OSError:
            pass
        self.handle.close()
        if kind is not None and self.created:
            remove_empty_folders(self.folder)
        return False


def locked_if(
    folder: str | os.PathLike[str], lock: bool, **wording: str | None,
) -> contextlib.AbstractContextManager[RunFolderLock | None]:
    """``RunFolderLock(folder, **wording)`` when ``lock`` is true, else a context that does nothing.

    A writer called by a job that already holds the folder's lock (``train``
    writing its report) passes ``lock=False``: a second ``flock`` of the same
    file in one process would refuse the process itself.
    """
    return RunFolderLock(folder, **wording) if lock else contextlib.nullcontext()


def _open_lock_file(path):
    """The lock file, opened for reading and writing; never through a symbolic link (it would overwrite the link's target)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"{path}: a symbolic link where the lock file goes; a lock is never written through one, remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a plain file where the lock file goes; remove it")
    return os.fdopen(fd, "r+")


def _same_file(handle, path):
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.lstat(path))
    except FileNotFoundError:
        return False


def remove_empty_folders(folder: str | os.PathLike[str]) -> None:
    """Remove ``folder`` and its subfolders if they hold no file."""
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass
