"""Merging clusters after k-means: ids, members, centres and refusals."""

import numpy as np
import pytest

from autoencoder3d.clustering.kmeans import cluster_encodings
from autoencoder3d.clustering.merge import check_merge, merge_clusters, merge_record, parse_merge
from autoencoder3d.errors import InputError


def clustered(k=6, per=5):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (k, 4))
    codes = np.concatenate([c + rng.normal(0, 0.1, (per, 4)) for c in centres])
    uuids = [f"u{i:03d}" for i in range(len(codes))]
    return cluster_encodings(codes, uuids, k, n_init=3, seed=0), codes


def test_merged_groups_keep_the_lowest_id_and_other_ids_stay():
    clustering, codes = clustered()
    merged = merge_clusters(clustering, parse_merge(["5,1,3", "2,4"]), codes)
    assert sorted(merged.members) == [0, 1, 2]
    assert merged.members[1] == clustering.members[1] + clustering.members[3] + clustering.members[5]
    assert merged.members[2] == clustering.members[2] + clustering.members[4]
    assert merged.members[0] == clustering.members[0]
    assert set(np.unique(merged.labels)) == {0, 1, 2}
    assert np.all(merged.labels[np.isin(clustering.labels, [1, 3, 5])] == 1)
    # the merged centre is the mean code of its members; other centres are unchanged
    inside = np.isin(clustering.labels, [1, 3, 5])
    assert np.allclose(merged.centers[1], codes[inside].mean(axis=0))
    assert np.allclose(merged.centers[0], clustering.centers[0])
    assert merged.merged == {1: [1, 3, 5], 2: [2, 4]}
    record = merge_record(merged)
    assert record["groups"] == [[1, 3, 5], [2, 4]] and record["kept"] == {"1": [1, 3, 5], "2": [2, 4]}
    assert clustering.members.keys() == set(range(6))  # the k-means clustering itself is not changed


def test_no_merge_is_the_clustering_itself():
    clustering, codes = clustered()
    assert merge_clusters(clustering, [], codes) is clustering


@pytest.mark.parametrize("items,message", [
    (["1,x"], "expected cluster ids separated by commas"),
    (["3"], "at least two different clusters"),
    (["3,3"], "at least two different clusters"),
])
def test_bad_merge_values_are_refused(items, message):
    with pytest.raises(InputError, match=message):
        parse_merge(items)


@pytest.mark.parametrize("groups,message", [
    ([[1, 6]], "cluster 6 not in this run (clusters 0..5)"),
    ([[-1, 2]], "not in this run"),
    ([[1, 3], [3, 4]], "cluster 3 is in two groups"),
])
def test_ids_outside_the_run_and_overlapping_groups_are_refused_in_one_line(groups, message):
    with pytest.raises(InputError) as info:
        check_merge(groups, 6)
    assert message in str(info.value) and "\n" not in str(info.value)
