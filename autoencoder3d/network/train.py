"""Training the autoencoder as published (section 5), with a resumable checkpoint.

Published settings: Adam(0.001, 0.9, 0.999, epsilon 1e-8) with Keras 1's
``decay`` 0.001/500 per batch (an InverseTimeDecay here, since Keras 3 ignores
``decay``), mean squared error plus the batch-summed L1 penalty on the code,
batch 128, validation = the last 10 % of the samples, best-only checkpoint and
early stopping on ``val_loss`` with patience 20 (Keras 1's counting).

Every epoch writes, atomically, the best weights (when improved) and a resume
point (one file: last weights, optimizer state, counters, history, seed and the
inputs' fingerprint; see :mod:`.checkpoints`), so a killed run continues where
it stopped and ends with the same bytes as an uninterrupted one. A non-finite
loss stops training with an error and saves nothing of that epoch.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ..formats.json import load_json, write_json
from ..util.atomic import atomic_open, atomic_path
from ..util.cpu_kernels import warn_if_slow
from .batches import READ_THREADS, batch_count, batch_rows, epoch_order, loader_options, standardized, training_dataset, validation_dataset
from .checkpoints import load_checked_model, load_checked_weights, read_resume_state, write_resume_point, write_weights
from .collapse_guard import CollapseGuard
from .data_parallel import check_even_split
from .encoding import encode_blocks
from .model import CodeSettings, build_autoencoder
from .objective import Objective, build_objective_trainer, objective_training
from .train_estimate import TrainingTimeEstimate

if TYPE_CHECKING:
    import tensorflow as tf

    from ..volume import Volumes
    from .data_parallel import DataParallelTraining

log = logging.getLogger(__name__)

MODEL_NAMES = ("autoencoder", "encoder", "decoder")
BEST_WEIGHTS = "model-autoencoder--weights--best.weights.h5"
LAST_WEIGHTS = "checkpoint-last.weights.h5"
STATE_FILE = "train-state.json"
HISTORY_CSV = "history.csv"


def model_path(model_dir: str | os.PathLike, name: str) -> str:
    """Path of a saved model: ``model-<name>.keras`` (the published base names)."""
    return os.path.join(model_dir, f"model-{name}.keras")


def published_optimizer(learning_rate: float = 0.001, decay: float = 0.001 / 500) -> keras.optimizers.Adam:
    """Adam with Keras 1's per-batch decay: ``lr_t = lr / (1 + decay * t)``."""
    schedule = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def split_validation(n_samples: int, fraction: float) -> int:
    """Number of training samples when the last ``fraction`` is held out (Keras's rule)."""
    n_train = int(math.floor(n_samples * (1.0 - fraction)))
    if fraction > 0 and (n_train < 1 or n_train >= n_samples):
        raise ValueError(f"validation split {fraction} leaves no training or no validation sample of {n_samples}")
    return n_train


class ArrayBatches(keras.utils.PyDataset):
    """Batches ``(x, x)`` cut from one float32 array, or read from an on-disk store, without copying all of it.

    With ``mean`` and ``std`` the batches are standardized, ``(x - mean) / std``.

    The sample order is reshuffled every epoch from ``(seed, epoch)``
    (:func:`~.batches.epoch_order`; from a store of several subvolumes per chunk,
    chunk by chunk through a shuffle buffer), so a resumed run sees the same
    batches as an uninterrupted one. With
    ``multiple_of`` > 1 (several replicas), batches are trimmed to a multiple of
    it so that each splits evenly; with ``even`` too (JAX), a last batch of fewer
    samples than that is left out (:func:`~.batches.batch_count`).
    """

    def __init__(self, volumes: Volumes, indices: ArrayLike, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                 multiple_of: int = 1, mean: float = 0.0, std: float = 1.0, even: bool = False):
        super().__init__(**loader_options(volumes))  # threads prepare batches ahead from a store or for a GPU (order kept)
        self.volumes = volumes
        self.mean, self.std = float(mean), float(std)
        self.indices = np.asarray(indices)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.multiple_of, self.even = int(multiple_of), bool(even)
        self._order = self._order_for_epoch()

    def _order_for_epoch(self):
        return epoch_order(self.indices, self.seed, self.epoch, shuffle=self.shuffle, volumes=self.volumes, batch_size=self.batch_size)

    @property
    def num_batches(self) -> int:
        return batch_count(len(self.indices), self.batch_size, self.multiple_of, self.even)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, i):
        batch = standardized(self.volumes[batch_rows(self._order, i, self.batch_size, self.multiple_of)], self.mean, self.std)[..., None]
        return batch, batch

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._order_for_epoch()


