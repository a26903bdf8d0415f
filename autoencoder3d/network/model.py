"""The Autoencoder3D network (published section 4) as Keras 3 functional models.

Encoder: conv block, max-pool, conv block, max-pool, flatten, Dense(32, ReLU)
with an L1 activity penalty. Decoder: Dense, reshape, upsample, conv block,
upsample, conv block, linear Conv3D(1) (computed by this module's :class:`Conv3D`). The autoencoder chains the two models,
so the three share their weights: after training, the encoder and decoder work
on their own.

The saved encoder takes subvolumes in the data's own units and the saved
decoder returns them: the network itself works on standardized intensities
(``(v - mean) / std`` of the training set), applied by a :class:`Standardize`
layer at the encoder's input and undone by an :class:`Unstandardize` layer at
the decoder's output. With mean 0 and std 1 (the literal published setting)
both are the identity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import keras
from keras import layers, ops

from ..box import shape_problem

FILTERS = 32
KERNEL = 3
L1_FACTOR = 1e-4  # written 10e-5 in the published code


@dataclass
class CodeSettings:
    """How the 32-number code is trained; the defaults keep it alive in any units.

    Attributes:
        l1: L1 activity penalty factor on the code (published 1e-4).
        l1_reduction: ``"sum"`` over the batch (Keras 1, published) or ``"mean"``
            per subvolume (its weight no longer grows with the batch size).
        code_norm: batch-normalize the code layer's pre-activation, so that no
            code unit can be switched off for good by the first optimizer steps.
        standardize: train on ``(v - mean) / std`` of the training set, so that
            results do not depend on the units the tomogram is stored in.
    """

    l1: float = L1_FACTOR
    l1_reduction: str = "mean"
    code_norm: bool = True
    standardize: bool = True

    @classmethod
    def published(cls, l1: float = L1_FACTOR) -> CodeSettings:
        """The literal published setting: raw intensities, batch-summed L1, plain Dense + ReLU code."""
        return cls(l1=l1, l1_reduction="sum", code_norm=False, standardize=False)

    def to_dict(self) -> dict[str, float | str | bool]:
        return asdict(self)


@keras.saving.register_keras_serializable(package="autoencoder3d")
class BatchSumL1(layers.Layer):
    """Identity layer adding an L1 penalty ``factor * |x|`` on its input to the loss.

    ``reduction="sum"`` sums it over the whole batch as Keras 1 did (the
    published strength, which grows with the batch size); ``"mean"`` averages
    it over the subvolumes of the batch. It computes in float32 so that the
    penalty also works under mixed precision.
    """

    def __init__(self, factor: float = L1_FACTOR, reduction: str = "sum", **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"L1 reduction must be 'sum' or 'mean', got {reduction!r}")
        self.factor = float(factor)
        self.reduction = reduction

    def call(self, inputs: Any) -> Any:
        if self.factor:
            penalty = ops.sum(ops.abs(inputs))
            if self.reduction == "mean":
                penalty = penalty / ops.cast(ops.shape(inputs)[0], penalty.dtype)
            self.add_loss(self.factor * penalty)
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="autoencoder3d")
class Standardize(layers.Layer):
    """``(x - mean) / std`` with constants fixed at training time (saved with the model)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mean, self.std = float(mean), float(std)

    def call(self, inputs: Any) -> Any:
        return (ops.cast(inputs, "float32") - self.mean) / self.std

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="autoencoder3d")
class Unstandardize(Standardize):
    """``x * std + mean``: back to the data's own units."""

    def call(self, inputs: Any) -> Any:
        return ops.cast(inputs, "float32") * self.std + self.mean


