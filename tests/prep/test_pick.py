"""DoG picking: planted dark blobs found, independent of the partitioning; changed values logged; the preview PNG; pick CLI outputs."""

import logging
import math

import numpy as np
import pytest

from autoencoder3d.cli.main import main as cli
from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram, write_mrc
from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.prep.pick import dog_pick, extract_boxes, parse_sigma, remove_redundant, sigma_in_voxels
from autoencoder3d.prep.pick_preview import BAR, CAPTION, MARK, choose_slabs, write_pick_preview
from autoencoder3d.volume import Tomogram

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
    assert sigma_in_voxels(1, "vox", (10.0, 10.0, 10.0)) == 1.0  # voxels: used as given
    assert sigma_in_voxels(7, "nm", (40.0, 40.0, 40.0)) == 2.0  # nm: at least 2 voxels (published)
    with pytest.raises(InputError, match=r"voxel size is \(0, 0, 0\)"):
        sigma_in_voxels(7, "nm", (0.0, 0.0, 0.0), "tomo.mrc")
    with pytest.raises(InputError):
        parse_sigma("big")


def test_response_to_a_ball_is_largest_at_sigma1_055_r():
    """The rule --help gives: a ball of radius r answers most to sigma1 = r / sqrt(3 x 1.1) = 0.55 r."""
    radius, n = 9.0, 36
    grid = np.indices((n, n, n)) - n // 2
    ball = (np.sqrt((grid**2).sum(axis=0)) <= radius).astype(np.float32)
    assert radius / math.sqrt(3 * 1.1) == pytest.approx(4.95, abs=0.01)
    peak = [dog_pick(ball, s, dark=False, box=8, threshold=0).scores.max() for s in (4.5, 5.0, 5.5)]
    assert peak[1] > peak[0] and peak[1] > peak[2]


def test_raised_sigma1_is_logged_with_asked_and_used_values(caplog):
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        assert sigma_in_voxels(7, "nm", (40.0, 40.0, 40.0), "tomo.rec") == 2.0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "tomo.rec" in lines[0] and "sigma1 7nm is 1.75 voxels" in lines[0] and "using 2 voxels" in lines[0]
    assert "published minimum" in lines[0] and "--sigma1 1.75vox" in lines[0]  # why, and how to ask for 1.75
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        assert sigma_in_voxels(1.75, "vox", (40.0, 40.0, 40.0), "tomo.rec") == 1.75  # the override works
        assert sigma_in_voxels(70, "A", (10.0, 10.0, 10.0), "tomo.rec") == pytest.approx(7.0)  # nothing changed
    assert not caplog.records


def test_other_adjustments_are_logged(caplog):
    vol, _ = planted(seed=6, shape=(24, 24, 24), n=1)
    with caplog.at_level(logging.INFO, logger="autoencoder3d"):
        sigma_in_voxels(7, "nm", (10.0, 10.0, 12.0), "aniso.mrc")
        dog_pick(vol, SIGMA, box=8, block=4)
    text = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("aniso.mrc" in t and "mean voxel size 10.67 A" in t for t in text)
    assert any("block side 4: using 8 voxels" in t and "--block 8" in t for t in text)


