"""Saved models read back with one-line refusals (network.checkpoints)."""

import pytest

keras = pytest.importorskip("keras")

from autoencoder3d.errors import InputError  # noqa: E402
from autoencoder3d.network.checkpoints import load_checked_model  # noqa: E402


def test_a_cut_short_model_file_is_called_damaged_not_missing(tmp_path):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.keras")
    assert load_checked_model(tmp_path / "m.keras", (3,), (2,)).output_shape == (None, 2)
    whole = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut.keras: the saved model is damaged \(not a whole .keras archive.*--retrain"):
        load_checked_model(tmp_path / "cut.keras")