class ResumableCheckpoint(keras.callbacks.Callback):
    """Best-only checkpoint, early stopping and a resume point, written each epoch.

    Early stopping counts as Keras 1 did: training stops at the end of the epoch
    that finds ``patience`` earlier epochs without improvement.
    """

    def __init__(self, model_dir: str | os.PathLike, patience: int, state: dict[str, Any] | None = None,
                 provenance: dict[str, Any] | None = None):
        super().__init__()
        self.model_dir = model_dir
        self.patience = patience
        self.provenance = provenance or {}
        state = state or {}
        self.best = state.get("best", math.inf)
        self.wait = state.get("wait", 0)
        self.history = state.get("history", [])
        self.stopped_early = state.get("stopped_early", False)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        stop_if_not_finite(logs, epoch + 1)
        current = logs.get("val_loss", logs.get("loss"))
        lr = self.model.optimizer.learning_rate
        row = {"epoch": epoch + 1, "loss": logs.get("loss"), "val_loss": logs.get("val_loss"), "learning_rate": float(lr)}
        self.history.append(row)
        if current is not None and current < self.best:
            self.best = float(current)
            self.wait = 0
            self._save_weights(BEST_WEIGHTS)
        else:
            if self.wait >= self.patience:
                self.model.stop_training = True
                self.stopped_early = True
            self.wait += 1
        self._save_resume_point(epoch + 1)

    def _save_weights(self, name):
        write_weights(self.model, os.path.join(self.model_dir, name))

    def state(self, epochs_done: int) -> dict[str, Any]:
        """Counters and history after ``epochs_done`` epochs, with the run's provenance."""
        return {"epochs_done": epochs_done, "best": self.best, "wait": self.wait, "stopped_early": self.stopped_early,
                "history": self.history, **self.provenance}

    def _save_resume_point(self, epochs_done):
        write_resume_point(self.model, os.path.join(self.model_dir, LAST_WEIGHTS), self.state(epochs_done))
        write_history_csv(os.path.join(self.model_dir, HISTORY_CSV), self.history)


def stop_if_not_finite(logs: Mapping[str, Any], epoch: int) -> None:
    """Raise InputError when a loss of this epoch is NaN or infinite (nothing of the epoch is saved)."""
    for key in ("loss", "val_loss"):
        value = logs.get(key)
        if value is not None and not math.isfinite(float(value)):
            raise InputError(
                f"training diverged: {key} is {float(value)} in epoch {epoch}; the last resume point is kept. "
                "Train again with a smaller --learning-rate and --retrain"
            )


def write_history_csv(path: str | os.PathLike, history: Iterable[Mapping[str, Any]]) -> None:
    """Write the per-epoch history (epoch, loss, val_loss, learning_rate) as CSV."""
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "val_loss", "learning_rate"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)


def saved_models_exist(model_dir: str | os.PathLike) -> bool:
    return all(os.path.isfile(model_path(model_dir, name)) for name in MODEL_NAMES)


