"""Each cluster's stability: reruns of the run's own clusterer (flip-aware under --flips match) find it again, or not."""

import numpy as np
import pytest

from autoencoder3d.clustering.flip_kmeans import cluster_flipped_encodings
from autoencoder3d.clustering.stability import best_jaccard, cluster_stability, stability_sample


def _blobs(rng, n_per, centres, spread=0.3):
    codes = np.concatenate([rng.normal(c, spread, (n_per, len(c))) for c in centres])
    return codes, np.repeat(np.arange(len(centres)), n_per)


def test_stability_is_one_for_well_separated_blobs_and_low_for_a_random_split():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (5, 8)) * 20
    codes, labels = _blobs(rng, 60, centres)
    assert cluster_stability(codes, labels, seed=0) == {k: 1.0 for k in range(5)}
    one_blob = rng.normal(0, 1, (300, 8))
    random_split = rng.integers(0, 3, 300)
    scores = cluster_stability(one_blob, random_split, seed=0)
    assert set(scores) == {0, 1, 2} and max(scores.values()) < 0.6, scores


def test_jaccard_and_the_sample_of_many_codes():
    # cluster 0 = {0, 1, 2}, 1 = {3, 4}; other: {0, 1}, {2, 3, 4}: J(0, a) = 2/3, J(1, b) = 2/3
    assert best_jaccard([0, 0, 0, 1, 1], [5, 5, 7, 7, 7]) == {0: pytest.approx(2 / 3), 1: pytest.approx(2 / 3)}
    labels = np.r_[np.zeros(5000, int), np.ones(7, int)]
    rows = stability_sample(labels, max_codes=500, seed=0)
    assert len(rows) < 600 and np.sum(labels[rows] == 1) == 7  # a small cluster keeps all its members


def flipped_codes(rng, structures, arrived, noise=0.3):
    """Codes (4, N, d) of subvolumes of ``structures`` (s, 4, d: each one's code in each flip) arrived in flips ``arrived``.

    The proper flips compose like XOR of their indices in PROPER_FLIPS, so member i (structure s_i, arrived in
    flip h_i) seen in flip g has the code of its structure in flip g ^ h_i.
    """
    kinds, turned = arrived
    views = np.stack([structures[kinds, g ^ turned] for g in range(4)])
    return views + rng.normal(0, noise, views.shape)


def test_under_match_the_reruns_are_flip_aware():
    rng = np.random.default_rng(3)
    structures = rng.normal(0, 10, (2, 4, 6))  # two structures, far apart in every flip
    kinds, turned = np.repeat([0, 1], 40), np.tile(np.arange(4), 20)
    codes = flipped_codes(rng, structures, (kinds, turned))
    # the two structures are the flip-aware clusters; plain k-means of the identity codes splits them by flip
    assert cluster_stability(codes, kinds, "match", seed=0) == {0: 1.0, 1: 1.0}
    assert max(cluster_stability(codes, kinds, "off", seed=0).values()) < 0.7


def test_under_match_a_structure_split_by_frames_is_unstable_though_its_matched_codes_look_apart():
    rng = np.random.default_rng(4)
    structures = rng.normal(0, 10, (1, 4, 6))  # one structure in four flips, clustered in three
    codes = flipped_codes(rng, structures, (np.zeros(60, int), np.arange(60) % 4))
    clustering, matched, _ = cluster_flipped_encodings(codes, [f"s{i}" for i in range(60)], 3, "match", n_init=3, seed=0)
    # each cluster holds its members in a frame of its own: plain k-means of the matched codes finds them every time
    assert cluster_stability(matched, clustering.labels, seed=0) == {0: 1.0, 1: 1.0, 2: 1.0}
    # ... but the run's clusterer, rerun, cuts the one structure elsewhere
    assert max(cluster_stability(codes, clustering.labels, "match", seed=0).values()) < 0.8
