"""The Autoencoder3D network (published section 4) as Keras 3 functional models.

Encoder: conv block, max-pool, conv block, max-pool, flatten, Dense(32, ReLU)
with an L1 activity penalty. Decoder: Dense, reshape, upsample, conv block,
upsample, conv block, linear Conv3D(1). The autoencoder chains the two models,
so the three share their weights: after training, the encoder and decoder work
on their own.
"""

import keras
from keras import layers, ops

FILTERS = 32
KERNEL = 3
L1_FACTOR = 1e-4  # written 10e-5 in the published code


@keras.saving.register_keras_serializable(package="autoencoder3d")
class BatchSumL1(layers.Layer):
    """Identity layer adding ``factor * sum(|x|)`` over the whole batch to the loss.

    Keras 1 summed activity penalties over the batch; Keras 3 divides them by
    the batch size, which would make the published sparsity 128 times weaker at
    batch 128. This layer keeps the published strength. It computes in float32
    so that the penalty also works under mixed precision.
    """

    def __init__(self, factor=L1_FACTOR, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, inputs):
        if self.factor:
            self.add_loss(self.factor * ops.sum(ops.abs(inputs)))
        return inputs

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _conv_block(x, filters, name):
    x = layers.Conv3D(filters, KERNEL, padding="same", use_bias=True, name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def check_box(shape):
    """Raise ValueError unless every edge of ``shape`` is divisible by 4."""
    if len(shape) != 3 or any(int(s) % 4 or int(s) <= 0 for s in shape):
        raise ValueError(f"subvolume shape {tuple(shape)}: every edge must be a positive multiple of 4")


def build_encoder(shape=(32, 32, 32), encoding_dim=32, filters=FILTERS, l1=L1_FACTOR):
    """Encoder model: ``(n1, n2, n3, 1)`` volumes to ``encoding_dim`` numbers."""
    check_box(shape)
    inputs = keras.Input(shape=tuple(shape) + (1,), name="subvolume")
    x = _conv_block(inputs, filters, "enc1")
    x = layers.MaxPooling3D(2, padding="same", name="enc1_pool")(x)
    x = _conv_block(x, filters, "enc2")
    x = layers.MaxPooling3D(2, padding="same", name="enc2_pool")(x)
    x = layers.Flatten(name="enc_flatten")(x)
    # The code layer computes in float32 (also under mixed precision) for the penalty.
    code = layers.Dense(encoding_dim, activation="relu", dtype="float32", name="code")(x)
    code = BatchSumL1(l1, name="code_l1")(code)
    return keras.Model(inputs, code, name="encoder")


def build_decoder(shape=(32, 32, 32), encoding_dim=32, filters=FILTERS):
    """Decoder model: ``encoding_dim`` numbers to ``(n1, n2, n3, 1)`` volumes."""
    check_box(shape)
    small = tuple(int(s) // 4 for s in shape)
    code = keras.Input(shape=(encoding_dim,), name="code")
    x = layers.Dense(small[0] * small[1] * small[2] * filters, activation="relu", name="dec_dense")(code)
    x = layers.Reshape(small + (filters,), name="dec_reshape")(x)
    x = layers.UpSampling3D(2, name="dec1_up")(x)
    x = _conv_block(x, filters, "dec1")
    x = layers.UpSampling3D(2, name="dec2_up")(x)
    x = _conv_block(x, filters, "dec2")
    outputs = layers.Conv3D(1, KERNEL, padding="same", dtype="float32", name="reconstruction")(x)
    return keras.Model(code, outputs, name="decoder")


def build_autoencoder(shape=(32, 32, 32), encoding_dim=32, filters=FILTERS, l1=L1_FACTOR):
    """The three published models, sharing weights.

    Args:
        shape: subvolume shape; every edge a multiple of 4.
        encoding_dim: length of the code (published: 32).
        filters: filters of every conv block (published: 32).
        l1: L1 activity penalty on the code, summed over the batch (published: 1e-4).

    Returns:
        (autoencoder, encoder, decoder) as Keras models (not compiled).
    """
    encoder = build_encoder(shape, encoding_dim, filters, l1)
    decoder = build_decoder(shape, encoding_dim, filters)
    inputs = keras.Input(shape=tuple(shape) + (1,), name="subvolume")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    return autoencoder, encoder, decoder


def count_flops(shape=(32, 32, 32), encoding_dim=32, filters=FILTERS):
    """Multiply-add FLOPs (2 per MAC) of one forward pass of the autoencoder."""
    n = int(shape[0] * shape[1] * shape[2])
    k3 = KERNEL**3
    conv = lambda voxels, cin, cout: 2 * voxels * k3 * cin * cout  # noqa: E731
    flops = conv(n, 1, filters) + conv(n // 8, filters, filters)
    flops += 2 * (n // 64) * filters * encoding_dim * 2  # code and decoder dense layers
    flops += conv(n // 8, filters, filters) + conv(n, filters, filters) + conv(n, filters, 1)
    return flops


def load_model(path):
    """Load a model saved by this package (its custom layer registered)."""
    return keras.saving.load_model(path, compile=False)
