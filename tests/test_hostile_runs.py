"""Run folders changed between commands: a later command never silently uses what an earlier clustering made."""

import os

import numpy as np
import pytest
from test_seg_labels import identity_run

from autoencoder3d.errors import InputError
from autoencoder3d.io import load_pickle, save_pickle


def test_edss3d_train_after_a_new_clustering_does_not_reuse_the_old_clusters_model(tmp_path):
    """'cluster' with another k renumbers the clusters: the EDSS3D model of the old cluster 0 is not the new one's."""
    from autoencoder3d.seg import run_seg_train

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
