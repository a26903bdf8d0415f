"""How long will the training take? Said once, at the start, from the speed of the first batches.

The published defaults (100 epochs, batch 128) take hours on a CPU; a user
should know that before waiting. :class:`TrainingTimeEstimate` times a few
training batches after the first one (which also builds the graph), adds the
validation pass (a forward pass costs about a third of a training step) and
logs one line such as ``100 epochs of 300 subvolumes: about 45 min on this
CPU``. With few batches per epoch it times the whole second epoch instead, so
validation and checkpoint writing are measured rather than guessed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import keras

log = logging.getLogger("autoencoder3d")

FORWARD_SHARE = 1.0 / 3.0  # a forward pass (validation) against a training step of the same size
MEASURED_BATCHES = 3


def format_duration(seconds: float) -> str:
    """``'40 s'``, ``'12 min'``, ``'3 h 05 min'`` or ``'2.5 days'``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{round(minutes)} min"
    hours, rest = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest:02d} min"
    return f"{seconds / 86400:.1f} days"


def device_words() -> str:
    """'this CPU', 'this GPU' or 'these 4 GPUs', for the estimate's line."""
    try:
        import tensorflow as tf

        gpus = len(tf.config.list_logical_devices("GPU"))
    except Exception:  # noqa: BLE001 - another backend: say nothing wrong
        return "this machine"
    return "this CPU" if gpus == 0 else ("this GPU" if gpus == 1 else f"these {gpus} GPUs")


class TrainingTimeEstimate(keras.callbacks.Callback):
    """Logs once how long the remaining epochs will take, at the measured speed.

    Args:
        epochs: epochs still to run.
        n_train, n_validation: samples trained on and validated on per epoch.
        clock: a time function (tests pass a fake one).
    """

    def __init__(self, epochs: int, n_train: int, n_validation: int, *, clock: Callable[[], float] = time.perf_counter,
                 measured_batches: int = MEASURED_BATCHES):
        super().__init__()
        self.epochs = int(epochs)
        self.n_train = int(n_train)
        self.n_validation = int(n_validation)
        self.clock = clock
        self.measured_batches = int(measured_batches)
        self.done = self.epochs < 2  # one epoch: the user will see it end before an estimate helps
        self.batches_seen = 0
        self.mark = None
        self.epoch_started = None
        self.estimate_s = None

    def _steps(self):
        return int((self.params or {}).get("steps") or 0)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.done:
            return
        self.batches_seen += 1
        if self.batches_seen == 1:
            self.mark = self.clock()  # the first batch also traced the graph: time from here
            return
        steps = self._steps()
        if steps <= self.measured_batches or self.batches_seen - 1 < self.measured_batches:
            return
        per_batch = (self.clock() - self.mark) / (self.batches_seen - 1)
        validation = per_batch * FORWARD_SHARE * self.n_validation / max(self.n_train / steps, 1)
        self._announce(self.epochs * (per_batch * steps + validation))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.done or self.batches_seen <= self._steps():
            return  # the first epoch (graph building) is not typical: wait for the second
        self._announce(self.epochs * (self.clock() - self.epoch_started))

    def _announce(self, seconds):
        self.done = True
        self.estimate_s = seconds
        if (self.params or {}).get("verbose") == 1 and sys.stdout.isatty():
            sys.stdout.write("\n")  # off Keras's progress bar line
            sys.stdout.flush()
        log.info(
            "%d epochs of %d subvolumes: about %s on %s at the speed of the first batches (early stopping may end sooner)",
            self.epochs, self.n_train + self.n_validation, format_duration(seconds), device_words(),
        )
