"""Training objectives beyond the published reconstruction MSE.

Three options, each off by default, combinable:

- ``loss="wedge"``: the reconstruction error is counted only on Fourier
  components the tomogram measured (:mod:`autoencoder3d.network.wedge_loss`), with the
  wedge rotated into each pose-normalized subvolume's frame.
- ``augment``: the encoder sees two augmented views of each subvolume
  (:mod:`autoencoder3d.network.augment`); the decoder reconstructs the first view
  without its added noise, and a consistency term pulls the two views' codes
  together.
- ``self_label`` rounds: k-means pseudo-labels on the codes and a
  classification head trained jointly (:mod:`autoencoder3d.network.self_label`).

With any of them on, training uses an objective network built here around the
same core encoder and decoder (the saved models are unchanged: the three
published ones) and batches that carry what the losses need. All losses are
added by one layer, so Keras's own ``loss`` and ``val_loss`` include them; the
validation batches are never augmented.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import layers
from numpy.typing import ArrayLike, NDArray

from ..prep.flips import flip_matrix
from . import augment
from .batches import batch_count, batch_rows, epoch_order, loader_options, standardized
from .objective_options import OBJECTIVE_DEFAULTS, Objective  # noqa: F401 - the objective's public names
from .self_label import HEAD_NAME, SelfLabelRounds
from .wedge_loss import masked_fourier_mse, wedge_masks

if TYPE_CHECKING:
    from ..volume import SubvolumeSet, Volumes
    from .model import Models

CONSISTENCY_WEIGHT = 1.0  # times the mean squared difference of the two views' codes
SELF_LABEL_WEIGHT = 0.2  # times the pseudo-label cross-entropy


def rotations_of(subvolumes: SubvolumeSet) -> NDArray[np.float64]:
    """``(N, 3, 3)`` pose rotations of a :class:`~autoencoder3d.volume.SubvolumeSet` (identity where none)."""
    out = np.tile(np.eye(3), (len(subvolumes), 1, 1))
    for i in range(len(subvolumes)):
        rotation, _ = subvolumes.pose_of(i)
        if rotation is not None:
            out[i] = rotation
    return out


@keras.saving.register_keras_serializable(package="autoencoder3d")
class ObjectiveLoss(layers.Layer):
    """Adds the objective's losses; returns the reconstruction unchanged."""

    def __init__(self, wedge_loss: bool = False, consistency: float = 0.0, self_label: float = 0.0, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.wedge_loss, self.consistency, self.self_label = bool(wedge_loss), float(consistency), float(self_label)

    def call(self, inputs: dict[str, Any]) -> Any:
        from keras import ops

        reconstruction, target = ops.cast(inputs["reconstruction"], "float32"), inputs["target"]
        if self.wedge_loss:
            self.add_loss(ops.mean(masked_fourier_mse(target, reconstruction, inputs["mask"])))
        else:
            self.add_loss(ops.mean(ops.square(reconstruction - target)))
        if self.consistency:
            self.add_loss(self.consistency * ops.mean(ops.square(inputs["code"] - inputs["code_b"])))
        if self.self_label:
            labels = ops.cast(inputs["label"], "int32")
            known = ops.cast(labels >= 0, "float32")
            entropy = keras.losses.sparse_categorical_crossentropy(ops.maximum(labels, 0), inputs["logits"], from_logits=True)
            self.add_loss(self.self_label * ops.sum(entropy * known) / ops.maximum(ops.sum(known), 1.0))
        return reconstruction

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "wedge_loss": self.wedge_loss, "consistency": self.consistency, "self_label": self.self_label}


def build_objective_trainer(models: Models, objective: Objective, encoding_dim: int = 32) -> keras.Model:
    """The network trained under ``objective``: the models' core encoder and decoder, plus inputs and losses."""
    core_encoder = models.trainer.get_layer("core_encoder")
    core_decoder = models.trainer.get_layer("core_decoder")
    shape = tuple(core_encoder.input_shape[1:])
    view = keras.Input(shape=shape, name="view")
    target = keras.Input(shape=shape, name="target")
    inputs = {"view": view, "target": target}
    code = core_encoder(view)
    parts = {"reconstruction": core_decoder(code), "target": target, "code": code}
    if objective.loss == "wedge":
        inputs["mask"] = parts["mask"] = keras.Input(shape=shape[:3], name="mask")
    if objective.augment:
        inputs["view_b"] = keras.Input(shape=shape, name="view_b")
        parts["code_b"] = core_encoder(inputs["view_b"])
    if objective.self_label:
        inputs["label"] = parts["label"] = keras.Input(shape=(), dtype="int32", name="label")
        parts["logits"] = layers.Dense(objective.self_label_k, dtype="float32", name=HEAD_NAME)(code)
    loss = ObjectiveLoss(objective.loss == "wedge", CONSISTENCY_WEIGHT if objective.augment else 0.0,
                         SELF_LABEL_WEIGHT if objective.self_label else 0.0, name="objective_loss")
    return keras.Model(inputs, loss(parts), name="objective_trainer")


