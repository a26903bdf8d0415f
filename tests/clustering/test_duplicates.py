"""Duplicate centres under the 24 proper rotations of the cube."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from autoencoder3d.clustering.duplicates import correlations, find_duplicates, rotate, rotation_name, rotations


def shape(seed, edge=16):
    return gaussian_filter(np.random.default_rng(seed).normal(size=(edge,) * 3), 2).astype(np.float32)


def test_the_24_rotations_are_proper_distinct_and_include_the_four_flips():
    table = rotations()
    matrices = {tuple(np.asarray(m).ravel()) for _, m in table}
    assert len(table) == 24 and len(matrices) == 24
    assert all(round(np.linalg.det(m)) == 1 for _, m in table)
    names = [rotation_name(m) for _, m in table]
    assert names[0] == "identity"
    assert {"180 deg about x", "180 deg about y", "180 deg about z"} <= set(names)


def test_a_rotation_moves_each_voxel_by_its_matrix():
    v = np.random.default_rng(0).normal(size=(5, 5, 5))
    for index, (_, matrix) in enumerate(rotations()):
        w = rotate(v, index)
        p = np.array([2, -1, 0])
        assert w[tuple(matrix @ p + 2)] == v[tuple(p + 2)]


@pytest.mark.parametrize("axes,name", [((1, 2), "180 deg about x"), ((0, 2), "180 deg about y"), ((0, 1), "180 deg about z")])
def test_a_centre_and_its_flipped_copy_are_flagged_with_the_flip(axes, name):
    a = shape(1)
    flipped = np.rot90(a, 2, axes)
    pairs = find_duplicates({0: a, 1: flipped, 2: shape(2)})
    assert len(pairs) == 1
    assert pairs[0]["clusters"] == [0, 1] and pairs[0]["correlation"] == pytest.approx(1.0, abs=1e-4)
    assert pairs[0]["rotation"] == name


def test_a_quarter_turn_is_found_and_names_the_turn_of_the_second_onto_the_first():
    a = shape(3)
    b = np.rot90(a, 1, (0, 1))  # b is a turned; turning b back onto a is the inverse turn
    pair = find_duplicates({4: a, 9: b})[0]
    assert pair["clusters"] == [4, 9] and pair["correlation"] > 0.999
    assert np.allclose(rotate(b, [rotation_name(m) for _, m in rotations()].index(pair["rotation"])), a)


def test_different_shapes_and_empty_clusters_are_not_flagged():
    a, b = shape(5), shape(6)
    assert find_duplicates({0: a, 1: b}) == []
    assert find_duplicates({0: a, 1: a.copy()}, sizes={0: 3, 1: 0}) == []  # the second cluster is empty


def test_correlations_are_vectorized_over_many_centres():
    centres = {k: shape(k, edge=8) for k in range(40)}
    ids, best, which = correlations(centres)
    assert best.shape == (40, 40) and np.allclose(np.diag(best), 1.0, atol=1e-4)
    assert np.all(which[np.diag_indices(40)] == 0)  # a centre matches itself unturned
