import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from autoencoder3d.network import train as training  # noqa: E402
from autoencoder3d.network.train import ArrayBatches, ResumableCheckpoint, published_optimizer, split_validation, train_autoencoder  # noqa: E402

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def test_learning_rate_decays_per_batch_as_keras1():
    optimizer = published_optimizer()
    assert optimizer.epsilon == 1e-8
    assert optimizer.beta_1 == 0.9 and optimizer.beta_2 == 0.999
    optimizer.build([keras.Variable(np.zeros(3))])
    for t in (0, 1, 10, 12345, 10**6):
        optimizer.iterations.assign(t)
        assert float(optimizer.learning_rate) == pytest.approx(0.001 / (1 + 0.001 / 500 * t), rel=1e-6)


def test_validation_is_the_tail():
    assert split_validation(100, 0.1) == 90
    assert split_validation(48, 0.1) == 43  # floor(48 * 0.9)
    assert split_validation(10, 0.0) == 10
    with pytest.raises(ValueError):
        split_validation(1, 0.5)


def test_batches_cover_each_sample_once_per_epoch_and_repeat_for_a_seed():
    volumes = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 2, 2, 2), np.float32)
    data = ArrayBatches(volumes, np.arange(9), 4, shuffle=True, seed=7)
    seen = np.concatenate([data[i][0][:, 0, 0, 0, 0] for i in range(len(data))])
    assert sorted(seen) == list(range(9))
    again = ArrayBatches(volumes, np.arange(9), 4, shuffle=True, seed=7)
    np.testing.assert_array_equal(data[0][0], again[0][0])
    data.on_epoch_end()
    resumed = ArrayBatches(volumes, np.arange(9), 4, shuffle=True, seed=7, epoch=1)
    np.testing.assert_array_equal(data[1][0], resumed[1][0])
    assert data[0][0].shape[1:] == (2, 2, 2, 1)


class FakeModel:
    stop_training = False


def test_early_stopping_counts_like_keras1(tmp_path, monkeypatch):
    monkeypatch.setattr(ResumableCheckpoint, "_save_weights", lambda self, name: None)
    monkeypatch.setattr(ResumableCheckpoint, "_save_resume_point", lambda self, n: None)
    callback = ResumableCheckpoint(str(tmp_path), patience=2)
    model = FakeModel()
    model.optimizer = type("O", (), {"learning_rate": 0.001})()
    callback.set_model(model) if hasattr(callback, "set_model") else None
    callback._model = model
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95]
    stopped_at = None
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
        if model.stop_training and stopped_at is None:
            stopped_at = epoch
    # Keras 1: stop when `patience` earlier epochs brought no improvement (epochs 2, 3 -> stop at 4)
    assert stopped_at == 4 and callback.best == 0.9


def small_volumes(n=40, edge=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, edge, edge, edge)).astype(np.float32)


def test_killed_training_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    volumes = small_volumes()
    original = ResumableCheckpoint.on_epoch_end

    def killed_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "on_epoch_end", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(volumes, str(tmp_path), epochs=4, batch_size=16, verbose=0)
    state = training.resume_state(str(tmp_path))
    assert state["epochs_done"] == 2 and not os.path.exists(training.model_path(str(tmp_path), "autoencoder"))
    assert not os.path.exists(tmp_path / training.STATE_FILE)  # the resume point is one file
    monkeypatch.setattr(ResumableCheckpoint, "on_epoch_end", original)
    models, info = train_autoencoder(volumes, str(tmp_path), epochs=4, batch_size=16, verbose=0)
    assert info["resumed_from_epoch"] == 2 and info["epochs_run"] == 2 and info["epochs_total"] == 4
    assert [row["epoch"] for row in info["history"]] == [1, 2, 3, 4]
    assert training.saved_models_exist(str(tmp_path))
    assert not os.path.exists(tmp_path / training.LAST_WEIGHTS)
    lines = open(tmp_path / training.HISTORY_CSV).read().splitlines()
    assert lines[0] == "epoch,loss,val_loss,learning_rate" and len(lines) == 5
    # optimizer steps continued: 3 batches of 16 per epoch (36 training samples), 4 epochs
    assert info["optimizer_steps"] == 12


def test_best_weights_are_the_ones_kept(tmp_path):
    keras.utils.set_random_seed(1)
    volumes = small_volumes(seed=1)
    models, info = train_autoencoder(volumes, str(tmp_path), epochs=3, batch_size=16, verbose=0)
    autoencoder = models[0]
    autoencoder.compile(loss="mse")
    val = volumes[36:][..., None]
    scale = info["standardization"]
    standardized_val_loss = autoencoder.evaluate(val, val, batch_size=16, verbose=0) / scale["std"] ** 2
    # the L1 penalty is part of val_loss; in the data's units the MSE part scales with std^2
    l1 = info["code_settings"]["l1"] * float(np.abs(models[1].predict(val, verbose=0)).sum(axis=1).mean())
    mse = float(np.mean((autoencoder.predict(val, verbose=0) - val) ** 2)) / scale["std"] ** 2
    assert mse + l1 == pytest.approx(info["best_val_loss"], rel=1e-3)
    assert standardized_val_loss > 0
    assert info["best_val_loss"] == min(row["val_loss"] for row in info["history"])