class ObjectiveBatches(keras.utils.PyDataset):
    """Batches of the objective's inputs (a dict), standardized, reshuffled every epoch from ``(seed, epoch)``.

    Args:
        volumes: ``(N, n1, n2, n3)`` array or store; ``indices`` the rows to use.
        rotations: ``(N, 3, 3)`` pose rotations (wedge loss), or None (identity).
        labels: ``(N,)`` int32 pseudo-labels shared with :class:`SelfLabelRounds` (-1: none yet).
        views: augment (training batches) or not (validation).
        multiple_of, even: batches trimmed to a multiple of ``multiple_of``; with ``even``
            a last shorter batch is left out (:func:`~.batches.batch_count`).
    """

    def __init__(self, volumes: Volumes, indices: ArrayLike, batch_size: int, objective: Objective, *,
                 shuffle: bool, seed: int = 0, epoch: int = 0, multiple_of: int = 1, mean: float = 0.0, std: float = 1.0,
                 rotations: np.ndarray | None = None, labels: NDArray[np.int32] | None = None, views: bool = False, even: bool = False):
        super().__init__(**loader_options(volumes))  # threads prepare batches ahead from a store or for a GPU (order kept)
        self.volumes, self.indices, self.batch_size = volumes, np.asarray(indices), int(batch_size)
        self.objective, self.shuffle, self.seed, self.epoch = objective, shuffle, int(seed), int(epoch)
        self.multiple_of, self.mean, self.std, self.even = int(multiple_of), float(mean), float(std), bool(even)
        self.rotations, self.labels, self.views = rotations, labels, bool(views) and objective.augment
        self._order = self._order_for_epoch()

    def _order_for_epoch(self):
        return epoch_order(self.indices, self.seed, self.epoch, shuffle=self.shuffle, volumes=self.volumes, batch_size=self.batch_size)

    def __len__(self):
        return batch_count(len(self.indices), self.batch_size, self.multiple_of, self.even)

    def __getitem__(self, i):
        chosen = batch_rows(self._order, i, self.batch_size, self.multiple_of)
        x = standardized(self.volumes[chosen], self.mean, self.std)
        flips = np.ones((len(chosen), 3), dtype=np.int64)
        batch = {"view": x, "target": x}
        if self.views:
            rng = augment.batch_rng(self.seed, self.epoch, i)
            flips, shifts = augment.draw_views(rng, len(x), x.shape[1:])
            batch["target"] = augment.geometric_view(x, flips, shifts)
            batch["view"] = augment.noisy(rng, batch["target"])
            batch["view_b"] = augment.noisy(rng, augment.geometric_view(x, *augment.draw_views(rng, len(x), x.shape[1:])))
        elif self.objective.augment:
            batch["view_b"] = x
        if self.objective.loss == "wedge":
            rotation = np.tile(np.eye(3), (len(chosen), 1, 1)) if self.rotations is None else self.rotations[chosen]
            rotation = np.einsum("bij,bjk->bik", rotation, np.stack([flip_matrix(f) for f in flips]))
            batch["mask"] = wedge_masks(x.shape[1:], rotation, self.objective.wedge)
        if self.objective.self_label:
            batch["label"] = self.labels[chosen] if self.labels is not None else np.full(len(chosen), -1, np.int32)
        return ({k: (v[..., None] if k in ("view", "target", "view_b") else v) for k, v in batch.items()},)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._order_for_epoch()


def objective_training(objective: Objective, trainer: keras.Model, encoder: keras.Model, volumes: Volumes,
                       n_train: int, batch_size: int, *, seed: int, epoch: int, multiple_of: int, mean: float, std: float,
                       rotations: np.ndarray | None, model_dir: str | os.PathLike, epochs: int, even: bool = False,
                       ) -> tuple[ObjectiveBatches, ObjectiveBatches | None, list[keras.callbacks.Callback]]:
    """Training batches, validation batches (or None) and the callbacks that ``objective`` needs."""
    labels = np.full(len(volumes), -1, dtype=np.int32) if objective.self_label else None
    common = dict(multiple_of=multiple_of, mean=mean, std=std, rotations=rotations, labels=labels, even=even)
    train = ObjectiveBatches(volumes, np.arange(n_train), batch_size, objective, shuffle=True, seed=seed, epoch=epoch,
                             views=True, **common)
    val = ObjectiveBatches(volumes, np.arange(n_train, len(volumes)), batch_size, objective, shuffle=False,
                           **common) if n_train < len(volumes) else None
    callbacks = []
    if objective.self_label:
        callbacks.append(SelfLabelRounds(encoder, volumes, n_train, train, trainer.get_layer(HEAD_NAME), k=objective.self_label_k,
                                         epochs=epochs, rounds=objective.self_label, seed=seed, model_dir=model_dir,
                                         initial_epoch=epoch))
    return train, val, callbacks
