"""What train and cluster tell the user: the time the training will take, and a last line that says what happened."""

import logging
import os
import warnings

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.network.train_estimate import TrainingTimeEstimate, format_duration

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drive(callback, clock, steps, epochs, batch_seconds, first_batch_seconds=30.0, epoch_end_seconds=0.0):
    """Call the callback the way Keras's fit does, with the clock advancing per batch."""
    callback.set_params({"steps": steps, "epochs": epochs, "verbose": 0})
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.now += first_batch_seconds if (epoch, batch) == (0, 0) else batch_seconds
            callback.on_train_batch_end(batch)
        clock.now += epoch_end_seconds
        callback.on_epoch_end(epoch)
        if callback.estimate_s is not None:
            return


def test_estimate_from_the_first_batches_skips_the_graph_building_one(caplog):
    clock = FakeClock()
    estimate = TrainingTimeEstimate(100, 270, 30, clock=clock)
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        drive(estimate, clock, steps=17, epochs=1, batch_seconds=2.0)
    # 17 batches of 2 s, plus validating 30 samples at a third of the cost of training 270/17 per batch
    per_epoch = 17 * 2.0 + 2.0 / 3 * 30 / (270 / 17)
    assert estimate.estimate_s == pytest.approx(100 * per_epoch)
    assert "100 epochs of 300 subvolumes: about 59 min on this CPU" in caplog.text


def test_with_few_batches_per_epoch_the_second_epoch_is_timed(caplog):
    clock = FakeClock()
    estimate = TrainingTimeEstimate(100, 280, 20, clock=clock)
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        drive(estimate, clock, steps=3, epochs=5, batch_seconds=40.0, epoch_end_seconds=10.0)
    assert estimate.estimate_s == pytest.approx(100 * (3 * 40.0 + 10.0))
    assert "100 epochs of 300 subvolumes: about 3 h 37 min on this CPU" in caplog.text


def test_no_estimate_for_a_single_epoch(caplog):
    clock = FakeClock()
    estimate = TrainingTimeEstimate(1, 270, 30, clock=clock)
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        drive(estimate, clock, steps=17, epochs=1, batch_seconds=2.0)
    assert estimate.estimate_s is None and "epochs of" not in caplog.text


@pytest.mark.parametrize("seconds,words", [(12.4, "12 s"), (600, "10 min"), (2700, "45 min"), (3 * 3600 + 5 * 60, "3 h 05 min"), (3 * 86400, "3.0 days")])
def test_durations_in_words(seconds, words):
    assert format_duration(seconds) == words


def test_train_says_how_long_and_ends_with_what_happened(tiny_pickle, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", tiny_pickle, "None", "False", "3", "--out", str(out), "--epochs", "2", "--batch-size", "8",
                 "--n-init", "2", "--seed", "1", "--patience", "5"]) == 0
    captured = capsys.readouterr()
    assert "2 epochs of 48 subvolumes: about" in captured.err and "on this CPU" in captured.err
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("clustered 48 subvolumes into 3 clusters (")
    assert last.endswith(f"report: {out / 'clus-center' / 'index.html'}")


def _constant_encoder(model_dir):
    """Replace a run's encoder by one whose codes are all zero (every code unit dead)."""
    import keras

    inputs = keras.Input((16, 16, 16, 1))
    flat = keras.layers.Flatten()(inputs)
    code = keras.layers.Dense(32, activation="relu", kernel_initializer="zeros", bias_initializer="zeros")(flat)
    keras.Model(inputs, code).save(os.path.join(model_dir, "model-encoder.keras"))


def test_a_collapsed_run_says_so_in_its_last_line_and_no_raw_warning_leaks(tiny_pickle, tmp_path, capsys):
    from sklearn.exceptions import ConvergenceWarning

    out = tmp_path / "run"
    assert main(["train", tiny_pickle, "None", "False", "3", "--out", str(out), "--epochs", "1", "--n-init", "2", "--seed", "1", "-q"]) == 0
    _constant_encoder(out / "model")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["cluster", tiny_pickle, "3", "--out", str(out), "--n-init", "2", "--seed", "1"])
    captured = capsys.readouterr()
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert "ConvergenceWarning" not in captured.err
    last = (captured.out if status == 0 else captured.err).strip().splitlines()[-1]
    assert "collapsed" in last and "clustered 48 subvolumes into 3 clusters" not in last, last
    if status == 0:
        assert "48 subvolumes fill only 1 of 3 clusters" in last
        assert "only 1 of the 3 clusters have members and the other 2 are empty" in captured.err


def test_kmeans_convergence_warning_becomes_one_line_of_ours(caplog):
    from autoencoder3d.clustering.kmeans import cluster_encodings

    codes = np.repeat(np.eye(2), 5, axis=0)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        clustering = cluster_encodings(codes, [str(i) for i in range(10)], 4, n_init=2, seed=0)
    assert not caught
    assert sorted(clustering.sizes().values()) == [0, 0, 5, 5]
    assert caplog.text.count("k-means: the 10 codes take only 2 distinct values, so only 2 of the 4 clusters have members") == 1


def test_code_health_rule():
    from autoencoder3d.network.codes import code_health

    assert code_health({"active_code_units": 0, "distinct_codes": 1}, 4) == "dead"
    assert code_health({"active_code_units": 5, "distinct_codes": 3}, 4) == "dead"
    assert code_health({"active_code_units": 2, "distinct_codes": 300}, 4) == "nearly dead"
    assert code_health({"active_code_units": 9, "distinct_codes": 7}, 4) == "nearly dead"
    assert code_health({"active_code_units": 9, "distinct_codes": 8}, 4) == "alive"
    assert code_health({}, 4) is None
