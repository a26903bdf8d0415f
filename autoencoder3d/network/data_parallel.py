"""``--distribute`` under Keras's JAX backend: data parallelism over every device of this machine.

Keras 3's :class:`keras.distribution.DataParallel` replicates the weights on
each device (all GPUs; on a machine without one, its CPU devices, so that it
can be tested on a CPU) and splits every batch across them. The distribution
is set for the whole process before the model is built, and ended after
training (:func:`end_data_parallel`): encoding and decoding then run on one
device, on batches of any size.

Unlike TensorFlow's strategies, JAX splits a batch only into equal parts:
every batch must hold a multiple of the number of devices (the batches are
trimmed to one, and a last batch of fewer samples than devices is left out).
Several machines (``--distribute multiworker``) are TensorFlow's alone.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..errors import InputError

log = logging.getLogger("autoencoder3d")

SUPPORTED = {"tensorflow": ("mirrored", "multiworker"), "jax": ("mirrored",)}


def check_distribute(kind: str | None | bool, backend: str) -> None:
    """Refuse, in one line, a ``--distribute KIND`` that Keras's ``backend`` cannot run (nothing when ``kind`` is unset)."""
    if not kind or kind in SUPPORTED.get(backend, ()):
        return
    if backend == "jax" and kind == "multiworker":
        raise InputError(
            "--distribute multiworker needs Keras's TensorFlow backend (KERAS_BACKEND=tensorflow); under JAX use "
            "--distribute mirrored, which trains on all the GPUs of one machine"
        )
    if backend not in SUPPORTED:
        raise InputError(f"--distribute needs Keras's TensorFlow or JAX backend, not {backend!r} (set KERAS_BACKEND)")
    raise InputError(f"--distribute: expected one of {', '.join(SUPPORTED[backend])}, got {kind!r}")


class DataParallelTraining:
    """A Keras :class:`~keras.distribution.DataParallel` over ``devices``, set for the whole process.

    It stands where ``train_autoencoder`` takes a ``tf.distribute`` strategy:
    ``scope()`` and ``num_replicas_in_sync``.
    """

    def __init__(self, devices: list[str]):
        import keras

        self.devices = list(devices)
        self.distribution = keras.distribution.DataParallel(devices=self.devices)
        keras.distribution.set_distribution(self.distribution)

    @property
    def num_replicas_in_sync(self) -> int:
        return len(self.devices)

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Nothing to enter: the distribution is the process's (set before the model is built)."""
        return contextlib.nullcontext()

    def record(self) -> dict[str, Any]:
        """What ``run.json`` says of the distribution: kind, backend, number and kind of devices."""
        platform = self.devices[0].split(":")[0] if self.devices else "?"
        return {"kind": "mirrored", "backend": "jax", "devices": len(self.devices), "device_type": platform}


def data_parallel(kind: str) -> DataParallelTraining:
    """Start ``--distribute KIND`` under JAX: data parallelism over all the devices Keras lists (GPUs, else CPUs)."""
    import keras

    check_distribute(kind, "jax")
    training = DataParallelTraining(keras.distribution.list_devices())
    log.info("training on %d devices: %s", training.num_replicas_in_sync, ", ".join(training.devices))
    return training


def end_data_parallel() -> None:
    """Back to one device: models built from now on (and their predictions) are not distributed."""
    import keras

    keras.distribution.set_distribution(None)


def check_even_split(n_train: int, n_validation: int, batch_size: int, devices: int) -> None:
    """Refuse, in one line, batches that cannot split into ``devices`` equal parts (at least one sample each)."""
    if batch_size < devices:
        raise InputError(f"--batch-size {batch_size} is smaller than the {devices} devices of --distribute; "
                         f"give at least {devices} (a multiple of {devices} uses every sample)")
    for count, what, fix in ((n_train, "training", "more subvolumes"), (n_validation, "validation", "a larger --validation-split")):
        if 0 < count < devices:
            raise InputError(f"{count} {what} subvolumes, fewer than the {devices} devices of --distribute; use {fix} "
                             "or train without --distribute")
