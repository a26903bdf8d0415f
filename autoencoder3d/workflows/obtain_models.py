"""Reuse, resume or train the autoencoder of a run: seeds, precision, distribution, and the checks
that a saved model or an interrupted training was made from the same inputs and options."""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..runs.decisions import only_length_differs
from ..runs.fingerprint import refuse_if_different

if TYPE_CHECKING:
    import keras
    import numpy as np

    from ..data.store.read import StoreVolumes
    from ..network.model import CodeSettings
    from .train import TrainOptions

log = logging.getLogger("autoencoder3d")


def _configure_keras(options):
    """Seed, precision and distribution; returns the distribution strategy (or None).

    Under ``--distribute multiworker`` every worker takes the chief's seed. Under
    Keras's JAX backend, ``--distribute`` is Keras's data parallelism (:mod:`autoencoder3d.network.data_parallel`).
    """
    import keras

    from ..network.data_parallel import data_parallel
    from ..network.distribute import make_strategy, share_from_chief

    if options.distribute and keras.backend.backend() == "jax":
        strategy = data_parallel(options.distribute)
    else:
        strategy = make_strategy(options.distribute, options.port) if options.distribute else None
    if options.distribute == "multiworker":
        options.seed = share_from_chief(strategy, options.seed)
    keras.utils.set_random_seed(options.seed)
    if options.deterministic and keras.backend.backend() == "tensorflow":  # other backends: seeded, as they allow
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = {None: "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[options.mixed_precision]
    keras.mixed_precision.set_global_policy(policy)
    return strategy


def _is_out_of_memory(err):
    return type(err).__name__ == "ResourceExhaustedError" or "OOM" in str(err)[:2000]


def _seed_from(recorded, options, where):
    """Use the recorded seed when none is given (an interrupted or finished run continues as it began)."""
    if options.seed is None and recorded.get("seed") is not None:
        options.seed = int(recorded["seed"])
        options.deterministic = bool(recorded.get("deterministic", options.deterministic))
        log.info("no --seed given; using the seed %d recorded in %s", options.seed, where)


def _draw_seed(options):
    if options.seed is None:
        options.seed = secrets.randbelow(2**31)
        log.info("no --seed given; using seed %d (recorded in run.json)", options.seed)


def _reuse_models(volumes, model_dir, options, current, command):
    """The saved models if they were trained on these inputs (None when there are none to reuse)."""
    from ..network.train import finished_record, load_saved_models, resume_state, saved_models_exist

    if not saved_models_exist(model_dir):
        return None
    record = finished_record(model_dir)
    if record is None and resume_state(model_dir) is not None:
        return None  # killed while saving the models: the resume point finishes the job
    if record is None or "fingerprint" not in record:
        log.warning("%s: the saved models were made by an older version; their inputs cannot be checked", model_dir)
        record = {}
    else:
        trained_with = record["fingerprint"].get("options") or {}
        length = None if command == "cluster" else only_length_differs(trained_with, current["options"])
        parts = ("inputs",) if command == "cluster" or length else ("inputs", "options")
        refuse_if_different(f"{model_dir}: the trained model", record["fingerprint"], current, parts)
        if length:
            asked = ", ".join(f"--{key} {getattr(options, key)}" for key in length)
            had = ", ".join(f"--{key} {trained_with.get(key)}" for key in length)
            log.info("%s: the trained model was made with %s; %s changes only how long it trains, so it is reused "
                     "(pass --retrain to train again)", model_dir, had, asked)
        for key, value in trained_with.items():  # the run records what trained the model
            setattr(options, key, value)
        current["options"] = dict(trained_with)
    _seed_from(record, options, os.path.join(model_dir, "train-state.json"))
    log.info("reusing the trained models in %s (pass --retrain to train again)", model_dir)
    models = load_saved_models(model_dir, volumes.shape[1:])
    return models, {"reused_saved_models": True, **record.get("info", {})}


def _check_resume_point(model_dir, options, current):
    """Refuse to resume a training started with other inputs, options or seed."""
    from ..network.train import resume_state

    state = resume_state(model_dir)
    if state is None:
        return
    refuse_if_different(f"{model_dir}: the interrupted training", state.get("fingerprint", {}), current)
    recorded = state.get("seed")
    if options.seed is not None and recorded is not None and int(recorded) != options.seed:
        raise InputError(
            f"{model_dir}: the interrupted training here used --seed {recorded}, not {options.seed}; "
            f"rerun with --seed {recorded} (or without --seed) to resume, or pass --retrain"
        )
    _seed_from(state, options, os.path.join(model_dir, "checkpoint-last.weights.h5"))


def obtain_models(volumes: np.ndarray | StoreVolumes, model_dir: str | os.PathLike, options: TrainOptions, timings: dict[str, float],
                  current: dict[str, Any], command: str = "train", worker_dir: str | os.PathLike | None = None,
                  rotations: np.ndarray | None = None) -> tuple[tuple[keras.Model, keras.Model, keras.Model], dict[str, Any]]:
    """Reuse, resume or train the models. ``worker_dir``: a non-chief worker's own folder (it writes only there);
    ``rotations``: the subvolumes' pose rotations, for the missing-wedge loss."""
    from ..network.data_parallel import DataParallelTraining, end_data_parallel
    from ..network.objective import Objective
    from ..network.train import clear_training_state, load_saved_models, train_autoencoder

    chief = worker_dir is None
    if options.retrain and chief:
        clear_training_state(model_dir)
    fresh = options.retrain and not chief  # the chief is clearing model/: nothing there counts
    reused = None if fresh else _reuse_models(volumes, model_dir, options, current, command)
    if reused is not None:
        return reused
    if not fresh:
        _check_resume_point(model_dir, options, current)
    _draw_seed(options)
    strategy = _configure_keras(options)
    provenance = {"seed": options.seed, "deterministic": options.deterministic, "fingerprint": current}
    try:
        models, info = train_autoencoder(
            volumes, model_dir if chief else worker_dir, epochs=options.epochs, batch_size=options.batch_size,
            patience=options.patience, validation_split=options.validation_split, learning_rate=options.learning_rate,
            encoding_dim=options.encoding_dim, settings=code_settings(options), seed=options.seed, strategy=strategy,
            verbose=options.verbose, provenance=provenance, resume_from=worker_dir if fresh else model_dir,
            objective=Objective.from_options(options), rotations=rotations,
        )
    except Exception as err:  # a GPU out-of-memory error becomes one actionable line
        if _is_out_of_memory(err):
            raise InputError(f"out of GPU memory at --batch-size {options.batch_size}: try a smaller --batch-size") from None
        raise
    finally:
        if isinstance(strategy, DataParallelTraining):
            end_data_parallel()
    if options.distribute == "multiworker":  # the chief encodes alone, with models outside the workers' strategy
        from ..network.distribute import stop_watching_workers

        stop_watching_workers(strategy)
        models = load_saved_models(model_dir, volumes.shape[1:]) if chief else models
    elif isinstance(strategy, DataParallelTraining):  # JAX: encoding and decoding on one device, on batches of any size
        info["distribution"] = strategy.record()
        models = load_saved_models(model_dir, volumes.shape[1:])
    timings["train_s"] = info["train_seconds"]
    return models, info


def code_settings(options: TrainOptions) -> CodeSettings:
    """The :class:`~autoencoder3d.network.model.CodeSettings` that ``options`` ask for."""
    from ..network.model import CodeSettings

    return CodeSettings.published(options.l1) if options.published else CodeSettings(l1=options.l1)
