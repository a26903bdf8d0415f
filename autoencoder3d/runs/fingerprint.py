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

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from ..errors import InputError
from ..network.objective_options import OBJECTIVE_DEFAULTS

if TYPE_CHECKING:
    from .options import TrainOptions

# options that do not change the trained model: how k-means runs, speed, verbosity, reuse
NOT_MODEL_OPTIONS = {"n_init", "kmeans", "flips", "seed", "deterministic", "retrain", "workers", "verbose", "port", "baseline", "merge"}
# what atomic.py names its temporary files and folders: .NAME.XXXXXXXX.tmp[.ext] and .NAME.XXXXXXXX.old
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp(\..*)?|old)$")
SAMPLE_BLOCKS = 256
SAMPLE_BYTES = 1 << 16


def file_digest(path: str | os.PathLike, sampled: bool = False) -> dict[str, int | str]:
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


def data_digest(data: str | os.PathLike) -> dict[str, int | str]:
    """The digest of DATA: a pickle file's SHA-256, or a store's sampled digest."""
    if os.path.isdir(data):
        from ..data.store.store import store_digest

        return store_digest(data)
    return file_digest(data)


def fingerprint(data: str | os.PathLike, tomogram: str | os.PathLike | None, pose: bool, box: Sequence[int], options: TrainOptions) -> dict[str, dict]:
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


def differences(recorded: dict, current: dict, parts: Iterable[str] = ("inputs", "options")) -> list[str]:
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


def refuse_if_different(where: str, recorded: dict, current: dict, parts: Iterable[str] = ("inputs", "options")) -> None:
    """Raise InputError naming every difference between the recorded and current fingerprints."""
    found = differences(recorded, current, parts)
    if found:
        raise InputError(
            f"{where} was made from other inputs or options: {'; '.join(found)}. "
            "Rerun with the same ones, pass --retrain to train again, or use another --out"
        )
