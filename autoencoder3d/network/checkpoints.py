"""The resume point and the checks on every checkpoint and model read back.

The resume point is ONE file, ``model/checkpoint-last.weights.h5``: Keras's
weights file (model and optimizer state) with the training state (epochs done,
best loss, early-stopping counter, history, seed, inputs' fingerprint) stored
in it as a JSON attribute. It is written under a temporary name and renamed,
so a kill at any moment leaves either the previous resume point or the new one,
never weights of one epoch with the counters of another.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..util.atomic import atomic_path

if TYPE_CHECKING:
    import keras

STATE_ATTRIBUTE = "autoencoder3d_train_state"
RETRAIN_HINT = "pass --retrain to train again from scratch"


def write_weights(model: keras.Model, path: str | os.PathLike, state: dict[str, Any] | None = None) -> None:
    """Weights and optimizer state (and ``state``, JSON-able) in one atomically replaced file."""
    import h5py

    text = None if state is None else json.dumps(state, default=_plain)
    with atomic_path(path, suffix=".weights.h5") as tmp:
        try:
            model.save_weights(tmp)
            if text is not None:
                with h5py.File(tmp, "a") as handle:
                    handle.attrs[STATE_ATTRIBUTE] = text
        except Exception:
            _release_failed_file(tmp)
            raise


def write_resume_point(model: keras.Model, path: str | os.PathLike, state: dict[str, Any]) -> None:
    """The resume point: weights, optimizer state and the training state in one file."""
    write_weights(model, path, state)


def _release_failed_file(tmp):
    """After a failed HDF5 write (e.g. a full disk), free its space and close what HDF5 still holds.

    Otherwise HDF5 retries the write when the objects are garbage-collected and
    at exit, printing tracebacks and crashing the interpreter.
    """
    import h5py

    if os.path.exists(tmp):
        os.truncate(tmp, 0)
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            file_id.close()
        except Exception:  # noqa: BLE001 - best effort; the error that matters is already raised
            pass


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def read_resume_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The training state stored in a resume point, or None when there is none.

    Raises:
        InputError: the file is not a readable resume point (truncated, garbled, foreign).
    """
    if not os.path.exists(path):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            text = handle.attrs[STATE_ATTRIBUTE]
        state = json.loads(text)
        int(state["epochs_done"])
    except Exception as err:  # noqa: BLE001 - any failure means the same thing to the user
        raise InputError(f"{path}: not a readable resume point ({_first_line(err)}); {RETRAIN_HINT}") from None
    return state


def load_checked_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Load a weights file (with optimizer state) into ``model``; refuse unreadable or non-finite weights."""
    model.optimizer.build(model.trainable_variables)  # so that the optimizer's state loads too
    try:
        model.load_weights(path)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot be loaded into this model ({_first_line(err)}); {RETRAIN_HINT}") from None
    check_finite(model, path)


def check_finite(model: keras.Model, path: str | os.PathLike, hint: str = RETRAIN_HINT) -> None:
    """Raise InputError if any weight of ``model`` (read from ``path``) is NaN or infinite."""
    for variable in model.weights:
        if not np.all(np.isfinite(np.asarray(variable))):
            raise InputError(f"{path}: weight '{variable.path}' holds NaN or infinite values; {hint}")


def load_checked_model(
    path: str | os.PathLike, input_shape: Sequence[int] | None = None, output_shape: Sequence[int] | None = None,
    hint: str = RETRAIN_HINT,
) -> keras.Model:
    """A saved ``.keras`` model, refused with one line if unreadable, non-finite or of other shapes.

    Args:
        path: the ``.keras`` file.
        input_shape, output_shape: expected shapes without the batch axis (None: not checked).
        hint: what the user should do about a refused model (ends the error line).
    """
    import zipfile

    from .model import load_model

    if os.path.isfile(path) and not zipfile.is_zipfile(path):  # Keras would say "file not found" of a cut-short file
        raise InputError(f"{path}: the saved model is damaged (not a whole .keras archive: cut short or overwritten); {hint}")
    try:
        model = load_model(path)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot load the saved model ({_first_line(err)}); {hint}") from None
    check_finite(model, path, hint)
    for what, expected, actual in (("input", input_shape, model.input_shape), ("output", output_shape, model.output_shape)):
        if expected is not None and tuple(actual[1:]) != tuple(expected):
            raise InputError(f"{path}: the saved model's {what} shape is {tuple(actual[1:])}, these data need {tuple(expected)}; {hint}")
    return model


def _first_line(err):
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    return text[:200]
