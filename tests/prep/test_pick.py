"""DoG picking: planted dark blobs found, independent of the partitioning; pick CLI outputs."""

import numpy as np
import pytest

from autoencoder3d.cli.main import main as cli
from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram, write_mrc
from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.prep.pick import dog_pick, parse_sigma, remove_redundant, sigma_in_voxels

SHAPE = (72, 64, 48)
SIGMA = 3.0


def planted(seed=0, n=10, contrast=-3.0, shape=SHAPE):
    """Noise with ``n`` Gaussian blobs at known, well separated positions (x, y, z)."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(0.0, 1.0, shape).astype(np.float32)
    centers = []
    while len(centers) < n:
        c = rng.integers(10, np.array(shape) - 10)
        if all(np.linalg.norm(c - o) > 4 * SIGMA for o in centers):
            centers.append(c)
    grid = np.indices(shape, dtype=np.float32)
    for c in centers:
        r2 = sum((grid[k] - c[k]) ** 2 for k in range(3))
        vol += contrast * np.exp(-r2 / (2 * SIGMA**2))
    return vol, np.array(centers)


def matched(found, truth, tol=1.5):
    d = np.linalg.norm(found[:, None, :] - truth[None, :, :], axis=2)
    return d.min(axis=0) <= tol


def test_finds_planted_dark_blobs():
    vol, truth = planted()
    picks = dog_pick(vol, SIGMA, box=16, block=128)
    assert matched(picks.centers, truth).all()
    assert len(picks.centers) == len(truth)
    assert np.all(np.diff(picks.scores) <= 0)  # strongest first


@pytest.mark.parametrize("block,workers", [(16, 1), (20, 2), (37, 2)])
def test_independent_of_partition(block, workers):
    vol, _ = planted(seed=1)
    whole = dog_pick(vol, SIGMA, box=16, block=256)
    parts = dog_pick(vol, SIGMA, box=16, block=block, workers=workers)
    assert whole.n_peaks == parts.n_peaks
    np.testing.assert_array_equal(whole.centers, parts.centers)
    np.testing.assert_array_equal(whole.scores, parts.scores)


def test_bright_particles_and_max_count():
    vol, truth = planted(seed=2, contrast=3.0)
    assert matched(dog_pick(vol, SIGMA, box=16, dark=False).centers, truth).all()
    assert len(dog_pick(vol, SIGMA, box=16, dark=False, max_particles=4).centers) == 4


def test_border_boxes_dropped():
    vol, truth = planted(seed=3)
    picks = dog_pick(vol, SIGMA, box=30)
    start = picks.centers - 15
    assert np.all(start >= 0) and np.all(start + 30 <= np.array(SHAPE))
    assert picks.n_border > 0


def test_redundant_peaks_walk_from_strongest():
    centers = np.array([[0, 0, 0], [3, 0, 0], [6, 0, 0], [20, 0, 0]], float)
    scores = np.array([1.0, 2.0, 0.5, 0.1])
    kept = remove_redundant(centers, scores, min_distance=4.0)
    assert kept.tolist() == [1, 3]  # 0 and 2 are within 4 of the stronger 1


def test_sigma_units():
    assert parse_sigma("7nm") == (7.0, "nm")
    assert parse_sigma("70A") == (70.0, "A")
    assert parse_sigma("5") == (5.0, "vox")
    assert sigma_in_voxels(7, "nm", (10.0, 10.0, 10.0)) == pytest.approx(7.0)
    assert sigma_in_voxels(1, "vox", (10.0, 10.0, 10.0)) == 2.0  # at least 2 voxels
    with pytest.raises(InputError, match="voxel size"):
        sigma_in_voxels(7, "nm", (0.0, 0.0, 0.0), "tomo.mrc")
    with pytest.raises(InputError):
        parse_sigma("big")


def test_pick_cli_writes_pickle_star_csv(tmp_path, capsys):
    import starfile

    vol, truth = planted(seed=4)
    tomo = tmp_path / "tomo.mrc"
    write_mrc(tomo, vol, 10.0)
    out = tmp_path / "picks.pickle"
    assert cli(["pick", str(tomo), str(out), "--sigma1", "3", "--box", "16", "--block", "24", "--workers", "2"]) == 0
    subs = load_subvolumes(out)
    assert subs.v_siz == (16, 16, 16)
    assert matched(subs.centers, truth).all()
    # each box is the tomogram around its centre (centre voxel at index box // 2)
    c = subs.centers[0].astype(int)
    np.testing.assert_array_equal(subs.volumes[0], vol[c[0] - 8 : c[0] + 8, c[1] - 8 : c[1] + 8, c[2] - 8 : c[2] + 8])
    star = starfile.read(tmp_path / "picks.star")
    assert {"rlnTomoName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"} <= set(star.columns)
    assert (star["rlnTomoName"] == "tomo").all()
    np.testing.assert_array_equal(star[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), subs.centers)
    csv = (tmp_path / "picks.csv").read_text().splitlines()
    assert csv[0].split(",")[:5] == ["x", "y", "z", "uuid", "score"]
    assert len(csv) == len(subs) + 1


def test_pick_cli_nm_needs_voxel_size(tmp_path, capsys):
    vol, _ = planted(seed=5)
    tomo = tmp_path / "novs.mrc"
    write_mrc(tomo, vol, None)
    assert read_tomogram(tomo).voxel_size == (0.0, 0.0, 0.0)
    assert cli(["pick", str(tomo), str(tmp_path / "p.pickle")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "novs.mrc" in err[0] and "voxel size" in err[0]


def test_pick_cli_rejects_2d_image(tmp_path, capsys):
    import mrcfile

    image = tmp_path / "micrograph.mrc"
    with mrcfile.new(image) as mrc:
        mrc.set_data(np.zeros((64, 64), np.float32))
    assert cli(["pick", str(image), str(tmp_path / "p.pickle"), "--sigma1", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "micrograph.mrc" in err[0] and "2D" in err[0]
