"""Settings decided once and read by every later command of a run.

How the subvolumes are prepared (contrast polarity, the smoothing of pose
normalization) is decided when a run trains and recorded with its model (the
fingerprint in ``model/train-state.json`` or in the resume point) and in
``run.json``; a data-set store records the polarity it was built with, and a
pickle written by ``pose`` or ``pick`` the one it was made with. A later
``train`` or ``cluster`` into the same run folder that does not name a setting
takes the recorded one; one that names another is refused in one line, since
the trained model was made from the first. Without any record the published
defaults apply (dense matter dark, sigma 2).

A finished model is also reused when only the length of training was asked
differently (``--epochs``, ``--patience``): the published workflow trains once
(``train ... 100``) and clusters again with another k (``train ... 4``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..data.open import store_polarity
from ..errors import InputError
from ..prep.contrast import DEFAULT_POLARITY, recorded_polarity

if TYPE_CHECKING:
    from .options import TrainOptions

log = logging.getLogger("autoencoder3d")

PREPARATION_DEFAULTS = {"polarity": DEFAULT_POLARITY, "smooth_sigma": 2.0}
TRAINING_LENGTH = ("epochs", "patience")


def recorded_model_options(model_dir: str | os.PathLike) -> dict:
    """The options the model in ``model_dir`` was trained with (finished or interrupted), or {}."""
    from ..network.train import finished_record, resume_state, saved_models_exist

    record = finished_record(model_dir) if saved_models_exist(model_dir) else None
    if record is None:
        record = resume_state(model_dir)
    return ((record or {}).get("fingerprint") or {}).get("options") or {}


def decide_preparation(data: str | os.PathLike, options: TrainOptions, model_dir: str | os.PathLike) -> None:
    """Fill ``options.polarity`` and ``options.smooth_sigma`` from what was given, recorded or the default.

    Raises:
        InputError: a given setting contradicts the run's model or the data set.
    """
    recorded = {} if options.retrain else recorded_model_options(model_dir)
    _read_auto_polarity(options, recorded.get("polarity"), model_dir)
    for key in PREPARATION_DEFAULTS:
        _decide(options, key, recorded.get(key), f"{model_dir}: the trained model", "; or train again ('train ... --retrain')")
    built = store_polarity(data)
    if built is not None:
        if options.polarity == "auto":
            options.polarity = built
        _decide(options, "polarity", built, f"{data}: the data set", " ('autoencoder3d dataset build' decided it)")
    for key, default in PREPARATION_DEFAULTS.items():
        if getattr(options, key) is None and not (key == "polarity" and not os.path.isdir(data)):
            setattr(options, key, default)  # a pickle's polarity: what it records, else dark (prepare_subvolumes)


def _read_auto_polarity(options, recorded, model_dir):
    """``auto`` was decided once: given now against a decided model, or a model whose auto decided what is given, agree.

    A model trained with ``--polarity auto`` records ``auto`` (its run.json says
    what it decided); ``--polarity bright`` after it is the same decision when
    ``auto`` decided bright, and ``--polarity auto`` after a model made with
    ``bright`` is that model's polarity.
    """
    given = options.polarity
    if recorded_polarity(recorded) and given == "auto":
        options.polarity = recorded
        log.info("--polarity auto: the trained model in %s was made with --polarity %s; %s it is", model_dir, recorded, recorded)
    elif recorded == "auto" and recorded_polarity(given) and _decided_polarity(model_dir) == given:
        options.polarity = "auto"  # as the model records it; the same data decide the same again
        log.info("--polarity %s: what --polarity auto decided for the trained model in %s", given, model_dir)


def _decided_polarity(model_dir):
    """What ``--polarity auto`` decided for the run of ``model_dir`` (its run.json), or None."""
    from .folder import RunFolder

    return RunFolder.of_model(model_dir).recorded_polarity()


def _decide(options, key, recorded, what, remedy):
    if recorded is None:
        return
    given = getattr(options, key)
    flag = "--" + key.replace("_", "-")
    if given is None:
        setattr(options, key, recorded)
        log.info("%s %s: as recorded by %s", flag, recorded, what.split(": ")[0])
    elif given != recorded:
        decided = _decided_polarity(what.split(": ")[0]) if key == "polarity" and recorded == "auto" else None
        said = f"{recorded}, which decided {decided}" if recorded_polarity(decided) else recorded
        raise InputError(f"{what} was made with {flag} {said}, not {given}: leave {flag} out or pass {flag} {recorded}{remedy}")


def only_length_differs(recorded_options: Mapping[str, object], current_options: Mapping[str, object]) -> list[str] | None:
    """The training-length options that differ, when nothing else that makes the model does (else None)."""
    keys = set(recorded_options) | set(current_options)
    differ = {key for key in keys if recorded_options.get(key) != current_options.get(key)}
    if not differ or not differ <= set(TRAINING_LENGTH):
        return None
    return sorted(differ)
