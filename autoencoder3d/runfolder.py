"""A run folder that knows what it holds: one writer at a time, no leftovers, a fingerprint of its inputs.

- :class:`RunFolderLock` lets one process at a time write a run folder. It is an
  advisory ``flock`` on ``<out>/.autoencoder3d.lock``: the kernel releases it when
  the holder dies, so the lock of a killed process is simply taken over. Every
  command that writes into a run folder takes it (``train``, ``cluster``,
  ``report``, ``export``, ``evaluate``, ``edss3d train`` and ``predict``), and
  ``export --format copick`` takes it on the copick project's overlay folder.
- :func:`remove_leftovers` deletes the temporary files and folders of writes that
  were killed (the names :mod:`.atomic` hands out).
- :func:`fingerprint` says what produced a model: the data pickle's SHA-256, the
  tomogram's size, header and a sample of its content (when pose normalization
  uses it), the box and every option that changes the trained model. A model or
  an interrupted training is reused only when the fingerprint is the same.
"""

import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
from dataclasses import asdict

from .errors import InputError

LOCK_NAME = ".autoencoder3d.lock"
# training objective options (autoencoder3d/objective.py), left out of a fingerprint while at these values
OBJECTIVE_DEFAULTS = {"loss": "mse", "wedge": 60.0, "augment": False, "self_label": 0, "self_label_k": 10}
# options that do not change the trained model: how k-means runs, speed, verbosity, reuse
NOT_MODEL_OPTIONS = {"n_init", "kmeans", "seed", "deterministic", "retrain", "workers", "verbose", "port"}
# what atomic.py names its temporary files and folders: .NAME.XXXXXXXX.tmp[.ext] and .NAME.XXXXXXXX.old
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp(\..*)?|old)$")
_SUBFOLDERS = ("model", "clus-center")
SAMPLE_BLOCKS = 256
SAMPLE_BYTES = 1 << 16


class RunFolderLock:
    """``with RunFolderLock(folder):`` -- refuse a second concurrent writer of ``folder``.

    On a failure, a folder that this run created and left empty is removed again.
    ``what`` names the folder in the refusal's line (default: this run folder) and
    ``advice`` ends it (default: wait, or use another ``--out``); ``elsewhere``
    names the option of that other place (a data-set store: ``what="store"``,
    ``elsewhere="OUT"``).
    """

    def __init__(self, folder, what=None, elsewhere="--out", *, advice=None):
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


def locked_if(folder, lock, **wording):
    """``RunFolderLock(folder, **wording)`` when ``lock`` is true, else a context that does nothing.

    A writer called by a job that already holds the folder's lock (``train``
    writing its report) passes ``lock=False``: a second ``flock`` of the same
    file in one process would refuse the process itself.
    """
    import contextlib

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


def remove_empty_folders(folder):
    """Remove ``folder`` and its subfolders if they hold no file."""
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass


def remove_leftovers(folder):
    """Delete temporary files and folders of killed writes in a run folder; return their paths."""
    removed = []
    places = [folder] + [os.path.join(folder, name) for name in _SUBFOLDERS]
    for place in places:
        walk = os.walk(place) if place != folder else [(folder, [], _list(folder))]
        for root, dirs, files in walk:
            for name in sorted(list(dirs) + list(files), key=lambda n: not n.endswith(".old")):
                path = os.path.join(root, name)
                if not _LEFTOVER.match(name) or not os.path.lexists(path):
                    continue
                if name in dirs:
                    dirs.remove(name)
                if _put_back(path):
                    continue
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
                removed.append(path)
    return removed


def _put_back(path):
    """A folder moved aside as ``.NAME.XXXXXXXX.old`` whose replacement never arrived goes back to NAME."""
    name = os.path.basename(path)
    original = os.path.join(os.path.dirname(path), name[1:-len(".XXXXXXXX.old")])
    if name.endswith(".old") and os.path.isdir(path) and not os.path.lexists(original):
        os.rename(path, original)
        return True
    return False


def _list(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []


def file_digest(path, sampled=False):
    """``{'size', 'sha256'}`` of a file; ``sampled`` hashes the first and last 64 KiB
    and 256 blocks of 64 KiB spread evenly (a tomogram of many GB in a fraction of a second)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if not sampled or size <= SAMPLE_BLOCKS * SAMPLE_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            for i in range(SAMPLE_BLOCKS + 1):
                handle.seek(i * (size - SAMPLE_BYTES) // SAMPLE_BLOCKS)
                digest.update(handle.read(SAMPLE_BYTES))
    return {"size": size, "sha256": digest.hexdigest()}


def data_digest(data):
    """The digest of DATA: a pickle file's SHA-256, or a store's sampled digest."""
    if os.path.isdir(data):
        from .dataset.store import store_digest

        return store_digest(data)
    return file_digest(data)


def fingerprint(data, tomogram, pose, box, options):
    """What the trained model depends on (see the module docstring).

    Returns:
        ``{'inputs': {...}, 'options': {...}}``, JSON-able.
    """
    model_options = {k: v for k, v in asdict(options).items() if k not in NOT_MODEL_OPTIONS}
    for key, default in OBJECTIVE_DEFAULTS.items():  # absent when off: earlier runs' fingerprints stay valid
        if model_options.get(key, default) == default:
            model_options.pop(key, None)
    if not pose:
        model_options.pop("smooth_sigma", None)
    inputs = {
        "data": data_digest(data),
        "tomogram": file_digest(tomogram, sampled=True) if pose else None,
        "pose": bool(pose),
        "box": [int(s) for s in box],
    }
    return {"inputs": inputs, "options": model_options}


def differences(recorded, current, parts=("inputs", "options")):
    """Human-readable differences between two fingerprints, e.g. ``['--epochs 4 (was 1)']``."""
    found = []
    for part in parts:
        old, new = recorded.get(part) or {}, current.get(part) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found.append(_describe(part, key, old.get(key), new.get(key)))
    return found


def _describe(part, key, old, new):
    if part == "options":
        return f"--{key.replace('_', '-')} {new} (was {old})"
    if key in ("data", "tomogram"):
        name = key.upper()
        if old is None or new is None:
            return f"{name} {'given' if new else 'not used'} (was {'given' if old else 'not used'})"
        return f"{name} holds other data ({new['size']} bytes, was {old['size']})"
    return f"{key} {new} (was {old})"


def refuse_if_different(where, recorded, current, parts=("inputs", "options")):
    """Raise InputError naming every difference between the recorded and current fingerprints."""
    found = differences(recorded, current, parts)
    if found:
        raise InputError(
            f"{where} was made from other inputs or options: {'; '.join(found)}. "
            "Rerun with the same ones, pass --retrain to train again, or use another --out"
        )
