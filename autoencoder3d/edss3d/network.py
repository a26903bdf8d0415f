"""EDSS3D: encoder-decoder semantic segmentation trained on chosen clusters (published section 8).

The scientist picks clusters after ``autoencoder3d train`` and gives each a
segmentation label (1, 2, ...; 0 is the background). This module then

1. decodes every subvolume with the trained autoencoder (``decoded/decoded.pickle``),
2. labels the subvolumes of the chosen clusters and draws as many unlabelled
   ones at random as background patches,
3. builds the per-voxel targets: for a patch with label ``l`` the voxels whose
   decoded density is more than ``iso`` standard deviations denser than the
   mean (``(mean - decoded) / std > iso`` with dense matter dark, the published
   ``-decoded > iso`` when mean 0 and std 1; mirrored for bright contrast) are
   class ``l``, the rest class 0; a background patch is class 0 everywhere;
   ``iso`` is by default Otsu's threshold of the labelled patches
   (:mod:`autoencoder3d.edss3d.labels`),
4. trains the published network on the raw subvolumes (Adam 0.001,
   categorical cross-entropy, batch 128, validation 0.1, early stopping
   patience 20, up to 10000 epochs) and saves it under ``model-seg/``,
5. predicts: per voxel the winning class keeps its probability, the others are
   0 (``prediction/vs_p.pickle``), plus a label map per subvolume.

Targets are kept as class indices (``uint8``, one per voxel) rather than the
published one-hot arrays: the published targets are exactly one-hot, so the
sparse cross-entropy on the indices equals the published categorical
cross-entropy, at 1/n_class of the memory. :func:`one_hot` gives the published
layout.

Selection and targets live in :mod:`autoencoder3d.edss3d.labels`, the ``edss3d
train`` / ``predict`` jobs in :mod:`autoencoder3d.edss3d.jobs` (both importable from
:mod:`autoencoder3d.edss3d`), whole-tomogram segmentation in :mod:`autoencoder3d.edss3d.tomogram`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ..runs.folder import SEG_BEST, SEG_MODEL
from .labels import VoxelWeights

if TYPE_CHECKING:
    import keras

    from ..volume import Volumes

log = logging.getLogger(__name__)



# ---------------------------------------------------------------- network

def build_segmenter(shape: Sequence[int], n_class: int, filters: int = 32) -> keras.Model:
    """The published EDSS3D network.

    Conv block, max-pool, conv block, max-pool, conv block, upsample, conv
    block, upsample, conv block, Conv3D(n_class, 1x1x1), reshape to
    (voxels, n_class), softmax over the classes. A conv block is Conv3D(32,
    3x3x3, same) + ReLU, as in the autoencoder.

    Args:
        shape: subvolume shape, every edge a multiple of 4.
        n_class: number of classes (max label + 1).

    Returns:
        an uncompiled ``keras.Model`` from ``(n1, n2, n3, 1)`` to ``(voxels, n_class)``.
    """
    import keras
    from keras import layers

    from ..network.model import check_box, conv_block

    check_box(shape)
    inputs = keras.Input(shape=tuple(int(s) for s in shape) + (1,), name="subvolume")
    x = inputs
    # encoder
    for i in (1, 2):
        x = conv_block(x, filters, f"seg_enc{i}")
        x = layers.MaxPooling3D(2, name=f"seg_enc{i}_pool")(x)
    x = conv_block(x, filters, "seg_mid")
    # decoder
    for i in (1, 2):
        x = layers.UpSampling3D(2, name=f"seg_dec{i}_up")(x)
        x = conv_block(x, filters, f"seg_dec{i}")
    x = layers.Conv3D(n_class, 1, dtype="float32", name="seg_classes")(x)
    x = layers.Reshape((-1, n_class), name="seg_voxels")(x)
    outputs = layers.Softmax(axis=-1, dtype="float32", name="seg_softmax")(x)
    return keras.Model(inputs, outputs, name="edss3d")


def segmenter_box(model: keras.Model) -> tuple[int, ...]:
    """The subvolume shape a segmentation model takes."""
    return tuple(int(s) for s in model.input_shape[1:4])


def segmenter_classes(model: keras.Model) -> int:
    """Number of classes of a segmentation model."""
    return int(model.output_shape[-1])


def load_segmenter(path: str | os.PathLike) -> keras.Model:
    """Load a saved EDSS3D model.

    Raises:
        InputError: no such file (name the command that makes it), a damaged file,
            non-finite weights, or a Keras model that is not a segmenter.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no trained EDSS3D model here; run 'edss3d train' first (or give --model)")
    from ..network.checkpoints import load_checked_model

    hint = "give the model-seg/model-seg.keras that 'edss3d train' wrote, or run 'edss3d train --retrain'"
    model = load_checked_model(path, hint=hint)
    given, made = model.input_shape, model.output_shape
    if not (_known_shape(given, 5) and given[-1] == 1 and _known_shape(made) and made[-1] >= 2
            and int(np.prod(made[1:-1])) == int(np.prod(given[1:4]))):
        raise InputError(f"{path}: not an EDSS3D segmentation model (it maps {_shape_text(given)} to {_shape_text(made)}, a segmenter maps "
                         f"one-channel boxes to a probability per class and voxel); {hint}")
    return model


