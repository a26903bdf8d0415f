"""The reconstruction layer, autoencoder3d.network.model.Conv3D: Keras Conv3D's numbers and weights, and old models still load."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402

from autoencoder3d.network.model import Conv3D as TapSumConv3D  # noqa: E402
from autoencoder3d.network.model import build_autoencoder, load_model  # noqa: E402

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def pair(kernel=3, channels=32, **options):
    """A Conv3D and a TapSumConv3D on (6, 8, 10, channels) inputs, with the same random weights."""
    made = []
    for cls in (keras.layers.Conv3D, TapSumConv3D):
        inputs = keras.Input((6, 8, 10, channels))
        made.append(keras.Model(inputs, cls(1, kernel, padding="same", name="reconstruction", **options)(inputs)))
    rng = np.random.default_rng(0)
    weights = [rng.normal(scale=0.1, size=w.shape).astype(np.float32) for w in made[0].get_weights()]
    for model in made:
        model.set_weights(weights)
    return made


def output_and_gradients(model, x):
    x = tf.constant(x)
    upstream = tf.constant(np.random.default_rng(3).normal(size=x.shape[:-1] + (1,)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
        loss = tf.reduce_sum(y * upstream)  # gradients of the layer alone, for a fixed upstream gradient
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x] + model.trainable_weights)]


@pytest.mark.parametrize("kernel", [3, (3, 1, 5)])
def test_same_outputs_and_gradients_as_conv3d(kernel):
    conv, taps = pair(kernel)
    x = np.random.default_rng(1).normal(size=(4, 6, 8, 10, 32)).astype(np.float32)
    for want, got in zip(output_and_gradients(conv, x), output_and_gradients(taps, x)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_the_models_reconstruct_with_it_and_old_conv3d_weights_load_into_it(tmp_path):
    models = build_autoencoder((8, 8, 8))
    layer = models.decoder.get_layer("core_decoder").get_layer("reconstruction")
    assert isinstance(layer, TapSumConv3D)
    # a model saved before (plain Conv3D) loads as it was; its weights load 1:1 into the new layer
    conv, taps = pair()
    conv.save(tmp_path / "old.keras")
    conv.save_weights(tmp_path / "old.weights.h5")
    old = load_model(tmp_path / "old.keras")
    assert type(old.get_layer("reconstruction")) is keras.layers.Conv3D
    taps.set_weights([np.zeros_like(w) for w in taps.get_weights()])
    taps.load_weights(tmp_path / "old.weights.h5")
    x = np.random.default_rng(2).normal(size=(2, 6, 8, 10, 32)).astype(np.float32)
    want = old.predict(x, verbose=0)
    np.testing.assert_allclose(taps.predict(x, verbose=0), want, rtol=0, atol=1e-5 * np.abs(want).max())
    # and a new model saves and loads as TapSumConv3D
    taps.save(tmp_path / "new.keras")
    again = load_model(tmp_path / "new.keras")
    assert type(again.get_layer("reconstruction")) is TapSumConv3D and again.get_layer("reconstruction").__module__ == "autoencoder3d.network.model"
    np.testing.assert_array_equal(again.predict(x, verbose=0), taps.predict(x, verbose=0))
