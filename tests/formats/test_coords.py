"""Coordinate files (STAR RELION 4/5, CSV/TXT, IMOD) and extraction from them."""

import numpy as np
import pandas as pd
import pytest
import starfile

from autoencoder3d.cli.main import main as cli
from autoencoder3d.errors import InputError
from autoencoder3d.formats.coords import inside, particle_tables, read_coordinates, write_csv, write_star
from autoencoder3d.formats.mrc import write_mrc
from autoencoder3d.formats.subvolume_pickle import load_subvolumes

SHAPE = (40, 36, 30)
VS = 5.0
XYZ = np.array([[10.0, 12.0, 14.0], [20.0, 18.0, 15.0], [29.0, 20.0, 12.0]])


@pytest.fixture
def tomo(tmp_path):
    vol = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    path = tmp_path / "TS_01.mrc"
    write_mrc(path, vol, VS)
    return path, vol


def test_star_round_trip_relion4_and_relion5(tmp_path):
    tables = particle_tables(XYZ, "/data/TS_01.mrc", SHAPE, VS, {"rlnClassNumber": [1, 2, 3], "uuid": ["a", "b", "c"]})
    write_star(tmp_path / "p4.star", tables["relion4"])
    write_star(tmp_path / "p5.star", tables["relion5"])
    r4 = starfile.read(tmp_path / "p4.star")
    assert list(r4.columns) == [
        "rlnTomoName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnPixelSize", "rlnClassNumber"
    ]
    assert set(r4["rlnPixelSize"]) == {VS}  # the coordinates' unit, stated in the file
    assert r4["rlnTomoName"].tolist() == ["TS_01"] * 3 and r4["rlnMicrographName"].iloc[0] == "TS_01.mrc"
    r5 = starfile.read(tmp_path / "p5.star")
    assert {"rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"} <= set(r5.columns)
    # centred Angstrom: (pixel - size / 2) * voxel size
    assert r5["rlnCenteredCoordinateXAngst"].iloc[0] == pytest.approx((10 - 20) * VS)
    for name in ("p4.star", "p5.star"):
        np.testing.assert_allclose(read_coordinates(tmp_path / name, SHAPE, (VS,) * 3), XYZ)


def test_star_binned_coordinates(tmp_path):
    table = pd.DataFrame({"rlnCoordinateX": [5.0], "rlnCoordinateY": [6.0], "rlnCoordinateZ": [7.0]})
    write_star(tmp_path / "bin.star", table)
    # picked at 4x the pixel size: 5 px of 20 A = 20 voxels of 5 A
    np.testing.assert_allclose(read_coordinates(tmp_path / "bin.star", SHAPE, VS, coords_angpix=20.0), [[20, 24, 28]])
    with pytest.raises(InputError, match="voxel size"):
        read_coordinates(tmp_path / "bin.star", SHAPE, 0.0, coords_angpix=20.0)


def test_star_with_several_tomograms_keeps_this_one(tmp_path):
    table = pd.DataFrame(
        {"rlnMicrographName": ["TS_01.mrc", "TS_02.mrc"], "rlnCoordinateX": [1.0, 2.0], "rlnCoordinateY": [1.0, 2.0], "rlnCoordinateZ": [1.0, 2.0]}
    )
    write_star(tmp_path / "many.star", table)
    np.testing.assert_allclose(read_coordinates(tmp_path / "many.star", tomo_name="/x/TS_02.mrc"), [[2, 2, 2]])
    with pytest.raises(InputError, match="TS_03"):
        read_coordinates(tmp_path / "many.star", tomo_name="TS_03.rec")
    (tmp_path / "empty.star").write_text("data_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                                        "_rlnCoordinateZ #4\n")
    with pytest.raises(InputError, match=r"empty.star: lists no particles \(its table has a header and no rows\)"):
        read_coordinates(tmp_path / "empty.star", tomo_name="TS_01.mrc")


def test_star_missing_columns(tmp_path):
    write_star(tmp_path / "bad.star", pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]}))
    with pytest.raises(InputError, match="bad.star.*rlnCoordinateX/Y/Z"):
        read_coordinates(tmp_path / "bad.star")


def test_relion5_needs_voxel_size(tmp_path):
    tables = particle_tables(XYZ, "TS_01.mrc", SHAPE, VS)
    write_star(tmp_path / "p5.star", tables["relion5"])
    with pytest.raises(InputError, match="voxel size"):
        read_coordinates(tmp_path / "p5.star", SHAPE, (0.0, 0.0, 0.0))


