"""JSON files: one reader with one error policy, one atomic writer.

:func:`read_json` raises an :class:`~autoencoder3d.errors.InputError` naming the
file for anything that is not readable JSON; :func:`read_record` is the lenient
reader of optional records (``{}`` when missing or unreadable).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import InputError
from ..util.atomic import atomic_open


def load_json(text: str | bytes | bytearray) -> Any:
    """``json.loads`` whose nesting too deep for Python's recursion limit is a ValueError like any other bad JSON."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Load a JSON file; ``what`` names it in the error (e.g. "selection file").

    Raises:
        InputError: missing, unreadable or not JSON.
    """

    path = os.fspath(path)
    try:
        with open(path) as handle:
            return load_json(handle.read())
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON for a {what} ({err})") from None


def write_json(path: str | os.PathLike[str], obj: object) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, default=_json_default)
        handle.write("\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON record as a dict ({} when it is missing or unreadable)."""
    try:
        with open(path) as handle:
            record = load_json(handle.read())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
