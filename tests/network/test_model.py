import numpy as np
import pytest

keras = pytest.importorskip("keras")

from autoencoder3d.network.model import CodeSettings, build_autoencoder, count_flops, load_model  # noqa: E402

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

PUBLISHED = CodeSettings.published()


def test_shapes_and_parameter_count_match_the_published_network():
    autoencoder, encoder, decoder, _ = build_autoencoder((16, 16, 16), encoding_dim=32, settings=PUBLISHED)
    assert encoder.output.shape == (None, 32)
    assert decoder.output.shape == (None, 16, 16, 16, 1)
    assert autoencoder.output.shape == (None, 16, 16, 16, 1)
    conv = lambda cin, cout: 27 * cin * cout + cout  # noqa: E731
    flat = 4 * 4 * 4 * 32
    expected_encoder = conv(1, 32) + conv(32, 32) + flat * 32 + 32
    expected_decoder = 32 * flat + flat + conv(32, 32) + conv(32, 32) + conv(32, 1)
    assert encoder.count_params() == expected_encoder
    assert decoder.count_params() == expected_decoder
    assert autoencoder.count_params() == expected_encoder + expected_decoder


def test_default_code_layer_is_batch_normalized_without_bias():
    _, encoder, _, trainer = build_autoencoder((16, 16, 16), encoding_dim=32)
    conv = lambda cin, cout: 27 * cin * cout + cout  # noqa: E731
    flat = 4 * 4 * 4 * 32
    # Dense without bias, then BatchNormalization (gamma, beta + moving mean and variance)
    assert encoder.count_params() == conv(1, 32) + conv(32, 32) + flat * 32 + 4 * 32
    assert trainer.count_params() == encoder.count_params() + 32 * flat + flat + 2 * conv(32, 32) + conv(32, 1)


def test_saved_models_work_in_the_data_units_and_train_on_standardized_ones():
    autoencoder, encoder, decoder, trainer = build_autoencoder((8, 8, 8), mean=5.0, std=100.0)
    x = np.random.default_rng(3).normal(5.0, 100.0, size=(4, 8, 8, 8, 1)).astype("float32")
    standardized = (x - 5.0) / 100.0
    core_out = trainer.predict(standardized, verbose=0)
    np.testing.assert_allclose(autoencoder.predict(x, verbose=0), core_out * 100.0 + 5.0, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(decoder.predict(encoder.predict(x, verbose=0), verbose=0), core_out * 100.0 + 5.0, rtol=1e-4, atol=1e-3)

def test_encoder_and_decoder_share_weights_with_the_autoencoder():
    autoencoder, encoder, decoder, _ = build_autoencoder((8, 8, 8), settings=PUBLISHED)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 8, 1)).astype("float32")
    before = autoencoder.predict(x, verbose=0)
    code_layer = encoder.get_layer("core_encoder").get_layer("code")
    kernel, bias = code_layer.get_weights()
    code_layer.set_weights([kernel, bias + 1.0])
    after = autoencoder.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, decoder.predict(encoder.predict(x, verbose=0), verbose=0), rtol=1e-5, atol=1e-6)


def test_published_loss_is_mse_plus_batch_summed_l1_on_the_code():
    autoencoder, encoder, _, _ = build_autoencoder((8, 8, 8), settings=PUBLISHED)
    autoencoder.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(1).random((6, 8, 8, 8, 1)).astype("float32")
    loss = autoencoder.evaluate(x, x, batch_size=6, verbose=0)
    mse = float(np.mean((autoencoder.predict(x, verbose=0) - x) ** 2))
    l1 = float(np.abs(encoder.predict(x, verbose=0)).sum())
    assert l1 > 0
    assert loss == pytest.approx(mse + 1e-4 * l1, rel=1e-4)  # summed over the batch, as Keras 1 did


def test_default_loss_averages_the_l1_penalty_over_the_batch():
    _, encoder, _, trainer = build_autoencoder((8, 8, 8), settings=CodeSettings(l1=0.01))
    trainer.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(1).normal(size=(6, 8, 8, 8, 1)).astype("float32")
    loss = trainer.evaluate(x, x, batch_size=6, verbose=0)
    mse = float(np.mean((trainer.predict(x, verbose=0) - x) ** 2))
    l1 = float(np.abs(encoder.predict(x, verbose=0)).sum())
    assert l1 > 0
    assert loss == pytest.approx(mse + 0.01 * l1 / 6, rel=1e-4)

def test_edges_must_be_multiples_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        build_autoencoder((18, 16, 16))


def test_saved_models_reload_and_encode_identically(tmp_path):
    _, encoder, _, _ = build_autoencoder((8, 8, 8), mean=1.5, std=3.0)
    encoder.save(tmp_path / "enc.keras")
    x = np.random.default_rng(2).random((4, 8, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(load_model(str(tmp_path / "enc.keras")).predict(x, verbose=0), encoder.predict(x, verbose=0))


def test_flop_count_of_the_32_cube_model():
    n = 32**3
    by_hand = 2 * 27 * (n * 1 * 32 + n // 8 * 32 * 32 + n // 8 * 32 * 32 + n * 32 * 32 + n * 32 * 1) + 2 * 2 * (n // 64 * 32 * 32)
    assert count_flops((32, 32, 32)) == by_hand
