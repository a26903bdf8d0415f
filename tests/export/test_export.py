"""Exports of a run: MRC centres with voxel size, STAR/CSV particle lists, RELION ZYZ angles."""

import json

import mrcfile
import numpy as np
import pytest
import starfile
from scipy import ndimage
from scipy.spatial.transform import Rotation

from autoencoder3d.cli.main import main as cli
from autoencoder3d.export import export_run, relion_angles, relion_matrix
from autoencoder3d.formats.mrc import write_mrc
from autoencoder3d.formats.subvolume_pickle import save_pickle

N = 24
SHAPE = (80, 70, 60)
VS = 8.5


def asymmetric_particle(rotation):
    """Three bright blobs of different sizes (no symmetry), rotated by ``rotation`` about the box middle."""
    grid = np.indices((N, N, N), dtype=float).reshape(3, -1).T - (N - 1) / 2
    local = grid @ rotation  # rotation^T applied to each point: the particle turned by ``rotation``
    vol = np.zeros(len(grid))
    for centre, sigma, weight in (([0, 0, 0], 3.0, 1.0), ([6, 0, 0], 2.2, 0.8), ([-1, 3.5, 0], 1.8, 0.6)):
        vol += weight * np.exp(-np.sum((local - centre) ** 2, axis=1) / (2 * sigma**2))
    return vol.reshape(N, N, N)


def principal_axes(vol):
    """Centre of mass and PCA rotation (columns: axes by decreasing eigenvalue, det +1), as in spec section 3."""
    p = np.indices(vol.shape).reshape(3, -1).T.astype(float)
    w = vol.ravel()
    c = (w[:, None] * p).sum(0) / w.sum()
    d = p - c
    vals, vecs = np.linalg.eigh((w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0))
    rm = vecs[:, np.argsort(-np.abs(vals))]
    if np.linalg.det(rm) < 0:
        rm[:, 2] *= -1
    return c, rm


def normalize(vol, c, rm):
    """Spec section 3: affine_transform(box, rm, offset=c1 - rm @ c2), c2 = c1 + rm^T (mid - c)."""
    mid = (np.array(vol.shape) - 1) / 2
    c2 = mid + rm.T @ (mid - c)
    return ndimage.affine_transform(vol, rm, offset=mid - rm @ c2, order=3)


def make_run(tmp_path, pose=False, n_per=4, k=3, voxel_size=True):
    rng = np.random.default_rng(0)
    tomo = tmp_path / "TS_07.rec"
    write_mrc(tomo, np.zeros(SHAPE, np.float32), VS)
    vs, kmeans, poses = {}, {c: [] for c in range(k)}, {}
    for i in range(n_per * k):
        uid = f"p{i:03d}"
        center = [int(v) for v in rng.integers(N, np.array(SHAPE) - N)]
        rot = Rotation.random(random_state=i).as_matrix()
        vol = asymmetric_particle(rot)
        vs[uid] = {"center": center, "id": uid, "v": vol.astype(np.float32)}
        kmeans[i % k].append(uid)
        c, rm = principal_axes(vol)
        poses[uid] = {"center": center, "id": uid, "v": normalize(vol, c, rm).astype(np.float32), "rotation": rm, "center_of_mass": c}
    data = tmp_path / "subvolumes.pickle"
    save_pickle(data, {"v_siz": np.array([N, N, N]), "vs": vs})
    run = tmp_path / "run"
    (run / "clus-center").mkdir(parents=True)
    save_pickle(run / "clus-center" / "kmeans.pickle", kmeans)
    save_pickle(run / "clus-center" / "ccents.pickle", {c: rng.normal(size=(N, N, N)).astype(np.float32) for c in range(k)})
    save_pickle(run / "clus-center" / "ccents_d.pickle", rng.normal(size=(k, 32)))
    if pose:
        save_pickle(run / "pose-normalized.pickle", {"v_siz": np.array([N, N, N]), "vs": poses})
    record = {
        "inputs": {"data": str(data), "tomogram": str(tomo), "pose": pose, "n_clusters": k},
        "voxel_size": [VS] * 3 if voxel_size else None,
    }
    (run / "run.json").write_text(json.dumps(record))
    return run, vs, kmeans, poses