def _known_shape(shape, rank=None):
    """A single tensor's shape ``(None, ...)`` with every other axis known (and of ``rank`` axes when given)."""
    return (isinstance(shape, tuple) and len(shape) >= 3 and (rank is None or len(shape) == rank)
            and all(isinstance(s, int) for s in shape[1:]))


def _shape_text(shape):
    return str(tuple(shape[1:])) if isinstance(shape, tuple) else "several tensors"


# ---------------------------------------------------------------- training

def _published_adam(learning_rate=0.001):
    import keras

    # Keras 1's Adam: beta_2 0.999, epsilon 1e-8; no decay in the published seg code.
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def _training_classes():
    """ArrayBatches / ResumableCheckpoint of :mod:`autoencoder3d.network.train`, adapted to (x, target[, weight])."""
    from ..network.train import BEST_WEIGHTS, ArrayBatches, ResumableCheckpoint

    class TargetBatches(ArrayBatches):
        """Batches ``(x, targets[chosen])`` or ``(x, targets[chosen], weights[chosen])``."""

        def __init__(self, volumes, indices, batch_size, *, targets, sample_weights=None, **kwargs):
            super().__init__(volumes, indices, batch_size, **kwargs)
            self.targets = targets
            self.sample_weights = sample_weights

        def __getitem__(self, i):
            chosen = np.sort(self._order[i * self.batch_size : (i + 1) * self.batch_size])
            batch = self.volumes[chosen][..., None]
            if self.sample_weights is None:
                return batch, self.targets[chosen]
            return batch, self.targets[chosen], self.sample_weights[chosen]

    class SegCheckpoint(ResumableCheckpoint):
        """The autoencoder's resumable checkpoint, with the best weights under the EDSS3D name."""

        def _save_weights(self, name):
            super()._save_weights(SEG_BEST if name == BEST_WEIGHTS else name)

    return TargetBatches, SegCheckpoint


