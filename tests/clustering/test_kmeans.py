"""The k-means of the codes: MiniBatchKMeans above a number of codes, deterministic with the seed."""

import numpy as np

from autoencoder3d.clustering.kmeans import MINIBATCH_CODES, cluster_encodings, kmeans_method, too_many_codes


def _codes(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (4, 8))
    return centres[np.arange(n) % 4] + rng.normal(0, 0.3, (n, 8))


def test_above_the_number_of_codes_minibatch_runs_whatever_k():
    assert not too_many_codes(MINIBATCH_CODES) and too_many_codes(MINIBATCH_CODES + 1)
    assert kmeans_method(MINIBATCH_CODES, 2) == "full"
    assert kmeans_method(MINIBATCH_CODES + 1, 2) == "minibatch"
    assert kmeans_method(MINIBATCH_CODES + 1, 2, "full") == "full"  # asked for by name: kept
    assert kmeans_method(3000, 4, minibatch_codes=2999) == "minibatch"
    assert kmeans_method(3000, 4, minibatch_codes=3000) == "full"


def test_minibatch_above_the_threshold_is_deterministic_with_the_seed():
    codes = _codes()
    uuids = [f"p{i}" for i in range(len(codes))]
    first = cluster_encodings(codes, uuids, 4, n_init=10, seed=7, minibatch_codes=1000)
    again = cluster_encodings(codes, uuids, 4, n_init=10, seed=7, minibatch_codes=1000)
    assert first.method == again.method == "minibatch"
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.centers, again.centers)
    assert first.inertia == again.inertia and first.members == again.members
    assert sorted(first.sizes().values()) == [750] * 4  # the four groups found
    below = cluster_encodings(codes, uuids, 4, n_init=10, seed=7, minibatch_codes=len(codes))
    assert below.method == "full"