def test_text_formats(tmp_path):
    (tmp_path / "plain.txt").write_text("10 12 14\n20 18 15\n29 20 12\n")
    (tmp_path / "header.csv").write_text("uuid,X,Y,Z\na,10,12,14\nb,20,18,15\nc,29,20,12\n")
    (tmp_path / "imod.txt").write_text("  1  1  10.00  12.00  14.00\n  1  2  20.00  18.00  15.00\n  1  3  29.00  20.00  12.00\n")
    (tmp_path / "contour.txt").write_text("1 10 12 14\n2 20 18 15\n3 29 20 12\n")
    for name in ("plain.txt", "header.csv"):
        np.testing.assert_allclose(read_coordinates(tmp_path / name), XYZ, err_msg=name)
    np.testing.assert_allclose(read_coordinates(tmp_path / "plain.txt", one_based=True), XYZ - 1)
    # IMOD model coordinates put the first voxel centre at (0.5, 0.5, 0) (3dmod; imodmodel's coordinate note)
    for name in ("imod.txt", "contour.txt"):
        np.testing.assert_allclose(read_coordinates(tmp_path / name), XYZ - [0.5, 0.5, 0], err_msg=name)
    np.testing.assert_allclose(read_coordinates(tmp_path / "plain.txt", imod=True), XYZ - [0.5, 0.5, 0])


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_spreadsheet_export_with_a_byte_order_mark_is_read(tmp_path, encoding):
    (tmp_path / "excel.csv").write_text("X,Y,Z\r\n10,12,14\r\n20,18,15\r\n29,20,12\r\n", encoding=encoding)
    np.testing.assert_allclose(read_coordinates(tmp_path / "excel.csv"), XYZ)


def test_comments_after_the_numbers_are_left_out(tmp_path):
    (tmp_path / "c.txt").write_text("# x y z of three ribosomes\nx y z  # voxels\n10 12 14  # first\n20 18 15\t# second\n29 20 12\n")
    np.testing.assert_allclose(read_coordinates(tmp_path / "c.txt"), XYZ)


@pytest.mark.parametrize(
    "text,match",
    [("a,b,c\n1,2,3\n", "no column named x, y, z"), ("x,y\n1,2\n", "no column named z"), ("1 2\n", "2 columns"), ("", "empty")],
)
def test_text_errors(tmp_path, text, match):
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(InputError, match=match):
        read_coordinates(tmp_path / "c.csv")


def test_inside():
    assert inside([[0, 0, 0], [39.4, 35, 29], [-0.6, 0, 0], [40, 0, 0]], SHAPE).tolist() == [True, True, False, False]


def test_extract_round_trips_with_pick_output(tmp_path, capsys):
    """pick's own STAR and CSV, fed to extract, give back the same subvolumes."""
    rng = np.random.default_rng(7)
    vol = rng.normal(size=(60, 56, 48)).astype(np.float32)
    grid = np.indices(vol.shape, dtype=np.float32)
    for c in ([15, 15, 15], [40, 20, 30], [30, 40, 20], [44, 42, 34]):
        vol -= 3 * np.exp(-sum((grid[k] - c[k]) ** 2 for k in range(3)) / (2 * 3.0**2))
    tomo = tmp_path / "tomo.mrc"
    write_mrc(tomo, vol, 10.0)
    assert cli(["pick", str(tomo), str(tmp_path / "picks.pickle"), "--sigma1", "3", "--box", "16"]) == 0
    picked = load_subvolumes(tmp_path / "picks.pickle")
    assert len(picked) >= 4
    for coords in ("picks.star", "picks.csv"):
        out = tmp_path / (coords + ".pickle")
        assert cli(["extract", str(tomo), str(tmp_path / coords), str(out), "--box", "16"]) == 0
        again = load_subvolumes(out)
        np.testing.assert_array_equal(again.centers, picked.centers)
        np.testing.assert_array_equal(again.volumes, picked.volumes)
        assert again.uuids == picked.uuids  # same tomogram, order and centres: same keys


def test_extract_drops_and_counts_outside(tmp_path, tomo, capsys):
    path, vol = tomo
    (tmp_path / "c.csv").write_text("x,y,z\n20,18,15\n-5,3,3\n100,1,1\n3,18,15\n")
    out = tmp_path / "o.pickle"
    assert cli(["extract", str(path), str(tmp_path / "c.csv"), str(out), "--box", "8"]) == 0
    msg = capsys.readouterr().out
    assert "extracted 1 of 4" in msg and "2 outside the tomogram" in msg and "1 whose box leaves it" in msg
    subs = load_subvolumes(out)
    np.testing.assert_array_equal(subs.volumes[0], vol[16:24, 14:22, 11:19])
    assert cli(["extract", str(path), str(tmp_path / "c.csv"), str(out), "--box", "8", "--partial", "fill"]) == 0
    assert len(load_subvolumes(out)) == 2


def test_extract_errors_are_one_line(tmp_path, tomo, capsys):
    path, _ = tomo
    (tmp_path / "far.csv").write_text("x,y,z\n500,500,500\n")
    (tmp_path / "cols.csv").write_text("x,y\n1,2\n")
    for coords, words in (("far.csv", "none of the 1 coordinates"), ("cols.csv", "no column named z"), ("nothere.star", "not found")):
        assert cli(["extract", str(path), str(tmp_path / coords), str(tmp_path / "o.pickle")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_write_csv_is_readable(tmp_path):
    tables = particle_tables(XYZ, None, None, None, {"cluster": [0, 1, 1]})
    write_csv(tmp_path / "p.csv", tables["csv"])
    np.testing.assert_allclose(read_coordinates(tmp_path / "p.csv"), XYZ)