@keras.saving.register_keras_serializable(package="autoencoder3d")
class Conv3D(layers.Conv3D):
    """Keras's Conv3D, with one output channel computed another way: the same weights and numbers, faster.

    A ``"same"`` convolution to one channel is a sum over the kernel's taps of
    ``x[p + offset] . w[offset]``. Here one matrix product gives, at every voxel,
    the dot product with every tap's weights (the convolution's multiply-adds,
    in a matmul), and a fixed 0/1 convolution adds each tap's map at its offset.
    On a CPU the direct kernel for a single output channel, and its filter
    gradient, are slow: the layer alone runs 3x faster this way (README,
    "Training speed on a CPU"); the filter gradient becomes a matmul. Weights
    (kernel, bias) are Conv3D's, so weights of either load into the other;
    outputs and gradients agree to float rounding (within 1e-5 of the
    largest, tested). Other settings (strides, dilation, more filters) use
    Conv3D's own path.

    It keeps the name Conv3D because Keras keys a layer's weights in weight
    files by its class name: resume points and best weights written with
    Keras's Conv3D load into it, and back.
    """

    def _taps_apply(self):
        return (self.filters == 1 and self.groups == 1 and self.padding == "same" and self.data_format == "channels_last"
                and all(s == 1 for s in self.strides) and all(d == 1 for d in self.dilation_rate)
                and all(k % 2 == 1 for k in self.kernel_size))

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        if not self._taps_apply():
            return super().convolution_op(inputs, kernel)
        taps = self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        # a plain 2-D matmul: its gradients are matmuls too (an einsum over "..." made TensorFlow
        # materialize a taps x channels x voxels tensor for the kernel's gradient)
        flat = ops.reshape(inputs, (-1, ops.shape(inputs)[-1]))
        per_tap = ops.matmul(flat, ops.transpose(ops.reshape(kernel, (taps, -1))))
        per_tap = ops.reshape(per_tap, tuple(ops.shape(inputs)[:-1]) + (taps,))
        place = ops.reshape(ops.eye(taps, dtype=per_tap.dtype), tuple(self.kernel_size) + (taps, 1))
        return ops.conv(per_tap, place, strides=1, padding="same", data_format="channels_last")


class Models(NamedTuple):
    """The published three models in the data's units, and the standardized network that is trained."""

    autoencoder: keras.Model
    encoder: keras.Model
    decoder: keras.Model
    trainer: keras.Model