def test_pick_cli_says_it_raised_sigma1(tmp_path, capsys):
    vol, _ = planted(seed=4)
    tomo = tmp_path / "binned.mrc"
    write_mrc(tomo, vol, 40.0)  # 7 nm = 1.75 voxels
    assert cli(["pick", str(tomo), str(tmp_path / "p.pickle"), "--box", "16", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "sigma1 7nm is 1.75 voxels" in err and "using 2 voxels" in err and "--sigma1 1.75vox" in err


def read_png(path):
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asRGB8()
    return np.array([np.asarray(r, dtype=np.uint8) for r in rows]).reshape(height, width, 3)


def pixel_of(preview, k, x, y):
    """Where the preview's docstring says a pick at voxel (x, y) of panel k is drawn: (row, column)."""
    return preview.height - 1 - math.floor((y + 0.5) * preview.scale), preview.offsets[k] + math.floor((x + 0.5) * preview.scale)


def marked_at(image, row, col):
    """A pick's cross: its centre and the four arms of 2 pixels in the mark's colour."""
    return all(tuple(image[row + dr, col + dc]) == MARK for dr, dc in [(0, 0), (0, 2), (0, -2), (2, 0), (-2, 0)])


@pytest.mark.parametrize("max_side", [1024, 32])  # enlarged 7 times; binned by 3
def test_preview_marks_the_picks_where_they_project(tmp_path, max_side):
    vol, truth = planted(seed=7)
    picks = dog_pick(vol, SIGMA, box=16)
    assert matched(picks.centers, truth).all()
    tomo = Tomogram(vol, (10.0, 10.0, 10.0), "tomo.mrc")
    preview = write_pick_preview(tmp_path / "p.png", tomo, picks.centers, 16, "dark", max_side=max_side)
    image = read_png(tmp_path / "p.png")
    assert preview.scale == (7.0 if max_side == 1024 else 1 / 3)
    assert image.shape[0] == preview.height + CAPTION and preview.height == math.ceil(SHAPE[1] * preview.scale)
    assert 0 < len(preview.slabs) <= 3 and preview.shown.sum() >= len(picks.centers) // 2
    for k, (z0, z1) in enumerate(preview.slabs):
        assert z1 - z0 == 16
        for x, y, z in picks.centers:
            if z0 <= z < z1 and max_side == 1024:
                assert marked_at(image, *pixel_of(preview, k, x, y))
            elif z0 <= z < z1:
                assert tuple(image[pixel_of(preview, k, x, y)]) == MARK
    assert preview.shown.tolist() == [any(a <= z < b for a, b in preview.slabs) for z in picks.centers[:, 2]]
    panel = image[: preview.height, : preview.width]
    if max_side == 1024:  # dark blobs are shown dark
        x, y, _ = next(c for c in picks.centers if preview.slabs[0][0] <= c[2] < preview.slabs[0][1])
        row, col = pixel_of(preview, 0, x, y)
        assert panel[row + 4, col + 4, 1] < np.median(panel[:, :, 1])
    unmarked = np.all(panel != MARK, axis=2)
    assert np.all(panel[unmarked][:, 0] == panel[unmarked][:, 1])  # the rest is grey
    if max_side == 1024:  # the circle: half a box (8 voxels = 56 pixels) from the centre
        k = 0
        x, y, _ = next(c for c in picks.centers if preview.slabs[0][0] <= c[2] < preview.slabs[0][1])
        row, col = pixel_of(preview, k, x, y)
        ring = [(row + dr, col + dc) for dr, dc in [(56, 0), (-56, 0), (0, 56), (0, -56)]]
        assert any(tuple(image[r, c]) == MARK for r, c in ring if 0 <= r < preview.height and 0 <= c < preview.width)


def test_preview_scale_bar_length(tmp_path):
    vol, _ = planted(seed=8)
    centers = np.array([[30, 30, 20]])
    preview = write_pick_preview(tmp_path / "p.png", Tomogram(vol, (10.0, 10.0, 10.0), "t.mrc"), centers, 16, "dark")
    image = read_png(tmp_path / "p.png")
    assert preview.bar_nm == 10  # a fifth of 72 nm, rounded down to 1, 2 or 5 x 10^k
    bar = np.all(image == BAR, axis=2)
    assert bar[: preview.height].sum() == 0
    lengths = bar.sum(axis=1)
    assert set(lengths[lengths > 0]) == {70} == {preview.bar_px}  # 10 nm = 10 voxels = 70 pixels at 7 pixels per voxel
    unknown = write_pick_preview(tmp_path / "u.png", Tomogram(vol, (0.0, 0.0, 0.0), "u.mrc"), centers, 16, "dark")
    assert unknown.bar_px == 0 and not np.all(read_png(tmp_path / "u.png") == BAR, axis=2).any()


def test_choose_slabs_most_picks_first_without_overlap():
    # starts 0-5 hold the first three; the middle one is taken, and so on
    assert choose_slabs([5, 6, 7, 30, 31, 50], 60, 10) == [(3, 13), (26, 36), (46, 56)]
    assert choose_slabs([5, 6, 7, 30, 31, 50], 60, 10, count=1) == [(3, 13)]
    assert choose_slabs([1, 2, 9, 12], 14, 10) == [(1, 11)]  # no room for a second slab
    assert choose_slabs(list(range(16, 80)), 96, 32) == [(0, 32), (32, 64), (64, 96)]  # every pick in a slab
    assert choose_slabs([], 40, 16) == [(12, 28)]


def test_pick_cli_bright_blobs_marked_in_preview(tmp_path, capsys):
    vol, truth = planted(seed=9, contrast=3.0)
    tomo = tmp_path / "bright.mrc"
    write_mrc(tomo, vol, 10.0)
    out = tmp_path / "picks.pickle"
    assert cli(["pick", str(tomo), str(out), "--sigma1", "3", "--box", "16", "--polarity", "bright", "--workers", "1"]) == 0
    assert str(tmp_path / "picks.png") in capsys.readouterr().out
    subs = load_subvolumes(out)
    assert matched(subs.centers, truth).all()
    image = read_png(tmp_path / "picks.png")
    scale = 7.0
    height = SHAPE[1] * 7
    background = np.median(image[:height, : SHAPE[0] * 7, 1])
    marked = 0
    for x, y, _ in subs.centers.astype(int):
        row, col = height - 1 - math.floor((y + 0.5) * scale), math.floor((x + 0.5) * scale)
        if marked_at(image, row, col):  # a pick of the first panel
            marked += 1
            assert image[row + 4, col + 4, 1] > background  # shown as recorded: the bright blob is bright
    assert marked >= 1

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
    assert read_png(tmp_path / "picks.png").shape[2] == 3


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


def test_a_sigma1_wider_than_half_the_tomogram_is_refused():
    assert sigma_in_voxels(3, "nm", (10.0,) * 3, "t.mrc", (64, 64, 6)) == 3.0  # half the smallest side: used
    with pytest.raises(InputError, match=r"t.mrc: --sigma1 1e\+09nm is 1e\+09 voxels, more than half the tomogram's smallest side \(64"):
        sigma_in_voxels(1e9, "nm", (10.0,) * 3, "t.mrc", (64, 80, 96))
    with pytest.raises(InputError, match="--sigma1 33 is 33 voxels"):
        sigma_in_voxels(33, "vox", (10.0,) * 3, "t.mrc", (64, 80, 96))


def test_extract_refuses_boxes_with_non_finite_voxels_and_writes_nothing(tmp_path):
    data = np.zeros((32, 32, 32), np.float32)
    data[30, 30, 30] = np.nan  # outside every box: harmless
    tomogram = Tomogram(data, path="t.mrc")
    subvolumes, _ = extract_boxes(tomogram, [(8, 8, 8), (16, 16, 16)], 8)
    assert len(subvolumes) == 2
    data[17, 15, 14] = np.inf
    with pytest.raises(InputError, match=r"t.mrc: 1 of the 2 boxes hold NaN or infinite voxels \(the first at x, y, z = 16, 16, 16\)"):
        extract_boxes(tomogram, [(8, 8, 8), (16, 16, 16)], 8)
    write_mrc(tmp_path / "nan.mrc", np.full((24, 24, 24), np.nan, np.float32), 10.0)
    (tmp_path / "c.csv").write_text("x,y,z\n12,12,12\n")
    assert cli(["extract", str(tmp_path / "nan.mrc"), str(tmp_path / "c.csv"), str(tmp_path / "o.pickle"), "--box", "8"]) == 2
    assert not (tmp_path / "o.pickle").exists()
