"""Particle lists written by RELION 4/5, WarpTools and IMOD (tests/files, see PROVENANCE.md).

Each test checks the positions against the formula of the consumer's source,
named in the test.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoencoder3d.cli.main import main as cli
from autoencoder3d.errors import InputError
from autoencoder3d.export import relion_matrix
from autoencoder3d.formats.coords import read_coordinates, tomo_key, write_star
from autoencoder3d.formats.mrc import write_mrc
from autoencoder3d.formats.star import euler_matrices, read_tomograms_star
from autoencoder3d.formats.subvolume_pickle import load_subvolumes

DATA = Path(__file__).resolve().parents[1] / "files"


@pytest.mark.parametrize(
    "name,key",
    [
        ("Tomograms/job006/tomograms/rec_TS_01.mrc", "TS_01"),  # RELION 5 reconstruct_tomogram.cpp: rec_ + rlnTomoName
        ("Tomograms/job006/tomograms/rec_TS_01_half1.mrc", "TS_01"),  # its denoising halves
        ("TS_01", "TS_01"),
        ("TS_17.tomostar", "TS_17"),  # WarpTools' series name
        ("warp_tiltseries/reconstruction/TS_17_4.00Apx.mrc", "TS_17"),  # WarpTools' reconstruction
        ("tomograms/TS_001/TS_001_aligned.st:mrc", "TS_001_aligned"),  # RELION 4 rlnMicrographName
        ("rec_20250409_Position_42_2", "20250409_Position_42_2"),
        ("tomo.rec", "tomo"),
    ],
)
def test_tomo_key(name, key):
    assert tomo_key(name) == key


def test_relion4_origin_shifts_real_file():
    """relion4_origins.star (cryoet-data-portal-backend): position = coordinate - origin / pixel size.

    RELION: ParticleSet::getPosition (src/jaz/tomography/particle_set.cpp) subtracts
    rlnOriginX/Y/ZAngst / pixel size; WarpTools: ExportParticlesTiltseries.GetInputCoordinates
    subtracts rlnOriginXAngst / rlnPixelSize. The file's only pixel size is the
    optics table's rlnImagePixelSize (1 A).
    """
    path = DATA / "relion4_origins.star"
    got = read_coordinates(path, (40, 40, 40), 1.0, tomogram="/data/TS_002.mrc")
    expect = np.array([[6, 4, 2], [0, 6, 0], [8, 4, 2]], float) - np.array([[-1, -2, -3], [3, 2, 1], [0, 3, 0]], float)
    np.testing.assert_allclose(got, expect)
    # the same pixels on a tomogram binned by 2 (2 A voxels): half the voxel numbers
    np.testing.assert_allclose(read_coordinates(path, (40, 40, 40), 2.0, tomogram="TS_002.rec"), expect / 2)
    # --coords-angpix overrides the file: pixels of 0.5 A, so the 1 A shifts are 2 pixels
    got = read_coordinates(path, (40, 40, 40), 1.0, 0.5, tomogram="TS_001.mrc")
    np.testing.assert_allclose(got[0], (np.array([4, 8, 12]) - np.array([-1.2, -2.4, -3.2]) / 0.5) * 0.5)


def test_unknown_tomogram_lists_the_names():
    with pytest.raises(InputError, match=r"no rows for tomogram 'TS_009'.*TS_001, TS_002, TS_003.*--tomo-name"):
        read_coordinates(DATA / "relion4_origins.star", (40, 40, 40), 1.0, tomogram="rec_TS_009.mrc")
    got = read_coordinates(DATA / "relion4_origins.star", (40, 40, 40), 1.0, tomogram="mine.mrc", tomo_name="TS_003")
    np.testing.assert_allclose(got, [[1, 0, -1]])


def test_rec_prefixed_names_real_file():
    """relion_pixels_rec_names.star names its tomogram rec_20250409_Position_42_2 (RELION 5's file name)."""
    path = DATA / "relion_pixels_rec_names.star"
    for tomogram in ("rec_20250409_Position_42_2.mrc", "20250409_Position_42_2.mrc"):
        assert read_coordinates(path, (682, 682, 232), 14.34, tomogram=tomogram).shape == (5, 3)
    np.testing.assert_allclose(
        read_coordinates(path, (682, 682, 232), 14.34, tomogram="rec_20250409_Position_42_2.mrc")[0],
        [468.660614, 246.139755, 66.929184],
    )


def test_warp_template_matching_real_file():
    """warp_template_match.star: WarpTools names the series TS_1.tomostar and the map TS_1_10.00Apx.mrc.

    Its coordinates are normalized to [0, 1]: refused as pixels, read with normalized=True.
    """
    path = DATA / "warp_template_match.star"
    with pytest.raises(InputError, match="normalized"):
        read_coordinates(path, (300, 300, 100), 10.0, tomogram="TS_1_10.00Apx.mrc")
    # WarpTools ExportParticlesTiltseries (--normalized_coords): x * (DimensionsX - 1) tilt-series
    # pixels of Import.PixelSize; here 2.5 A pixels binned by 4 into the 10 A map of 300 x 300 x 100
    got = read_coordinates(path, (300, 300, 100), 10.0, 2.5, tomogram="TS_1_10.00Apx.mrc", normalized=True)
    import starfile

    xyz = starfile.read(path)[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    dims = np.array([1200, 1200, 400])  # the unbinned tomogram, in tilt-series pixels
    np.testing.assert_allclose(got, xyz * (dims - 1) * 2.5 / 10.0)
    with pytest.raises(InputError, match="--coords-angpix or --tomograms"):
        read_coordinates(path, (300, 300, 100), 10.0, tomogram="TS_1_10.00Apx.mrc", normalized=True)
    with pytest.raises(InputError, match=r"'TS_2'.*TS_1.tomostar"):
        read_coordinates(path, (300, 300, 100), 10.0, tomogram="TS_2_10.00Apx.mrc")


def test_tomograms_star_real_file():
    entry = read_tomograms_star(DATA / "relion5_tomograms.star", "rec_20250512_Position_2.mrc")
    assert entry["name"] == "20250512_Position_2"
    assert entry["pixel_size"] == pytest.approx(2.39) and entry["binning"] == pytest.approx(6.0)
    np.testing.assert_allclose(entry["size"], [4092, 4092, 1392])
    with pytest.raises(InputError, match="Position_7"):
        read_tomograms_star(DATA / "relion5_tomograms.star", "rec_Position_7.mrc")


def test_euler_matrices_are_relions():
    """Euler_angles2matrix (RELION src/euler.cpp) equals the inverse of scipy's intrinsic ZYZ rotation."""
    from scipy.spatial.transform import Rotation

    angles = np.array([[10.0, 20.0, 30.0], [174.9, 90.26, -129.5], [-173.9, 81.9, -69.5]])
    for (rot, tilt, psi), m in zip(angles, euler_matrices(*angles.T)):
        np.testing.assert_allclose(m, Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T, atol=1e-12)


def test_relion5_shifts_rotated_by_subtomogram_matrix_real_file():
    """relion5_class3d_particles.star / relion5_cylindra_tomograms.star (RELION 5 Class3D output, cylindra).

    RELION 5 ParticleSet::getPosition (src/jaz/tomography/particle_set.cpp): decentered pixel =
    centred / ts + size / 2 (getParticleCoordDecenteredPixel, ts = the optics group's
    rlnTomoTiltSeriesPixelSize) minus A_subtomogram @ origin / ts, A_subtomogram from
    rlnTomoSubtomogramRot/Tilt/Psi; voxel j of the binned tomogram sits at unbinned pixel j * binning.
    """
    import starfile

    tomograms = DATA / "relion5_cylindra_tomograms.star"
    ts_tomo, binning, size = 1.052, 4.830918, np.array([1000, 800, 200.0])
    vs = ts_tomo * binning
    got = read_coordinates(DATA / "relion5_class3d_particles.star", (207, 166, 41), vs, tomogram="rec_TS_01.mrc",
                           tomograms_star=tomograms)
    table = starfile.read(DATA / "relion5_class3d_particles.star")["particles"]
    rows = table[table["rlnTomoName"] == "TS_01"]
    assert len(got) == len(rows) == 3
    ts = 1.35  # the particles' optics table
    for position, row in zip(got, rows.itertuples()):
        a_sub = relion_matrix(row.rlnTomoSubtomogramRot, row.rlnTomoSubtomogramTilt, row.rlnTomoSubtomogramPsi)
        origin = np.array([row.rlnOriginXAngst, row.rlnOriginYAngst, row.rlnOriginZAngst])
        centred = np.array([row.rlnCenteredCoordinateXAngst, row.rlnCenteredCoordinateYAngst, row.rlnCenteredCoordinateZAngst])
        pixel = centred / ts + size / 2 - a_sub @ origin / ts
        np.testing.assert_allclose(position, pixel / binning, atol=1e-9)
        # the rotation matters: the unrotated shift would put it elsewhere
        assert np.abs(position - (centred / ts + size / 2 - origin / ts) / binning).max() > 0.1
    # without tomograms.star: Angstrom from the centre of this tomogram (size / 2 voxels)
    plain = read_coordinates(DATA / "relion5_class3d_particles.star", (207, 166, 41), vs, tomogram="TS_01.mrc")
    row = rows.iloc[0]
    a_sub = relion_matrix(row.rlnTomoSubtomogramRot, row.rlnTomoSubtomogramTilt, row.rlnTomoSubtomogramPsi)
    centred = row[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]].to_numpy(float)
    origin = row[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy(float)
    np.testing.assert_allclose(plain[0], (centred - a_sub @ origin) / vs + np.array([207, 166, 41]) / 2)


def test_warptools_pixel_size_column_and_relion3_pixel_origins(tmp_path):
    """WarpTools ExportParticlesTiltseries.GetInputCoordinates: position (pixels of rlnPixelSize) =
    coordinate - rlnOriginXAngst / rlnPixelSize, or - rlnOriginX (RELION 3, pixels)."""
    table = pd.DataFrame({
        "rlnCoordinateX": [100.0, 200.0], "rlnCoordinateY": [50.0, 60.0], "rlnCoordinateZ": [30.0, 40.0],
        "rlnMicrographName": ["TS_17.tomostar"] * 2, "rlnPixelSize": [2.5, 2.5],
        "rlnOriginXAngst": [5.0, -2.5], "rlnOriginYAngst": [0.0, 0.0], "rlnOriginZAngst": [2.5, 0.0],
    })
    write_star(tmp_path / "warp.star", table)
    got = read_coordinates(tmp_path / "warp.star", (100, 100, 50), 10.0, tomogram="TS_17_10.00Apx.mrc")
    np.testing.assert_allclose(got, [[(100 - 2) / 4, 50 / 4, (30 - 1) / 4], [(200 + 1) / 4, 60 / 4, 40 / 4]])
    r3 = table.drop(columns=["rlnPixelSize", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"])
    r3["rlnOriginX"], r3["rlnOriginY"], r3["rlnOriginZ"] = [1.5, 0.0], [0.0, -2.0], [0.0, 0.0]
    write_star(tmp_path / "r3.star", r3)
    got = read_coordinates(tmp_path / "r3.star", (300, 300, 50), 10.0, tomogram="TS_17.mrc")
    np.testing.assert_allclose(got, [[98.5, 50, 30], [200, 62, 40]])


def test_binary_imod_model_real_file(tmp_path, capsys):
    """imod_points.mod (IMOD's point2model of imod_points_input.txt, from the imodmodel repository):
    model point (x, y, z) is voxel (x - 0.5, y - 0.5, z)."""
    model = np.loadtxt(DATA / "imod_points_input.txt")
    np.testing.assert_allclose(read_coordinates(DATA / "imod_points.mod"), model - [0.5, 0.5, 0])
    # the same content under another extension is still recognised by its magic bytes
    (tmp_path / "points.txt").write_bytes((DATA / "imod_points.mod").read_bytes())
    np.testing.assert_allclose(read_coordinates(tmp_path / "points.txt"), model - [0.5, 0.5, 0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imodmodel 0.1's writer calls a pydantic-1 method
def test_extract_imod_model_lands_on_the_marked_voxel(tmp_path, capsys):
    """A point clicked at a voxel centre in 3dmod (model x = i + 0.5) cuts the box centred on voxel i."""
    import imodmodel

    vol = np.zeros((24, 24, 24), np.float32)
    vol[10, 13, 9] = 1.0
    write_mrc(tmp_path / "t.mrc", vol, 5.0)
    imodmodel.write(pd.DataFrame({"x": [10.5], "y": [13.5], "z": [9.0]}), tmp_path / "p.mod")
    assert cli(["extract", str(tmp_path / "t.mrc"), str(tmp_path / "p.mod"), str(tmp_path / "o.pickle"), "--box", "8"]) == 0
    box = load_subvolumes(tmp_path / "o.pickle").volumes[0]
    assert np.unravel_index(np.argmax(box), box.shape) == (4, 4, 4)


def test_extract_takes_the_tomogram_name(tmp_path, capsys):
    """RELION 5 names its map rec_TS_002.mrc for rlnTomoName TS_002 (reconstruct_tomogram.cpp); --tomo-name
    picks another tomogram's rows; an unknown name lists the file's names."""
    vol = np.random.default_rng(1).normal(size=(40, 40, 40)).astype(np.float32)
    write_mrc(tmp_path / "rec_TS_002.mrc", vol, 1.0)
    coords, out = DATA / "relion4_origins.star", tmp_path / "o.pickle"
    assert cli(["extract", str(tmp_path / "rec_TS_002.mrc"), str(coords), str(out), "--box", "4", "--partial", "fill"]) == 0
    assert "extracted 2 of 3" in capsys.readouterr().out  # (0, 6, 0) - (3, 2, 1) lies outside
    np.testing.assert_allclose(load_subvolumes(out).centers, [[7, 6, 5], [8, 1, 2]])
    assert cli(["extract", str(tmp_path / "rec_TS_002.mrc"), str(coords), str(out), "--box", "4", "--partial", "fill",
                "--tomo-name", "TS_001"]) == 0
    np.testing.assert_allclose(load_subvolumes(out).centers, [[5, 10, 15], [1, 2, 3]])
    assert cli(["extract", str(tmp_path / "rec_TS_002.mrc"), str(coords), str(out), "--tomo-name", "TS_5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TS_001, TS_002, TS_003" in err[0]