def load_saved_models(model_dir: str | os.PathLike, shape: Sequence[int] | None = None) -> tuple[keras.Model, keras.Model, keras.Model]:
    """The (autoencoder, encoder, decoder) saved by a finished training, checked.

    Args:
        shape: subvolume shape the models must take (None: not checked).
    """
    volume = None if shape is None else tuple(shape) + (1,)
    autoencoder = load_checked_model(model_path(model_dir, "autoencoder"), volume, volume)
    encoder = load_checked_model(model_path(model_dir, "encoder"), volume)
    decoder = load_checked_model(model_path(model_dir, "decoder"), encoder.output_shape[1:], volume)
    return autoencoder, encoder, decoder


def resume_state(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The state stored in ``model_dir``'s resume point, or None (InputError if unreadable)."""
    return read_resume_state(os.path.join(model_dir, LAST_WEIGHTS))


def finished_record(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What ``train-state.json`` says about a finished training, or None when there is none."""
    path = os.path.join(model_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            record = load_json(handle.read())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable training record ({err}); pass --retrain to train again") from None
    return record if record.get("finished") else None


def resume_training(autoencoder: keras.Model, model_dir: str | os.PathLike) -> dict[str, Any]:
    """Load the resume point if there is one and return its state; otherwise start afresh."""
    state = resume_state(model_dir)
    if state is None:
        return {}
    load_checked_weights(autoencoder, os.path.join(model_dir, LAST_WEIGHTS))
    log.info("resuming training after epoch %d from %s", state["epochs_done"], model_dir)
    return state


def intensity_statistics(volumes: Volumes, indices: np.ndarray, chunk: int = 256) -> tuple[float, float]:
    """Mean and standard deviation of ``volumes[indices]`` (float64, read in chunks)."""
    total = total_sq = 0.0
    count = 0
    for lo in range(0, len(indices), chunk):
        block = np.asarray(volumes[indices[lo : lo + chunk]], dtype=np.float64)
        total += float(block.sum())
        count += block.size
    mean = total / count
    for lo in range(0, len(indices), chunk):
        block = np.asarray(volumes[indices[lo : lo + chunk]], dtype=np.float64)
        total_sq += float(((block - mean) ** 2).sum())
    return mean, math.sqrt(total_sq / count)


def _standardization(volumes, n_train, settings):
    if not settings.standardize:
        return 0.0, 1.0
    mean, std = intensity_statistics(volumes, np.arange(n_train))
    if not (math.isfinite(mean) and math.isfinite(std)) or std <= 0:
        raise InputError(f"the training subvolumes have no intensity variation (mean {mean:g}, std {std:g}); nothing to learn")
    return mean, std


def clear_training_state(model_dir: str | os.PathLike) -> None:
    """Forget checkpoints, resume point and saved models (``--retrain``)."""
    names = [BEST_WEIGHTS, LAST_WEIGHTS, STATE_FILE, HISTORY_CSV]
    names += [os.path.basename(model_path(model_dir, n)) for n in MODEL_NAMES]
    for name in names:
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            os.remove(path)


def clear_resume_point(model_dir: str | os.PathLike) -> None:
    path = os.path.join(model_dir, LAST_WEIGHTS)
    if os.path.exists(path):
        os.remove(path)


def save_models(models: Iterable[keras.Model], model_dir: str | os.PathLike) -> None:
    """Save (autoencoder, encoder, decoder) in Keras's native format, atomically."""
    for name, model in zip(MODEL_NAMES, models):
        with atomic_path(model_path(model_dir, name), suffix=".keras") as tmp:
            model.save(tmp)


def train_autoencoder(
    volumes: Volumes,
    model_dir: str | os.PathLike,
    *,
    epochs: int = 100,
    batch_size: int = 128,
    patience: int = 20,
    validation_split: float = 0.1,
    learning_rate: float = 0.001,
    encoding_dim: int = 32,
    l1: float | None = None,
    settings: CodeSettings | None = None,
    seed: int = 0,
    strategy: tf.distribute.Strategy | DataParallelTraining | None = None,
    verbose: int | str = 1,
    provenance: dict[str, Any] | None = None,
    resume_from: str | os.PathLike | None = None,
    objective: Objective | None = None,
    rotations: np.ndarray | None = None,
) -> tuple[tuple[keras.Model, keras.Model, keras.Model], dict[str, Any]]:
    """Train the autoencoder on ``volumes``, resuming from ``model_dir`` if possible.

    Args:
        volumes: float32 array ``(N, n1, n2, n3)`` (not copied; batches are cut from it).
        model_dir: folder for checkpoints, history and the saved models.
        epochs, batch_size, patience, validation_split, learning_rate, encoding_dim:
            published defaults 100, 128, 20, 0.1, 0.001, 32.
        l1: L1 penalty on the code (overrides ``settings.l1``; published 1e-4).
        settings: :class:`~autoencoder3d.network.model.CodeSettings` (default: standardized input,
            per-subvolume L1, normalized code layer; ``CodeSettings.published()`` is the
            literal published setting).
        seed: shuffling seed (Keras's own seed is set by the caller).
        strategy: a ``tf.distribute`` strategy to build the models under, a
            :class:`~.data_parallel.DataParallelTraining` (JAX), or None.
        verbose: Keras's verbosity for ``fit``.
        provenance: JSON-able facts about the run (seed, inputs' fingerprint) kept in the
            resume point and in ``train-state.json``.
        resume_from: folder whose resume point to continue from (default ``model_dir``;
            a multi-worker run's other workers read the chief's).
        objective: :class:`~autoencoder3d.network.objective.Objective` (default: the published MSE alone).
        rotations: ``(N, 3, 3)`` pose rotations, for the missing-wedge loss (None: tomogram frame).

    Returns:
        ((autoencoder, encoder, decoder), info) with the best weights loaded, the
        models in the data's own units; ``info`` holds the history, how training
        went and the standardization used.

    Raises:
        CodesCollapsed: the codes collapsed during training (checked every epoch).
    """
    os.makedirs(model_dir, exist_ok=True)
    warn_if_slow(log)
    settings = settings or CodeSettings()
    objective = objective or Objective()
    if l1 is not None:
        settings = CodeSettings(**{**settings.to_dict(), "l1": float(l1)})
    shape = volumes.shape[1:]
    n_train = split_validation(len(volumes), validation_split)
    mean, std = _standardization(volumes, n_train, settings)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        models = build_autoencoder(shape, encoding_dim, settings=settings, mean=mean, std=std)
        # the network on standardized volumes; shares every weight with the three models
        trainer = build_objective_trainer(models, objective) if objective.active else models.trainer
        trainer.compile(optimizer=published_optimizer(learning_rate), loss=None if objective.active else "mse")
        # in the scope: resuming builds the optimizer's variables, which a strategy must create
        state = resume_training(trainer, resume_from or model_dir)
    if not state:
        clear_training_state(model_dir)  # e.g. best weights of an epoch whose resume point was never written
    initial_epoch = int(state.get("epochs_done", 0))
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    even = replicas > 1 and keras.backend.backend() != "tensorflow"  # JAX splits a batch only into equal parts
    if even:
        check_even_split(n_train, len(volumes) - n_train, batch_size, replicas)
    scale = dict(mean=mean, std=std, **({"even": True} if even else {}))
    train_data = ArrayBatches(volumes, np.arange(n_train), batch_size, shuffle=True, seed=seed, epoch=initial_epoch, multiple_of=replicas, **scale)
    val_data = None
    if n_train < len(volumes):
        val_data = ArrayBatches(volumes, np.arange(n_train, len(volumes)), batch_size, shuffle=False, multiple_of=replicas, **scale)
    extra_callbacks = []
    if objective.active:  # batches and callbacks of the objective (autoencoder3d/objective.py)
        train_data, val_data, extra_callbacks = objective_training(
            objective, trainer, models.encoder, volumes, n_train, batch_size, seed=seed, epoch=initial_epoch,
            multiple_of=replicas, rotations=rotations, model_dir=model_dir, epochs=epochs, **scale)
    checkpoint = ResumableCheckpoint(model_dir, patience, state, provenance)
    guard = CollapseGuard(models.encoder, volumes, np.random.default_rng(seed).permutation(n_train), multiple_of=replicas if even else 1)
    started = time.perf_counter()
    if initial_epoch < epochs and not checkpoint.stopped_early:
        # one input iterator for the whole fit, in ArrayBatches' order (shuffled from (seed, epoch));
        # shuffle=False: Keras's own shuffle uses Python's global random and would differ in a resumed process
        estimate = TrainingTimeEstimate(epochs - initial_epoch, n_train, len(volumes) - n_train)
        if objective.active or keras.backend.backend() != "tensorflow":  # the objective's own batches; other backends
            trainer.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=initial_epoch,
                        callbacks=extra_callbacks + [checkpoint, guard, estimate], verbose=verbose, shuffle=False)
        else:
            validation = {} if val_data is None else {"validation_data": validation_dataset(val_data, READ_THREADS), "validation_steps": len(val_data)}
            trainer.fit(training_dataset(train_data, initial_epoch, epochs, READ_THREADS), steps_per_epoch=len(train_data), **validation,
                        epochs=epochs, initial_epoch=initial_epoch, callbacks=[checkpoint, guard, estimate], verbose=verbose, shuffle=False)
    train_seconds = time.perf_counter() - started
    steps = int(np.asarray(keras.ops.convert_to_numpy(trainer.optimizer.iterations)))
    best = os.path.join(model_dir, BEST_WEIGHTS)
    if os.path.isfile(best):
        load_checked_weights(trainer, best)
    models = models[:3]
    save_models(models, model_dir)
    info = training_info(checkpoint, initial_epoch, n_train, len(volumes), train_seconds)
    info["code_settings"] = settings.to_dict()
    if objective.active:
        info["objective"] = objective.to_dict()
    info["standardization"] = {"mean": mean, "std": std}
    info["optimizer_steps"] = steps
    write_json(os.path.join(model_dir, STATE_FILE), {**checkpoint.state(len(checkpoint.history)), "finished": True,
                                                    "info": {k: v for k, v in info.items() if k != "history"}})
    clear_resume_point(model_dir)
    return models, info


def training_info(checkpoint: ResumableCheckpoint, initial_epoch: int, n_train: int, n_samples: int, seconds: float) -> dict[str, Any]:
    """What a training did, for run.json: epochs, early stop, best validation loss, history."""
    return {
        "resumed_from_epoch": initial_epoch,
        "epochs_run": len(checkpoint.history) - initial_epoch,
        "epochs_total": len(checkpoint.history),
        "stopped_early": checkpoint.stopped_early,
        "best_val_loss": checkpoint.best,
        "n_train": n_train,
        "n_validation": n_samples - n_train,
        "train_seconds": seconds,
        "history": checkpoint.history,
    }


def encode(encoder: keras.Model, volumes: Volumes, batch_size: int = 128, *,
           flips: Sequence[Sequence[int]] | np.ndarray | None = None) -> np.ndarray:
    """Encodings ``(N, encoding_dim)`` of float32 volumes ``(N, n1, n2, n3)`` (an array or a store's volumes).

    Read in blocks of whole batches, the next block read ahead from a store
    (:func:`~.encoding.encode_blocks`): memory holds the codes and two blocks.
    ``flips``: sign triples (rows of :data:`~autoencoder3d.prep.flips.PROPER_FLIPS`); the codes of the
    subvolumes in each, ``(len(flips), N, encoding_dim)``, every block read once.
    """
    return encode_blocks(encoder, volumes, batch_size, flips=flips)


def decode(decoder: keras.Model, codes: ArrayLike, batch_size: int = 128) -> np.ndarray:
    """Volumes ``(k, n1, n2, n3)`` decoded from codes ``(k, encoding_dim)``."""
    return decoder.predict(np.asarray(codes, dtype=np.float32), batch_size=batch_size, verbose=0)[..., 0]