def test_relion_matrix_convention():
    # rot = 90 about Z turns the reference clockwise: x goes to -y (RELION's Euler_angles2matrix)
    np.testing.assert_allclose(relion_matrix(90, 0, 0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    for seed in range(20):
        rot, tilt, psi = Rotation.random(random_state=seed).as_euler("ZYZ", degrees=True)
        expect = Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T
        np.testing.assert_allclose(relion_matrix(rot, tilt, psi), expect, atol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_angles_round_trip(seed):
    m = Rotation.random(random_state=seed).as_matrix()
    np.testing.assert_allclose(relion_matrix(*relion_angles(m)), m, atol=1e-9)


@pytest.mark.parametrize("angles", [(30, 0, 40), (30, 180, 40), (0, 1e-8, 0), (-170, 90, 170)])
def test_angles_round_trip_at_gimbal_lock(angles):
    m = relion_matrix(*angles)
    np.testing.assert_allclose(relion_matrix(*relion_angles(m)), m, atol=1e-7)


def test_angles_reject_mirror():
    with pytest.raises(ValueError):
        relion_angles(np.diag([1.0, 1.0, -1.0]))


def test_exported_angles_rotate_normalized_particle_into_place(tmp_path):
    """RELION: the reference (normalized pose) rotated by the angles is the particle; undoing it recovers the pose."""
    run, vs, _, poses = make_run(tmp_path, pose=True)
    export_run(run, log=None)
    star = starfile.read(run / "clus-center" / "particles" / "all.star")
    assert {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(star.columns)
    csv = np.genfromtxt(run / "clus-center" / "particles" / "all.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    mid = (N - 1) / 2
    for row, uid in zip(star.itertuples(), csv["uuid"]):
        particle = vs[uid]["v"].astype(float)
        normalized = poses[uid]["v"].astype(float)
        c = poses[uid]["center_of_mass"]
        a = relion_matrix(row.rlnAngleRot, row.rlnAngleTilt, row.rlnAnglePsi)
        # the particle at r (from its centre) is the reference at A^T r
        predicted = ndimage.affine_transform(normalized, a.T, offset=mid - a.T @ c, order=3)
        assert np.corrcoef(predicted.ravel(), particle.ravel())[0, 1] > 0.98
        # rotating the particle back by A^T gives the normalized pose: major axis along x, centre in the middle
        recovered = ndimage.affine_transform(particle, a, offset=c - a @ np.full(3, mid), order=3)
        assert np.corrcoef(recovered.ravel(), normalized.ravel())[0, 1] > 0.98
        com, axes = principal_axes(np.clip(recovered, 0, None))
        np.testing.assert_allclose(com, mid, atol=0.3)
        np.testing.assert_allclose(np.abs(axes), np.eye(3), atol=0.05)
        # (positions: tests/test_export_pose.py, against the real pose normalization)


def test_mrc_centres_carry_voxel_size(tmp_path):
    run, *_ = make_run(tmp_path)
    written = export_run(run, formats="mrc", log=None)
    assert len(written["mrc"]) == 3 and written["star"] == []
    with mrcfile.open(run / "clus-center" / "mrc" / "001.mrc") as mrc:
        assert mrc.voxel_size.x == pytest.approx(VS) and mrc.voxel_size.z == pytest.approx(VS)
        assert mrc.data.shape == (N, N, N)


def test_voxel_size_from_tomogram_when_run_has_none(tmp_path):
    run, *_ = make_run(tmp_path, voxel_size=False)
    export_run(run, formats="mrc", log=None)
    with mrcfile.open(run / "clus-center" / "mrc" / "000.mrc") as mrc:
        assert mrc.voxel_size.y == pytest.approx(VS)


def test_particle_lists(tmp_path):
    run, vs, kmeans, _ = make_run(tmp_path)
    export_run(run, log=None)
    parts = run / "clus-center" / "particles"
    r4 = starfile.read(parts / "all.star")
    assert list(r4.columns) == [
        "rlnTomoName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnPixelSize",
        "rlnDetectorPixelSize", "rlnMagnification", "rlnClassNumber",
    ]
    # names as RELION 5 (tomograms.star: TS_07) and WarpTools/M (series TS_07.tomostar) match them
    assert len(r4) == 12 and set(r4["rlnTomoName"]) == {"TS_07"} and set(r4["rlnMicrographName"]) == {"TS_07.tomostar"}
    # no tilt-series pixel size given: pixels of this tomogram, and the file says their size
    assert set(r4["rlnPixelSize"]) == {VS}
    r5 = starfile.read(parts / "002_relion5.star")
    assert len(r5) == len(kmeans[2]) and set(r5["rlnClassNumber"]) == {3}
    uid = kmeans[2][0]
    expect = (np.array(vs[uid]["center"]) - np.array(SHAPE) / 2) * VS
    got = r5[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]].to_numpy()[0]
    np.testing.assert_allclose(got, expect)
    lines = (parts / "all.csv").read_text().splitlines()
    assert lines[0] == "x,y,z,rlnClassNumber,uuid,cluster"
    assert "rlnAngleRot" not in r4.columns  # no pose normalization, no angles


def test_unknown_tomogram_name_is_said(tmp_path):
    run, *_ = make_run(tmp_path)
    record = json.loads((run / "run.json").read_text())
    record["inputs"]["tomogram"] = None
    (run / "run.json").write_text(json.dumps(record))
    written = export_run(run, formats="star", log=None)
    assert any("--tomo-name" in n for n in written["notes"])
    assert set(starfile.read(run / "clus-center" / "particles" / "all.star")["rlnTomoName"]) == {"tomogram"}


def test_pixel_star_in_tilt_series_pixels_and_names(tmp_path):
    """RELION 5's import (pipeline_jobs.cpp) takes rlnCoordinate in tilt-series pixels and does not
    rescale; WarpTools takes --coords_angpix and groups by rlnMicrographName (ExportParticlesTiltseries)."""
    run, vs, kmeans, _ = make_run(tmp_path)
    export_run(run, ts_angpix=VS / 4, tomo_name="TS_7", series_name="TS_7.mrc.tomostar", formats="star", log=None)
    r4 = starfile.read(run / "clus-center" / "particles" / "000.star")
    uid = kmeans[0][0]
    got = r4[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()[0]
    np.testing.assert_allclose(got, np.array(vs[uid]["center"]) * 4)
    assert set(r4["rlnPixelSize"]) == {VS / 4} and set(r4["rlnTomoName"]) == {"TS_7"}
    # M (MTools/Commands/CreateSpecies.cs): coordinate pixel = rlnDetectorPixelSize * 1e4 / rlnMagnification,
    # particles matched by rlnMicrographName before rlnTomoName
    np.testing.assert_allclose(r4["rlnDetectorPixelSize"] * 1e4 / r4["rlnMagnification"], VS / 4)
    assert set(r4["rlnMicrographName"]) == {"TS_7.mrc.tomostar"}
    r5 = starfile.read(run / "clus-center" / "particles" / "000_relion5.star")
    assert set(r5["rlnTomoName"]) == {"TS_7"}


def test_chosen_clusters_only(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    assert cli(["export", str(run), "--clusters", "0,2", "--format", "star,mrc"]) == 0
    parts = run / "clus-center" / "particles"
    assert sorted(p.name for p in parts.iterdir()) == [
        "000.star", "000_relion5.star", "002.star", "002_relion5.star", "selected.star", "selected_relion5.star"
    ]
    assert sorted(p.name for p in (run / "clus-center" / "mrc").iterdir()) == ["000.mrc", "002.mrc"]
    assert set(starfile.read(parts / "selected.star")["rlnClassNumber"]) == {1, 3}


def test_export_errors(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    for argv, words in (
        (["export", str(tmp_path / "nope")], "run.json"),
        (["export", str(run), "--clusters", "1,9"], "9 not in this run"),
        (["export", str(run), "--clusters", "a"], "--clusters"),
        (["export", str(run), "--format", "pdf"], "unknown"),
        (["export", str(run), "--tomograms", str(tmp_path / "none.star")], "tomograms.star not found"),
    ):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    with pytest.raises(SystemExit, match="2"):  # refused by the parser, as every positive number is
        cli(["export", str(run), "--ts-angpix", "-1"])
    assert "argument --ts-angpix: expected a positive number" in capsys.readouterr().err


def test_a_failed_export_writes_nothing(tmp_path, capsys):
    """The run's DATA is read, and every centre checked, before the first file is written."""
    run, *_ = make_run(tmp_path)
    (tmp_path / "subvolumes.pickle").unlink()
    assert cli(["export", str(run)]) == 2
    said = capsys.readouterr().err
    assert "subvolumes.pickle" in said and not (run / "clus-center" / "mrc").exists()
    assert "the DATA this run used (run.json, inputs.data) is not there; put it back" in said and len(said.strip().splitlines()) == 1
    save_pickle(run / "clus-center" / "ccents.pickle", {0: np.zeros((N, N, N), np.float32), 1: "abc"})
    assert cli(["export", str(run), "--format", "mrc"]) == 2
    assert "the centre of cluster 1 is 'abc', not a volume" in capsys.readouterr().err
    assert not (run / "clus-center" / "mrc").exists()
