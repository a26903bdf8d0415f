"""The PCA baseline: partition comparison, stability, and the features it clusters (fast, no network)."""

import numpy as np

from autoencoder3d.clustering.baseline import ari, compare_partitions, contingency_table, pca_features, run_baseline, stability


def blobs(n=60, edge=8, classes=3, seed=0):
    """Noise plus a class-dependent block: a small set whose classes PCA + k-means finds."""
    rng = np.random.default_rng(seed)
    volumes = rng.normal(0, 0.3, (n, edge, edge, edge)).astype(np.float32)
    truth = np.arange(n) % classes
    for i, k in enumerate(truth):
        volumes[i, 2 * k:2 * k + 3, 2:6, 2:6] += 2.0
    return volumes, truth


def test_identical_partitions_have_ari_1_and_the_table_sums_to_n():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 1])
    renamed = np.array([5, 5, 3, 3, 4, 4, 4, 3])  # the same partition under other names
    assert ari(labels, labels) == 1.0 and ari(labels, renamed) == 1.0
    result = compare_partitions(labels, labels, [0, 1, 2], [0, 1, 2])
    counts = np.array(result["contingency"]["counts"])
    assert result["ari"] == 1.0 and counts.sum() == len(labels)
    assert np.array_equal(counts, np.diag([2, 3, 3]))  # identical partitions: everything on the diagonal


def test_contingency_keeps_empty_clusters_as_zero_rows():
    table = contingency_table([0, 0, 2], [1, 1, 0], [0, 1, 2], [0, 1])
    assert table.tolist() == [[0, 2], [0, 0], [1, 0]]


def test_pca_features_on_a_sample_and_in_batches_match_the_whole():
    volumes, _ = blobs()
    whole, facts = pca_features(volumes, 5)
    assert whole.shape == (60, 5) and facts["fitted_on"] == 60 and 0 < facts["explained_variance"] <= 1
    batched, _ = pca_features(volumes, 5, batch=7)  # read 7 at a time: the same projection
    assert np.allclose(whole, batched, atol=1e-4)
    sampled, facts = pca_features(volumes, 5, fit_max_values=20 * 8 ** 3)  # fitted on 20, projected for all 60
    assert facts["fitted_on"] == 20 and sampled.shape == (60, 5)
    few, facts = pca_features(volumes[:4], 32)  # fewer samples than the code length: fewer components
    assert facts["components"] <= 4 and few.shape[0] == 4


def test_standardization_does_not_change_the_partition_but_is_applied():
    volumes, _ = blobs()
    raw, _ = pca_features(volumes, 4)
    scaled, _ = pca_features(volumes * 3 + 10, 4, mean=10, std=3)
    assert np.allclose(np.abs(raw), np.abs(scaled), atol=1e-3)


def test_baseline_finds_the_blocks_and_is_stable():
    volumes, truth = blobs()
    uuids = [f"u{i}" for i in range(len(truth))]
    codes = np.eye(3)[truth] + np.random.default_rng(1).normal(0, 0.01, (len(truth), 3))
    record, members = run_baseline(volumes, uuids, codes, truth, [0, 1, 2], 3, seed=4)
    assert record["ari"] == 1.0  # the autoencoder's (here: the truth) and the baseline's partitions agree
    assert record["stability"]["autoencoder"] == 1.0 and record["stability"]["baseline"] == 1.0
    assert sorted(u for v in members.values() for u in v) == sorted(uuids)
    assert np.array(record["contingency"]["counts"]).sum() == len(uuids)
    assert record["seed"] == 4 and record["k"] == 3 and record["components"] == 3


def test_stability_of_noise_is_below_1():
    noise = np.random.default_rng(0).normal(size=(200, 8))
    assert stability(noise, 6, 0) < 0.95
