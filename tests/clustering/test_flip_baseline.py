"""The run's clustering and its PCA baseline under --flips (fast: codes given, no network)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from autoencoder3d.clustering.baseline import pca_features, run_baseline
from autoencoder3d.clustering.flip_kmeans import cluster_flipped_encodings, clustered_features, flips_record
from autoencoder3d.errors import InputError
from autoencoder3d.prep.flips import PROPER_FLIPS, flipped_copies
from tests.clustering.test_flip_kmeans import features_of, two_structures_in_random_flips
from tests.conftest import CountingReads


def test_off_is_the_plain_clustering_and_average_is_the_mean_of_the_flips():
    features = np.random.default_rng(0).normal(size=(4, 20, 3))
    rows, labels, flips = clustered_features(features, "off", 2, 0, 5, lambda r: (r[:, 0] > 0).astype(np.int64))
    assert np.array_equal(rows, features[0]) and np.array_equal(labels, (features[0][:, 0] > 0)) and not flips.any()
    rows, _, _ = clustered_features(features, "average", 2, 0, 5, lambda r: np.zeros(len(r), np.int64))
    assert np.allclose(rows, features.mean(axis=0))
    with pytest.raises(InputError, match="--flips sideways: choose from off, average, match"):
        clustered_features(features, "sideways", 2, 0, 5, None)


def test_match_clusters_structures_and_records_which_flip_each_matched():
    volumes, classes = two_structures_in_random_flips()
    uuids = [f"p{i}" for i in range(len(volumes))]
    clustering, codes, matched = cluster_flipped_encodings(features_of(volumes), uuids, 2, "match", n_init=5, seed=0)
    assert clustering.method == "flip-aware" and adjusted_rand_score(classes, clustering.labels) == 1.0
    assert np.allclose(codes, features_of(volumes)[matched, np.arange(len(volumes))])  # each in its matched flip
    assert sorted(u for v in clustering.members.values() for u in v) == sorted(uuids)
    record = flips_record("match", matched)
    assert sum(record["matched"]) == len(volumes) and record["flips"][0] == [1, 1, 1]
    off, _, _ = cluster_flipped_encodings(features_of(volumes), uuids, 2, "off", n_init=5, seed=0)
    assert off.method == "full"
    with pytest.raises(InputError, match="should be >= n_clusters"):
        cluster_flipped_encodings(features_of(volumes)[:, :1], uuids[:1], 2, "match")


def test_pca_in_the_flips_fits_on_all_flips_projects_each_and_reads_each_row_once_for_each_pass():
    volumes, _ = two_structures_in_random_flips(copies=10)
    counted = CountingReads(volumes)
    features, facts = pca_features(counted, 5, flips=PROPER_FLIPS, batch=7)
    assert features.shape == (4, 20, 5) and facts["fitted_on"] == 20
    assert (counted.reads == 2).all()  # once for the sample, once to project, not once per flip
    alone, _ = pca_features(flipped_copies(volumes).reshape(80, *volumes.shape[1:]), 5)
    # the same PCA as of the 80 flipped copies, flip by flip (components up to their sign)
    assert np.allclose(np.abs(features.reshape(80, 5)), np.abs(alone), atol=1e-3)


def test_the_baseline_is_clustered_under_the_runs_flip_mode():
    volumes, classes = two_structures_in_random_flips()
    uuids = [f"p{i}" for i in range(len(volumes))]
    codes = features_of(volumes)  # stand-in codes of the four flips
    record, members = run_baseline(volumes, uuids, codes, classes, [0, 1], 2, seed=0, flips="match")
    assert record["flips"] == "match" and record["method"].startswith("flip-aware k-means")
    assert record["ari"] == 1.0 and record["stability"]["baseline"] == 1.0 and record["stability"]["autoencoder"] == 1.0
    plain, _ = run_baseline(volumes, uuids, codes[0], classes, [0, 1], 2, seed=0)
    assert plain["flips"] == "off" and plain["ari"] < 0.5  # plain PCA + k-means splits these by flip
