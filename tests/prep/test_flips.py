import numpy as np
import pytest

from autoencoder3d.prep.flips import PROPER_FLIPS, apply_flip, canonical_flips, flip_each, flipped_copies


def asymmetric(rng, shape=(8, 9, 10)):
    volume = np.zeros(shape, dtype=np.float32)
    volume[1:4, 2:5, 1:3] = 3.0
    volume[5, 6, 7] = 5.0
    volume[2, 7, 8] = -2.0
    return volume + 0.05 * rng.standard_normal(shape).astype(np.float32)


def compose(a, b):
    """Index in PROPER_FLIPS of flip a after flip b (signs multiply)."""
    signs = PROPER_FLIPS[a] * PROPER_FLIPS[b]
    return int(np.flatnonzero((PROPER_FLIPS == signs).all(axis=1))[0])


def test_flips_are_proper_turns_and_a_group():
    assert all(np.linalg.det(np.diag(s)) == 1 for s in PROPER_FLIPS)
    assert {compose(a, b) for a in range(4) for b in range(4)} == {0, 1, 2, 3}
    volume = asymmetric(np.random.default_rng(0))
    for signs in PROPER_FLIPS:
        assert np.array_equal(apply_flip(apply_flip(volume, signs), signs), volume)


def test_flip_each_and_flipped_copies_agree_with_apply_flip():
    rng = np.random.default_rng(1)
    volumes = np.stack([asymmetric(rng) for _ in range(5)])
    choice = np.array([0, 3, 1, 2, 3])
    turned = flip_each(volumes, choice)
    copies = flipped_copies(volumes)
    assert copies.shape == (4,) + volumes.shape and turned.dtype == np.float32
    for i, c in enumerate(choice):
        assert np.array_equal(turned[i], apply_flip(volumes[i], PROPER_FLIPS[c]))
        assert np.array_equal(copies[c, i], turned[i])


def test_canonical_flips_bring_flipped_copies_of_one_structure_into_one_frame():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, size=40)
    template = asymmetric(rng)
    volumes = np.stack([apply_flip(template, PROPER_FLIPS[t]) + 0.3 * rng.standard_normal(template.shape) for t in truth])
    choice = canonical_flips(volumes)
    # the chosen flip undoes the true one up to a single flip shared by all
    assert len({compose(c, t) for c, t in zip(choice, truth)}) == 1
    assert np.array_equal(canonical_flips(volumes), choice)


@pytest.mark.parametrize("rounds", [0, 1])
def test_canonical_flips_start_from_the_identity(rounds):
    volumes = np.stack([asymmetric(np.random.default_rng(s)) for s in range(3)])
    if rounds == 0:
        assert canonical_flips(volumes, rounds=0).tolist() == [0, 0, 0]
    else:
        assert canonical_flips(volumes, rounds=1).shape == (3,)


def test_flipped_volumes_read_by_index_like_the_volumes_they_view():
    from autoencoder3d.prep.flips import FlippedVolumes, flipped_views

    rng = np.random.default_rng(3)
    volumes = np.stack([asymmetric(rng) for _ in range(6)])
    views = flipped_views(volumes)
    assert [v.signs for v in views] == [tuple(s) for s in PROPER_FLIPS.tolist()]
    view = FlippedVolumes(volumes, PROPER_FLIPS[2])
    assert len(view) == 6 and view.shape == volumes.shape
    assert np.array_equal(view[4], apply_flip(volumes[4], PROPER_FLIPS[2]))
    assert np.array_equal(view[[5, 1, 1]], np.stack([apply_flip(volumes[i], PROPER_FLIPS[2]) for i in (5, 1, 1)]))
    assert np.array_equal(view[1:3], flipped_copies(volumes)[2, 1:3])
    assert np.array_equal(np.asarray(view), flipped_copies(volumes)[2])