def conv_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.Conv3D(filters, KERNEL, padding="same", use_bias=True, name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def check_box(shape: Sequence[int]) -> None:
    """Raise ValueError unless ``shape`` follows the box rule (:func:`autoencoder3d.box.shape_problem`)."""
    problem = shape_problem(shape)
    if problem:
        raise ValueError(problem)


def _code_layer(x, encoding_dim, settings):
    # The code layer computes in float32 (also under mixed precision) for the penalty.
    if settings.code_norm:
        x = layers.Dense(encoding_dim, use_bias=False, dtype="float32", name="code_dense")(x)
        x = layers.BatchNormalization(momentum=0.9, dtype="float32", name="code_norm")(x)
        code = layers.ReLU(dtype="float32", name="code")(x)
    else:
        code = layers.Dense(encoding_dim, activation="relu", dtype="float32", name="code")(x)
    return BatchSumL1(settings.l1, settings.l1_reduction, name="code_l1")(code)


def build_core_encoder(shape: Sequence[int] = (32, 32, 32), encoding_dim: int = 32, filters: int = FILTERS,
                       settings: CodeSettings | None = None) -> keras.Model:
    """Encoder on standardized volumes: ``(n1, n2, n3, 1)`` to ``encoding_dim`` numbers."""
    settings = settings or CodeSettings()
    check_box(shape)
    inputs = keras.Input(shape=tuple(shape) + (1,), name="standardized")
    x = conv_block(inputs, filters, "enc1")
    x = layers.MaxPooling3D(2, padding="same", name="enc1_pool")(x)
    x = conv_block(x, filters, "enc2")
    x = layers.MaxPooling3D(2, padding="same", name="enc2_pool")(x)
    x = layers.Flatten(name="enc_flatten")(x)
    return keras.Model(inputs, _code_layer(x, encoding_dim, settings), name="core_encoder")


def build_core_decoder(shape: Sequence[int] = (32, 32, 32), encoding_dim: int = 32, filters: int = FILTERS) -> keras.Model:
    """Decoder to standardized volumes: ``encoding_dim`` numbers to ``(n1, n2, n3, 1)``."""
    check_box(shape)
    small = tuple(int(s) // 4 for s in shape)
    code = keras.Input(shape=(encoding_dim,), name="code")
    x = layers.Dense(small[0] * small[1] * small[2] * filters, activation="relu", name="dec_dense")(code)
    x = layers.Reshape(small + (filters,), name="dec_reshape")(x)
    x = layers.UpSampling3D(2, name="dec1_up")(x)
    x = conv_block(x, filters, "dec1")
    x = layers.UpSampling3D(2, name="dec2_up")(x)
    x = conv_block(x, filters, "dec2")
    outputs = Conv3D(1, KERNEL, padding="same", dtype="float32", name="reconstruction")(x)
    return keras.Model(code, outputs, name="core_decoder")


def build_autoencoder(shape: Sequence[int] = (32, 32, 32), encoding_dim: int = 32, filters: int = FILTERS, l1: float | None = None, *,
                      settings: CodeSettings | None = None, mean: float = 0.0, std: float = 1.0) -> Models:
    """The three published models, sharing weights, plus the model that is trained.

    Args:
        shape: subvolume shape; every edge a multiple of 4.
        encoding_dim: length of the code (published: 32).
        filters: filters of every conv block (published: 32).
        l1: L1 penalty factor (overrides ``settings.l1`` when given).
        settings: :class:`CodeSettings` (default: the unit-free default).
        mean, std: the training set's intensity mean and standard deviation.

    Returns:
        :class:`Models` ``(autoencoder, encoder, decoder, trainer)``, not compiled:
        the first three in the data's own units, ``trainer`` the same network on
        standardized volumes (what ``fit`` trains). Unpacks like the published
        three: ``autoencoder, encoder, decoder, _ = build_autoencoder(...)``.
    """
    settings = settings or CodeSettings()
    if l1 is not None:
        settings = CodeSettings(**{**settings.to_dict(), "l1": l1})
    core_encoder = build_core_encoder(shape, encoding_dim, filters, settings)
    core_decoder = build_core_decoder(shape, encoding_dim, filters)
    raw = keras.Input(shape=tuple(shape) + (1,), name="subvolume")
    encoder = keras.Model(raw, core_encoder(Standardize(mean, std, name="standardize")(raw)), name="encoder")
    code = keras.Input(shape=(encoding_dim,), name="code")
    decoder = keras.Model(code, Unstandardize(mean, std, name="unstandardize")(core_decoder(code)), name="decoder")
    autoencoder = keras.Model(raw, decoder(encoder(raw)), name="autoencoder")
    standardized = keras.Input(shape=tuple(shape) + (1,), name="standardized")
    trainer = keras.Model(standardized, core_decoder(core_encoder(standardized)), name="trainer")
    return Models(autoencoder, encoder, decoder, trainer)


def count_flops(shape: Sequence[int] = (32, 32, 32), encoding_dim: int = 32, filters: int = FILTERS) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of the autoencoder."""
    n = int(shape[0] * shape[1] * shape[2])
    k3 = KERNEL**3
    conv = lambda voxels, cin, cout: 2 * voxels * k3 * cin * cout  # noqa: E731
    flops = conv(n, 1, filters) + conv(n // 8, filters, filters)
    flops += 2 * (n // 64) * filters * encoding_dim * 2  # code and decoder dense layers
    flops += conv(n // 8, filters, filters) + conv(n, filters, filters) + conv(n, filters, 1)
    return flops


def standardization(model: keras.layers.Layer) -> tuple[float, float]:
    """``(mean, std)`` of the :class:`Standardize` layer inside ``model`` (``(0, 1)`` if it has none)."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, Standardize) and not isinstance(layer, Unstandardize):
            return layer.mean, layer.std
        found = standardization(layer)
        if found != (0.0, 1.0):
            return found
    return 0.0, 1.0


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a model saved by this package (its custom layers registered)."""
    return keras.saving.load_model(path, compile=False)
