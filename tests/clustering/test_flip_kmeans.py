import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from autoencoder3d.clustering.flip_kmeans import flip_aware_kmeans
from autoencoder3d.prep.flips import PROPER_FLIPS, apply_flip, flipped_copies


def two_structures_in_random_flips(seed=0, copies=30, noise=0.2):
    rng = np.random.default_rng(seed)
    # one large off-centre body shared by both; they differ by a small part, so flips differ more than structures
    templates = [np.zeros((6, 7, 8), np.float32) for _ in range(2)]
    for template in templates:
        template[0:3, 0:3, 0:3] = 2.0
    templates[1][4, 5, 1:3] = 3.0
    classes = np.repeat([0, 1], copies)
    flips = rng.integers(0, 4, size=len(classes))
    volumes = np.stack([apply_flip(templates[c], PROPER_FLIPS[f]) + noise * rng.standard_normal((6, 7, 8)) for c, f in zip(classes, flips)])
    return volumes.astype(np.float32), classes


def features_of(volumes):
    return flipped_copies(volumes).reshape(4, len(volumes), -1)


def test_flip_aware_kmeans_finds_structures_that_plain_kmeans_splits_by_flip():
    volumes, classes = two_structures_in_random_flips()
    result = flip_aware_kmeans(features_of(volumes), 2, seed=0)
    assert adjusted_rand_score(classes, result.labels) == 1.0
    plain = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(volumes.reshape(len(volumes), -1))
    assert adjusted_rand_score(classes, plain) < 0.5
    # every member, in its matched flip, lies nearer its own centre than in any other flip
    matched = features_of(volumes)[result.flips, np.arange(len(volumes))]
    assert np.allclose(result.centers[0], matched[result.labels == 0].mean(axis=0))
    assert result.inertia == pytest.approx(float(((matched - result.centers[result.labels]) ** 2).sum()))


def test_flip_aware_kmeans_is_deterministic_with_the_seed_and_never_worse_with_more_starts():
    volumes, _ = two_structures_in_random_flips(seed=3, noise=1.0)
    features = features_of(volumes)
    first, again = flip_aware_kmeans(features, 4, seed=5, n_init=3), flip_aware_kmeans(features, 4, seed=5, n_init=3)
    assert np.array_equal(first.labels, again.labels) and np.array_equal(first.flips, again.flips)
    assert flip_aware_kmeans(features, 4, seed=5, n_init=6).inertia <= first.inertia + 1e-9


def test_flip_aware_kmeans_refuses_features_not_in_four_flips():
    with pytest.raises(ValueError, match=r"\(4, N, D\)"):
        flip_aware_kmeans(np.zeros((3, 5, 2)), 2)
    with pytest.raises(ValueError, match="between 1 and"):
        flip_aware_kmeans(np.zeros((4, 5, 2)), 6)
