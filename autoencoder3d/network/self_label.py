"""Self-labelling rounds on the codes (DeepCluster-like).

At a few epochs spread over the training, the training subvolumes are
encoded, k-means on the codes gives every subvolume a pseudo-label, and a small
classification head on the code (re-initialized, since the labels' numbering
changes) is trained jointly with the reconstruction to predict them until the
next round. Before the first round no subvolume has a label (-1) and the
classification loss is zero.

The labels of the last round are written to ``model/self-labels.npz`` with the
epoch that made them, so a resumed run continues with them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..util.atomic import atomic_path

if TYPE_CHECKING:
    from ..volume import Volumes
    from .objective import ObjectiveBatches

log = logging.getLogger(__name__)

LABELS_FILE = "self-labels.npz"
HEAD_NAME = "self_label_head"


def round_epochs(epochs: int, rounds: int) -> list[int]:
    """0-based epochs at whose start a round runs: ``rounds`` of them spread over ``epochs``."""
    if rounds <= 0 or epochs <= 1:
        return []
    return sorted({min(epochs - 1, max(1, int(round(r * epochs / (rounds + 1))))) for r in range(1, rounds + 1)})


def pseudo_labels(codes: ArrayLike, k: int, seed: int) -> NDArray[np.int32]:
    """k-means labels ``(N,)`` int32 of the codes (deterministic for a seed)."""
    from sklearn.cluster import KMeans

    codes = np.asarray(codes, dtype=np.float64)
    k = max(1, min(int(k), len(codes)))
    return KMeans(n_clusters=k, n_init=10, random_state=int(seed)).fit_predict(codes).astype(np.int32)


def reset_head(head: keras.layers.Layer, seed: int, round_index: int) -> None:
    """Fresh Glorot-uniform weights and zero bias for the classification head (seeded)."""
    kernel, bias = head.get_weights()
    limit = np.sqrt(6.0 / (kernel.shape[0] + kernel.shape[1]))
    rng = np.random.default_rng([int(seed), int(round_index), 181])
    head.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(np.float32), np.zeros_like(bias)])


class SelfLabelRounds(keras.callbacks.Callback):
    """Runs the self-labelling rounds; writes the labels into ``batches.labels``."""

    def __init__(self, encoder: keras.Model, volumes: Volumes, n_train: int, batches: ObjectiveBatches,
                 head: keras.layers.Layer, *, k: int, epochs: int, rounds: int, seed: int, model_dir: str | os.PathLike,
                 initial_epoch: int = 0):
        super().__init__()
        self.encoder, self.volumes, self.n_train = encoder, volumes, int(n_train)
        self.batches, self.head = batches, head
        self.k, self.seed, self.model_dir = int(k), int(seed), model_dir
        self.epochs_with_round = round_epochs(epochs, rounds)
        self.initial_epoch = int(initial_epoch)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.initial_epoch > 0:
            self._restore()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch not in self.epochs_with_round:
            return
        codes = encode_rows(self.encoder, self.volumes, self.n_train)
        labels = pseudo_labels(codes, self.k, self.seed + epoch)
        self.batches.labels[: self.n_train] = labels
        reset_head(self.head, self.seed, epoch)
        self._save(epoch, labels)
        log.info("self-labelling round at epoch %d: %d pseudo-classes, sizes %s", epoch + 1, self.k,
                 np.bincount(labels, minlength=self.k).tolist())

    def _save(self, epoch, labels):
        with atomic_path(os.path.join(self.model_dir, LABELS_FILE), suffix=".npz") as tmp:
            np.savez(tmp, epoch=epoch, labels=labels)

    def _restore(self):
        path = os.path.join(self.model_dir, LABELS_FILE)
        if not os.path.isfile(path):
            return
        with np.load(path) as saved:
            if int(saved["epoch"]) < self.initial_epoch and len(saved["labels"]) == self.n_train:
                self.batches.labels[: self.n_train] = saved["labels"]


def encode_rows(encoder: keras.Model, volumes: Volumes, n: int, chunk: int = 64) -> np.ndarray:
    """Codes of ``volumes[:n]`` (an array or a store), read ``chunk`` rows at a time (inference mode)."""
    parts = []
    for lo in range(0, int(n), chunk):
        block = np.asarray(volumes[np.arange(lo, min(int(n), lo + chunk))], dtype=np.float32)[..., None]
        parts.append(keras.ops.convert_to_numpy(encoder(block, training=False)))
    return np.concatenate(parts)
