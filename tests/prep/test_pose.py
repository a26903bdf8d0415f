import logging

import numpy as np
import pytest
from scipy import ndimage

from autoencoder3d.errors import InputError
from autoencoder3d.prep.pose import pose_normalize, principal_axes, smoothed_box, tomogram_mean
from autoencoder3d.volume import SubvolumeSet, Tomogram, cut_box
from tests.conftest import elongated_particle, rotation_matrix


def test_principal_axes_of_rotated_ellipsoid():
    rng = np.random.default_rng(1)
    axes = rotation_matrix(rng)
    mass = -elongated_particle((32, 32, 32), (15.5, 16.0, 15.0), axes, (12, 6, 3))
    c, rm = principal_axes(mass)
    np.testing.assert_allclose(c, (15.5, 16.0, 15.0), atol=0.05)
    assert np.linalg.det(rm) == pytest.approx(1.0)
    for k in range(3):  # same axes up to sign, longest first
        assert abs(rm[:, k] @ axes[:, k]) > 0.99


def test_zero_mass_is_an_error():
    with pytest.raises(ValueError):
        principal_axes(np.zeros((4, 4, 4)))


@pytest.mark.parametrize("start", [(10, 20, 5), (-5, 60, 50), (40, -10, 30), (60, 75, 45)])
def test_local_smoothing_equals_whole_tomogram_smoothing(start):
    tomo = np.random.default_rng(0).normal(size=(80, 90, 70)).astype(np.float32)
    whole = ndimage.gaussian_filter(tomo, 2.0)
    np.testing.assert_array_equal(smoothed_box(tomo, start, 30, 2.0, -9.0), cut_box(whole, start, 30, -9.0))


def test_tomogram_mean_equals_smoothed_mean():
    tomo = np.random.default_rng(2).normal(size=(40, 30, 37)).astype(np.float32)
    assert tomogram_mean(tomo, slab=8) == pytest.approx(float(ndimage.gaussian_filter(tomo, 2.0).mean()), abs=1e-6)


def place_particles(count, seed, edge=32):
    """A tomogram with dark elongated particles at random rotations, and their subvolumes."""
    rng = np.random.default_rng(seed)
    shape = (48 * count, 64, 64)
    tomo = rng.normal(scale=0.05, size=shape).astype(np.float32)
    centers, rotations = [], []
    for i in range(count):
        center = np.array([48 * i + 24, 32, 32])
        axes = rotation_matrix(rng)
        tomo += elongated_particle(shape, center, axes, (10, 4, 3))
        centers.append(center)
        rotations.append(axes)
    volumes = np.stack([cut_box(tomo, c - edge // 2, edge, 0.0) for c in centers])
    subvolumes = SubvolumeSet([f"p{i}" for i in range(count)], volumes, np.array(centers, float))
    return Tomogram(tomo), subvolumes, rotations


def test_normalized_particles_lie_along_x_with_mass_in_the_middle():
    tomo, subvolumes, _ = place_particles(5, seed=3)
    result = pose_normalize(subvolumes, tomo, sigma=2.0, workers=2)
    assert result.uuids == subvolumes.uuids and result.volumes.shape == subvolumes.volumes.shape
    for volume, uuid in zip(result.volumes, result.uuids):
        mass = np.clip(-volume - 0.3, 0, None)  # the dark particle only
        c, rm = principal_axes(mass)
        assert abs(rm[0, 0]) > 0.97, uuid  # major axis along x
        # the centre of mass of the whole inverted box (background included) goes to the
        # middle; the published half-voxel box conventions add up to about one voxel more
        assert np.linalg.norm(c - 15.5) < 2.5, uuid
        assert np.linalg.det(result.extras[uuid]["rotation"]) == pytest.approx(1.0)


def test_constant_subvolume_skipped_with_warning(caplog):
    tomo, subvolumes, _ = place_particles(2, seed=4)
    subvolumes.volumes[1] = subvolumes.volumes.max()
    with caplog.at_level(logging.WARNING):
        result = pose_normalize(subvolumes, tomo, workers=1)
    assert result.uuids == ["p0"]
    assert "p1" in caplog.text and "skipped" in caplog.text
    subvolumes.volumes[:] = 1.0
    with pytest.raises(InputError, match=r"tomo.mrc: every subvolume cut from it is constant.*train without pose normalization"):
        pose_normalize(subvolumes, Tomogram(tomo.data, path="tomo.mrc"), workers=1)


def test_centres_outside_warned_or_refused(caplog):
    tomo, subvolumes, _ = place_particles(2, seed=5)
    subvolumes.centers[1] = (500, 500, 500)
    with caplog.at_level(logging.WARNING):
        result = pose_normalize(subvolumes, tomo, workers=1)
    assert len(result) == 2 and "1 of 2 subvolume centres lie outside" in caplog.text
    subvolumes.centers[0] = (-100, 0, 0)
    with pytest.raises(InputError, match="no subvolume centre lies inside the tomogram"):
        pose_normalize(subvolumes, tomo)


def test_a_smoothing_wider_than_the_subvolumes_is_refused_at_once():
    tomo, subvolumes, _ = place_particles(1, seed=6)
    with pytest.raises(InputError, match=r"--smooth-sigma 1e\+06 is wider than the subvolumes \(32 voxels\)"):
        pose_normalize(subvolumes, tomo, sigma=1e6)
    assert len(pose_normalize(subvolumes, tomo, sigma=32.0, workers=1)) == 1  # as wide as the box: still done
