"""`dataset build` of hostile inputs: one line, exit 2, and nothing left that stands in the way of the next build."""

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from tests.conftest import write_tomogram


@pytest.fixture
def tomogram(tmp_path):
    return write_tomogram(tmp_path / "a.mrc", np.random.default_rng(0).normal(size=(24, 24, 24)))


def build(out, table):
    return main(["dataset", "build", str(out), "--table", str(table), "--box", "8", "-q"])


def test_a_coordinate_too_large_for_an_integer_is_outside_and_leaves_no_store(tmp_path, tomogram, capsys):
    table = tmp_path / "t.csv"
    table.write_text("tomogram,x,y,z\na.mrc,1e300,12,12\na.mrc,-1e300,12,12\n")
    assert build(tmp_path / "d.zarr", table) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d.zarr: no subvolume was extracted from any of the 1 tomograms" in err, err
    assert "coordinates are in voxels" in err and not (tmp_path / "d.zarr").exists()
    table.write_text("tomogram,x,y,z\na.mrc,12,12,12\n")
    assert build(tmp_path / "d.zarr", table) == 0  # the failed build left nothing in the way


def test_an_empty_folder_of_the_user_is_kept_when_nothing_is_extracted(tmp_path, tomogram, capsys):
    table = tmp_path / "t.csv"
    table.write_text("tomogram,x,y,z\na.mrc,500,12,12\n")
    (tmp_path / "mine.zarr").mkdir()
    assert build(tmp_path / "mine.zarr", table) == 2
    assert (tmp_path / "mine.zarr").is_dir()


@pytest.mark.parametrize("binning", ["abc", "nan", "0"])
def test_a_relion_binning_that_is_no_positive_number_is_one_line(tmp_path, tomogram, capsys, binning):
    tomograms = tmp_path / "tomograms.star"
    tomograms.write_text("data_global\nloop_\n_rlnTomoName\n_rlnTomoTiltSeriesPixelSize\n_rlnTomoTomogramBinning\n_rlnTomoSizeX\n"
                         f"_rlnTomoSizeY\n_rlnTomoSizeZ\n_rlnTomoReconstructedTomogram\na 10.0 {binning} 24 24 24 {tomogram}\n")
    particles = tmp_path / "particles.star"
    particles.write_text("data_particles\nloop_\n_rlnTomoName\n_rlnCenteredCoordinateXAngst\n_rlnCenteredCoordinateYAngst\n"
                         "_rlnCenteredCoordinateZAngst\na 0 0 0\n")
    assert main(["dataset", "build", str(tmp_path / "r.zarr"), "--relion", str(tomograms), str(particles), "--box", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tomograms.star: tomogram a: " in err and "inning" in err, err
    assert not (tmp_path / "r.zarr").exists()
