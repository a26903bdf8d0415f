import numpy as np
import pytest

keras = pytest.importorskip("keras")

from autoencoder3d.model import build_autoencoder, count_flops, load_model  # noqa: E402


def test_shapes_and_parameter_count_match_the_published_network():
    autoencoder, encoder, decoder = build_autoencoder((16, 16, 16), encoding_dim=32)
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


def test_encoder_and_decoder_share_weights_with_the_autoencoder():
    autoencoder, encoder, decoder = build_autoencoder((8, 8, 8))
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 8, 1)).astype("float32")
    before = autoencoder.predict(x, verbose=0)
    code_layer = encoder.get_layer("code")
    kernel, bias = code_layer.get_weights()
    code_layer.set_weights([kernel, bias + 1.0])
    after = autoencoder.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, decoder.predict(encoder.predict(x, verbose=0), verbose=0), rtol=1e-5, atol=1e-6)


def test_loss_is_mse_plus_batch_summed_l1_on_the_code():
    autoencoder, encoder, _ = build_autoencoder((8, 8, 8))
    autoencoder.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(1).random((6, 8, 8, 8, 1)).astype("float32")
    loss = autoencoder.evaluate(x, x, batch_size=6, verbose=0)
    mse = float(np.mean((autoencoder.predict(x, verbose=0) - x) ** 2))
    l1 = float(np.abs(encoder.predict(x, verbose=0)).sum())
    assert l1 > 0
    assert loss == pytest.approx(mse + 1e-4 * l1, rel=1e-4)  # summed over the batch, as Keras 1 did


def test_edges_must_be_multiples_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        build_autoencoder((18, 16, 16))


def test_saved_models_reload_and_encode_identically(tmp_path):
    _, encoder, _ = build_autoencoder((8, 8, 8))
    encoder.save(tmp_path / "enc.keras")
    x = np.random.default_rng(2).random((4, 8, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(load_model(str(tmp_path / "enc.keras")).predict(x, verbose=0), encoder.predict(x, verbose=0))


def test_flop_count_of_the_32_cube_model():
    n = 32**3
    by_hand = 2 * 27 * (n * 1 * 32 + n // 8 * 32 * 32 + n // 8 * 32 * 32 + n * 32 * 32 + n * 32 * 1) + 2 * 2 * (n // 64 * 32 * 32)
    assert count_flops((32, 32, 32)) == by_hand