def train_segmenter(
    volumes: Volumes, class_maps: np.ndarray, n_class: int, model_dir: str | os.PathLike, *, epochs: int = 10000,
    batch_size: int = 128, patience: int = 20, validation_split: float = 0.1, learning_rate: float = 0.001,
    weights: ArrayLike | None = None, seed: int = 0, verbose: int | str = 1,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the EDSS3D network, resuming from ``model_dir`` if a run was interrupted.

    Args:
        volumes: float32 ``(N, n1, n2, n3)`` raw subvolumes (the network's input).
        class_maps: uint8 ``(N, n1, n2, n3)`` class index per voxel (the targets).
        n_class: number of classes.
        model_dir: folder for checkpoints, history and the saved model.
        weights: per-class weights applied per voxel (``--class-balanced``), or None.
        seed: shuffling seed.

    Returns:
        (model, info) with the best weights loaded and the model saved as ``model-seg.keras``.
    """
    import keras

    from ..network.train import clear_resume_point, resume_training, split_validation, training_info
    from ..util.atomic import atomic_path

    TargetBatches, SegCheckpoint = _training_classes()

    os.makedirs(model_dir, exist_ok=True)
    model = build_segmenter(volumes.shape[1:], n_class)
    model.compile(optimizer=_published_adam(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy())
    state = resume_training(model, model_dir)  # an interrupted run's resume point, if any
    best = os.path.join(model_dir, SEG_BEST)
    if not state and os.path.isfile(best):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(best)
        log.info("starting from the existing best-weights checkpoint %s", best)
    initial_epoch = int(state.get("epochs_done", 0))
    n = len(volumes)
    n_train = split_validation(n, validation_split)
    targets = class_maps.reshape(n, -1)
    sample_weights = VoxelWeights(targets, weights) if weights is not None else None
    common = dict(targets=targets, sample_weights=sample_weights)
    train_data = TargetBatches(volumes, np.arange(n_train), batch_size, shuffle=True, seed=seed, epoch=initial_epoch, **common)
    val_data = TargetBatches(volumes, np.arange(n_train, n), batch_size, shuffle=False, **common) if n_train < n else None
    checkpoint = SegCheckpoint(model_dir, patience, state)
    started = time.perf_counter()
    if initial_epoch < epochs and not checkpoint.stopped_early:
        model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=initial_epoch, callbacks=[checkpoint], verbose=verbose,
                  shuffle=False)  # TargetBatches shuffles from (seed, epoch), the same in a resumed process
    train_seconds = time.perf_counter() - started
    if os.path.isfile(best):
        model.load_weights(best)
    with atomic_path(os.path.join(model_dir, SEG_MODEL), suffix=".keras") as tmp:
        model.save(tmp)
    final = TargetBatches(volumes, np.arange(n_train), batch_size, shuffle=False, targets=targets)
    final_loss = float(model.evaluate(final, verbose=0))
    clear_resume_point(model_dir)
    info = dict(training_info(checkpoint, initial_epoch, n_train, n, train_seconds), final_train_loss=final_loss)
    return model, info


# ---------------------------------------------------------------- prediction

def predict_probabilities(model: keras.Model, volumes: ArrayLike, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, n1, n2, n3, n_class)`` of float32 volumes ``(N, n1, n2, n3)``."""
    volumes = np.asarray(volumes, dtype=np.float32)
    out = model.predict(volumes[..., None], batch_size=batch_size, verbose=0)
    return out.reshape(volumes.shape + (out.shape[-1],))


def keep_max(probabilities: ArrayLike) -> np.ndarray:
    """The published prediction layout: the winning class keeps its probability, the others are 0."""
    probabilities = np.asarray(probabilities)
    winner = np.argmax(probabilities, axis=-1)
    kept = np.zeros_like(probabilities)
    np.put_along_axis(kept, winner[..., None], np.take_along_axis(probabilities, winner[..., None], axis=-1), axis=-1)
    return kept


def check_model_box(model: keras.Model, v_siz: Sequence[int], model_path: str | os.PathLike, data_path: str | os.PathLike) -> None:
    """Raise InputError unless the model takes subvolumes of shape ``v_siz``."""
    box = segmenter_box(model)
    if tuple(box) != tuple(v_siz):
        raise InputError(
            f"{model_path}: the model takes {box[0]}x{box[1]}x{box[2]} subvolumes but {data_path} has "
            f"{v_siz[0]}x{v_siz[1]}x{v_siz[2]}; extract subvolumes of the model's size or train a model on these"
        )
