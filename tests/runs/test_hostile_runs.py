"""Run folders changed between commands: a later command never silently uses what an earlier clustering made."""

import os

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.formats.subvolume_pickle import load_pickle, save_pickle
from tests.edss3d.test_seg_labels import identity_run

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


def test_edss3d_train_after_a_new_clustering_does_not_reuse_the_old_clusters_model(tmp_path):
    """'cluster' with another k renumbers the clusters: the EDSS3D model of the old cluster 0 is not the new one's."""
    from autoencoder3d.edss3d import run_seg_train

    rng = np.random.default_rng(0)
    data, run = identity_run(tmp_path / "run", [rng.normal(size=(16, 16, 16)) - 1.5 * (i % 2) for i in range(8)])
    first = run_seg_train(data, run, {1: [0]}, epochs=1, batch_size=16, seed=0, verbose=0)
    assert not first.get("reused_saved_model")
    again = run_seg_train(data, run, {1: [0]}, epochs=1, batch_size=16, seed=0, verbose=0)
    assert again.get("reused_saved_model")  # same clustering, same selection: reused

    kmeans = os.path.join(run, "clus-center", "kmeans.pickle")
    members = load_pickle(kmeans)
    uuids = members[0] + members[1]
    save_pickle(kmeans, {0: uuids[::3], 1: [u for u in uuids if u not in uuids[::3]]})  # as 'cluster' with other k would
    with pytest.raises(InputError, match="holds a model trained on other subvolumes for these cluster ids"):
        run_seg_train(data, run, {1: [0]}, epochs=1, batch_size=16, seed=0, verbose=0)
    fresh = run_seg_train(data, run, {1: [0]}, epochs=1, batch_size=16, seed=0, verbose=0, retrain=True)
    assert not fresh.get("reused_saved_model")


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("reader", ["run folder", "finished run", "report", "train", "io"])
def test_a_run_record_nested_too_deeply_is_one_line(tmp_path, reader):
    """run.json / train-state.json nested deeper than Python's recursion limit was a RecursionError traceback."""
    from autoencoder3d.formats.json import read_json
    from autoencoder3d.network.train import finished_record
    from autoencoder3d.report.page import read_run
    from autoencoder3d.runs.folder import RunFolder

    (tmp_path / "model").mkdir()
    for name in ("run.json", "model/train-state.json"):
        (tmp_path / name).write_text(DEEP)
    call = {"run folder": lambda: RunFolder(tmp_path).record(), "finished run": lambda: RunFolder(tmp_path).finished_record(),
            "report": lambda: read_run(str(tmp_path)), "train": lambda: finished_record(str(tmp_path / "model")),
            "io": lambda: read_json(tmp_path / "run.json")}[reader]
    with pytest.raises(InputError, match="nested too deeply"):
        call()


def test_records_read_leniently_treat_deep_nesting_as_absent(tmp_path):
    from autoencoder3d.formats.json import read_record
    from autoencoder3d.runs.previous import _recorded_fingerprint

    (tmp_path / "run.json").write_text(DEEP)
    assert read_record(str(tmp_path / "run.json")) == {} and _recorded_fingerprint(str(tmp_path)) is None
