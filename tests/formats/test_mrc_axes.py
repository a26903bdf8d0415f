"""MRC axis order (mapc/mapr/maps, MRC2014): tomograms stored in any axis order read as [x, y, z]."""

import mrcfile
import numpy as np
import pytest

from autoencoder3d.cli.main import main as cli
from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram


def write_permuted(path, vol, voxel_size, mapping):
    """Store ``vol`` (indexed [x, y, z]) with columns, rows, sections along axes ``mapping`` (1 = x)."""
    axes = [m - 1 for m in mapping]  # columns, rows, sections
    stored = np.ascontiguousarray(vol.transpose(axes[::-1]))  # numpy order: sections, rows, columns
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(stored.astype(np.float32))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = mapping
        mrc.header.mx, mrc.header.my, mrc.header.mz = vol.shape  # sampling along x, y, z
        mrc.header.cella = tuple(float(n * s) for n, s in zip(vol.shape, voxel_size))


@pytest.mark.parametrize("mapping", [(1, 2, 3), (3, 1, 2), (2, 3, 1), (3, 2, 1)])
def test_axis_order_honoured(tmp_path, mapping):
    vol = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    write_permuted(tmp_path / "t.mrc", vol, (2.0, 3.0, 4.0), mapping)
    tomo = read_tomogram(tmp_path / "t.mrc")
    assert tomo.shape == (6, 7, 8)
    np.testing.assert_array_equal(np.asarray(tomo.data), vol)
    assert tomo.voxel_size == pytest.approx((2.0, 3.0, 4.0))
    tomo.close()


def test_invalid_axis_order_refused_in_one_line(tmp_path, capsys):
    vol = np.zeros((6, 7, 8), np.float32)
    write_permuted(tmp_path / "t.mrc", vol, (1.0, 1.0, 1.0), (1, 2, 3))
    with mrcfile.open(tmp_path / "t.mrc", mode="r+") as mrc:
        mrc.header.maps = 1
    with pytest.raises(InputError, match=r"mapc/mapr/maps = \(1, 2, 1\)"):
        read_tomogram(tmp_path / "t.mrc")
    (tmp_path / "c.csv").write_text("x,y,z\n3,3,3\n")
    assert cli(["extract", str(tmp_path / "t.mrc"), str(tmp_path / "c.csv"), str(tmp_path / "o.pickle")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
