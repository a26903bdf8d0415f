"""Exports of a run on a data set of many tomograms: per-tomogram rows, IMOD models, copick write-back."""

import json
import shutil

import imodmodel
import numpy as np
import pandas as pd
import pytest
import starfile

from autoencoder3d.cli.main import main as cli
from autoencoder3d.data.store.read import StoreVolumes
from autoencoder3d.data.store.store import store_from_set
from autoencoder3d.export import export_run, relion_matrix
from autoencoder3d.export.geometry import pose_position
from autoencoder3d.formats.subvolume_pickle import load_pickle
from autoencoder3d.volume import SubvolumeSet
from tests.conftest import rotation_matrix
from tests.data.test_dataset_build import project  # noqa: F401 - three simulated tomograms, as the build tests use

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

SIDE = 16
TOMOGRAMS = {  # name: (shape x, y, z in voxels, voxel size in A): each differs, so a shared one would be caught
    "TS_01": ((60, 50, 40), 10.0),
    "TS_02": ((72, 64, 48), 8.0),
    "TS_03": ((50, 56, 44), 12.5),
}
PER = 8


def dataset(pose=False, seed=0, table=None):
    """3 tomograms x 8 subvolumes of 16^3 (two kinds), centres inside each tomogram, poses when asked."""
    rng = np.random.default_rng(seed)
    names = np.repeat(list(TOMOGRAMS), PER).astype(object)
    n = len(names)
    volumes = rng.normal(0.0, 0.3, (n, SIDE, SIDE, SIDE)).astype(np.float32)
    volumes[::2, 4:12, 4:12, 4:12] -= 2.0
    centers = np.array([rng.uniform(8, np.array(TOMOGRAMS[t][0]) - 8) for t in names]).round(1)
    rotations = centers_of_mass = None
    if pose:
        rotations = np.array([rotation_matrix(rng) for _ in range(n)])
        centers_of_mass = rng.uniform(6.5, 8.5, (n, 3))
    table = table or {t: {"name": t, "path": None, "voxel_size": [vs] * 3, "shape": list(shape)} for t, (shape, vs) in TOMOGRAMS.items()}
    return SubvolumeSet(uuids=[f"{t}/{i}" for i, t in enumerate(names)], volumes=volumes, centers=centers, tomograms=names,
                        rotations=rotations, centers_of_mass=centers_of_mass, tomogram_table=table)


def cluster_run(store, out, k=3):
    """A run folder on ``store`` clustered by the real pipeline with an untrained encoder.

    Training is tested elsewhere and costs ~20 s here; the export reads only ``run.json``
    and ``clus-center/``, which :func:`cluster_and_write` writes as ``train`` does.
    """
    import keras

    from autoencoder3d.data.open import open_data
    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.workflows.train import cluster_and_write

    keras.utils.set_random_seed(0)
    subvolumes = open_data(store)
    _, encoder, decoder, _ = build_autoencoder(subvolumes.v_siz, encoding_dim=8)
    cluster_and_write(subvolumes, encoder, decoder, k, str(out), n_init=2, seed=0, batch_size=8)
    record = {"command": "train", "inputs": {"data": str(store), "tomogram": None, "pose": False, "n_clusters": k},
              "v_siz": list(subvolumes.v_siz), "voxel_size": None}
    (out / "run.json").write_text(json.dumps(record))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder (k=3) on a store of 3 tomograms; a second store with poses for the same particles."""
    tmp = tmp_path_factory.mktemp("many")
    store_from_set(tmp / "plain.zarr", dataset())
    store_from_set(tmp / "posed.zarr", dataset(pose=True))
    cluster_run(tmp / "plain.zarr", tmp / "run")
    return tmp


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the run folder (exports write into it)."""
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


def members(run):
    return {int(k): list(v) for k, v in load_pickle(run / "clus-center" / "kmeans.pickle").items()}


def truth(pose=False):
    """uuid -> (tomogram, centre, rotation, centre of mass) of the data set."""
    s = dataset(pose)
    return {u: (s.tomogram_of(i), s.centers[i], *s.pose_of(i)) for i, u in enumerate(s.uuids)}


def test_rows_carry_their_own_tomogram(run, monkeypatch):
    def no_volumes(self, indices):
        raise AssertionError("the export read subvolumes")

    monkeypatch.setattr(StoreVolumes, "_read", no_volumes)  # uuids, names and centres are enough
    written = export_run(run, log=None)
    parts = run / "clus-center" / "particles"
    known = truth()
    csv = pd.read_csv(parts / "all.csv")
    r4 = starfile.read(parts / "all.star")
    r5 = starfile.read(parts / "all_relion5.star")
    assert list(csv.columns[:4]) == ["tomogram", "x", "y", "z"] and len(csv) == len(r4) == len(r5) == 3 * PER
    assert sorted(csv["uuid"]) == sorted(known)
    for i, row in csv.iterrows():
        tomo, centre = known[row["uuid"]][:2]
        shape, vs = TOMOGRAMS[tomo]
        assert row["tomogram"] == tomo == r4["rlnTomoName"][i] == r5["rlnTomoName"][i]
        assert r4["rlnMicrographName"][i] == f"{tomo}.tomostar" and r4["rlnPixelSize"][i] == vs
        np.testing.assert_allclose(row[["x", "y", "z"]].to_numpy(float), centre)
        np.testing.assert_allclose(r4.loc[i, ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(float), centre)
        centred = r5.loc[i, ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
        np.testing.assert_allclose(centred.to_numpy(float), (centre - np.array(shape) / 2) * vs)
    assert "rlnAngleRot" not in r4.columns
    for cid, uuids in members(run).items():
        table = pd.read_csv(parts / f"{cid:03d}.csv")
        assert sorted(table["uuid"]) == sorted(uuids) and set(starfile.read(parts / f"{cid:03d}.star")["rlnClassNumber"]) == {cid + 1}
    # one IMOD model per tomogram; object N + 1 is cluster N in each of them
    assert sorted(p.name for p in (parts / "all_imod").iterdir()) == ["TS_01.mod", "TS_02.mod", "TS_03.mod"]
    assert len(written["imod"]) == 3
    for tomo in TOMOGRAMS:
        model = imodmodel.read(parts / "all_imod" / f"{tomo}.mod")
        mine = csv[csv["tomogram"] == tomo]
        assert len(model) == len(mine) == PER
        got = sorted(zip(model["object_id"], model["x"], model["y"], model["z"]))
        want = sorted(zip(mine["cluster"], mine["x"] + 0.5, mine["y"] + 0.5, mine["z"]))
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-4)


def test_pose_normalized_store_places_each_particle_in_its_tomogram(run):
    record = json.loads((run / "run.json").read_text())
    record["inputs"]["data"] = record["inputs"]["data"].replace("plain", "posed")
    (run / "run.json").write_text(json.dumps(record))
    export_run(run, formats="star,csv", log=None)
    parts = run / "clus-center" / "particles"
    csv = pd.read_csv(parts / "all.csv")
    r5 = starfile.read(parts / "all_relion5.star")
    known = truth(pose=True)
    for i, row in csv.iterrows():
        tomo, centre, rm, com = known[row["uuid"]]
        shape, vs = TOMOGRAMS[tomo]
        position = pose_position(centre, com, rm, (SIDE,) * 3)
        np.testing.assert_allclose(row[["x", "y", "z"]].to_numpy(float), position, atol=1e-9)
        centred = r5.loc[i, ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
        np.testing.assert_allclose(centred.to_numpy(float), (position - np.array(shape) / 2) * vs, atol=1e-6)
        angles = r5.loc[i, ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float)
        np.testing.assert_allclose(relion_matrix(*angles), rm, atol=1e-5)


def test_sizes_from_the_tomogram_file_when_the_store_lacks_them(run, tmp_path):
    from autoencoder3d.formats.mrc import write_mrc

    shape, vs = TOMOGRAMS["TS_02"]
    write_mrc(tmp_path / "rec_TS_02.mrc", np.zeros(shape, np.float32), vs)
    table = {"TS_01": {"name": "TS_01", "path": None},  # nothing known: no RELION 5 rows, said
             "TS_02": {"name": "TS_02", "path": str(tmp_path / "rec_TS_02.mrc")},
             "TS_03": {"name": "TS_03", "path": None, "voxel_size": [TOMOGRAMS["TS_03"][1]] * 3, "shape": list(TOMOGRAMS["TS_03"][0])}}
    store_from_set(tmp_path / "h.zarr", dataset(table=table))
    record = json.loads((run / "run.json").read_text())
    record["inputs"]["data"] = str(tmp_path / "h.zarr")
    (run / "run.json").write_text(json.dumps(record))
    written = export_run(run, formats="star", log=None)
    assert any("1 tomograms without a known size or voxel size (e.g. TS_01)" in n for n in written["notes"])
    r5 = starfile.read(run / "clus-center" / "particles" / "all_relion5.star")
    assert sorted(set(r5["rlnTomoName"])) == ["TS_02", "TS_03"] and len(r5) == 2 * PER
    csv = export_run(run, formats="csv", log=None) and pd.read_csv(run / "clus-center" / "particles" / "all.csv")
    centres = csv[csv["tomogram"] == "TS_02"][["x", "y", "z"]].to_numpy()
    got = r5[r5["rlnTomoName"] == "TS_02"][["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
    np.testing.assert_allclose(got.to_numpy(), (centres - np.array(shape) / 2) * vs)
    r4 = starfile.read(run / "clus-center" / "particles" / "all.star")
    assert r4[r4["rlnTomoName"] == "TS_01"]["rlnPixelSize"].isna().all() and set(r4["rlnPixelSize"].dropna()) == {vs, 12.5}


def copick_project(folder, runs=tuple(TOMOGRAMS)):
    import copick
    from copick.models import PickableObject

    root = copick.new_config(str(folder / "copick.json"), str(folder / "overlay"),
                             pickable_objects=[PickableObject(name="ribosome", is_particle=True, label=1, radius=120.0)])
    for name in runs:
        root.new_run(name)
    return folder / "copick.json"


def read_picks(config, object_name, user="autoencoder3d"):
    """run -> (session, positions in A, transforms) of the object's picks by ``user``, read with copick."""
    import copick

    out = {}
    for run in copick.from_file(str(config)).runs:
        for picks in run.get_picks(object_name=object_name, user_id=user):
            positions, transforms = picks.numpy()
            out.setdefault(run.name, []).append((picks.session_id, positions, transforms))
    return out


def test_copick_round_trip(run, tmp_path):
    config = copick_project(tmp_path)
    assert cli(["export", str(run), "--format", "copick", "--copick-config", str(config), "--clusters", "0,2"]) == 0
    objects = {o["name"]: o for o in json.loads(config.read_text())["pickable_objects"]}
    assert set(objects) == {"ribosome", "cluster-000", "cluster-002"}
    assert len({o["label"] for o in objects.values()}) == 3 and objects["cluster-000"]["is_particle"]
    known = truth()
    compared = 0
    for cid in (0, 1, 2):
        picks = read_picks(config, f"cluster-{cid:03d}")
        if cid == 1:
            assert picks == {}
            continue
        for tomo in TOMOGRAMS:
            want = sorted(known[u][1].tolist() for u in members(run)[cid] if known[u][0] == tomo)
            if not want:
                assert tomo not in picks
                continue
            [(session, positions, transforms)] = picks[tomo]
            assert session == "1"
            np.testing.assert_allclose(sorted((positions / TOMOGRAMS[tomo][1]).tolist()), want, atol=1e-6)
            np.testing.assert_allclose(transforms, np.tile(np.eye(4), (len(want), 1, 1)))
            compared += len(want)
    assert compared == len(members(run)[0]) + len(members(run)[2]) > 0
    # a second export gets a new session; the first one's picks stay
    assert cli(["export", str(run), "--format", "copick", "--copick-config", str(config), "--clusters", "0"]) == 0
    sessions = {s for sets in read_picks(config, "cluster-000").values() for s, *_ in sets}
    assert sessions == {"1", "2"}


def test_copick_transforms_are_the_poses(run, tmp_path):
    record = json.loads((run / "run.json").read_text())
    record["inputs"]["data"] = record["inputs"]["data"].replace("plain", "posed")
    (run / "run.json").write_text(json.dumps(record))
    config = copick_project(tmp_path)
    export_run(run, formats="copick", copick_config=str(config), copick_user="me", copick_session="7", clusters="1", log=None)
    known = truth(pose=True)
    picks = read_picks(config, "cluster-001", user="me")
    for tomo, [(session, positions, transforms)] in picks.items():
        assert session == "7"
        vs = TOMOGRAMS[tomo][1]
        mine = [u for u in members(run)[1] if known[u][0] == tomo]
        want = {tuple(np.round(pose_position(known[u][1], known[u][3], known[u][2], (SIDE,) * 3) * vs, 6)): known[u][2] for u in mine}
        assert len(positions) == len(mine)
        for position, transform in zip(positions, transforms):
            rm = want[tuple(np.round(position, 6))]
            np.testing.assert_allclose(transform[:3, :3], rm, atol=1e-9)
            np.testing.assert_allclose(transform[:3, 3], 0)


def test_copick_errors_are_one_line_and_write_nothing(run, tmp_path, capsys):
    partial = copick_project(tmp_path / "p", runs=("TS_01", "TS_02"))
    before = partial.read_text()
    (tmp_path / "broken.json").write_text("{not json")
    for argv, words in (
        (["--copick-config", str(partial)], "no run named TS_03"),
        (["--copick-config", str(tmp_path / "none.json")], "none.json: copick config not found"),
        (["--copick-config", str(tmp_path / "broken.json")], "broken.json: not a readable copick config"),
        ([], "--copick-config"),
        (["--copick-config", str(partial), "--copick-user", "my_name"], "--copick-user"),
    ):
        assert cli(["export", str(run), "--format", "copick", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert partial.read_text() == before
    assert not list((tmp_path / "p" / "overlay").rglob("*.json"))
    full = copick_project(tmp_path / "f")
    assert cli(["export", str(run), "--format", "copick", "--copick-config", str(full), "--copick-session", "3"]) == 0
    capsys.readouterr()
    assert cli(["export", str(run), "--format", "copick", "--copick-config", str(full), "--copick-session", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already has picks in session 3" in err[0], err


def test_single_tomogram_run_writes_copick_picks_too(tmp_path):
    from tests.export.test_export import VS, make_run

    run, vs, kmeans, _ = make_run(tmp_path)
    config = copick_project(tmp_path, runs=("TS_07",))
    written = export_run(run, formats="copick", copick_config=str(config), log=None)
    assert len(written["copick"]) == 3
    for cid, uuids in kmeans.items():
        [(_, positions, _)] = read_picks(config, f"cluster-{cid:03d}")["TS_07"]
        np.testing.assert_allclose(sorted(positions.tolist()), sorted((np.array([vs[u]["center"] for u in uuids]) * VS).tolist()))


def test_built_from_relion_and_copick_exports_give_back_the_input_positions(project, tmp_path):
    """dataset build (RELION 5 star files; a copick project) -> cluster -> export: the particles come back where they were."""
    import copick

    from tests.data.test_dataset_build import build, make_copick_project, write_relion

    tomograms, particles = write_relion(project, project[0] / "Refine3D" / "job003")
    assert build(tmp_path / "r.zarr", "--relion", tomograms, particles) == 0
    run = cluster_run(tmp_path / "r.zarr", tmp_path / "runr")
    export_run(run, formats="star", log=None)  # the store's own tomograms.star gives RELION's centres
    given = starfile.read(particles, always_dict=True)["particles"]
    columns = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
    origins = given[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy()
    want = {(t, tuple(np.round(v, 4))) for t, v in zip(given["rlnTomoName"], given[columns].to_numpy() - origins)}
    out = starfile.read(run / "clus-center" / "particles" / "all_relion5.star")
    got = [(t, tuple(np.round(v, 4))) for t, v in zip(out["rlnTomoName"], out[columns].to_numpy())]
    assert len(got) == len(set(got)) == sum(len(c) - 1 for c in project[2].values()) and set(got) <= want  # border boxes dropped

    config = make_copick_project(project, tmp_path / "cp")
    assert build(tmp_path / "c.zarr", "--copick", config, "--object", "ribosome", "--user", "tester",
                 "--voxel-spacing", 20, "--tomo-type", "wbp") == 0
    run = cluster_run(tmp_path / "c.zarr", tmp_path / "runc")
    assert cli(["export", str(run), "--format", "copick"]) == 0  # into the project the store came from
    for copick_run in copick.from_file(str(config)).runs:
        source = copick_run.get_picks(object_name="ribosome", user_id="tester")[0].full_positions()
        written = [p.numpy()[0] for p in copick_run.get_picks(user_id="autoencoder3d", session_id="1")]
        back = np.vstack(written)
        assert 1 <= len(written) <= 3 and len(back) == len(source) - 1
        assert np.abs(back[:, None, :] - source[None, :, :]).max(-1).min(1).max() < 1e-6


def test_array_geometry_equals_the_per_particle_one():
    """The store export places particles with array versions of pose_position and relion_angles: same numbers."""
    from scipy.spatial.transform import Rotation

    from autoencoder3d.export.angles import relion_angles, relion_angles_many
    from autoencoder3d.export.geometry import pose_positions

    rng = np.random.default_rng(4)
    rms = Rotation.random(200, random_state=4).as_matrix()
    rms[:4] = [relion_matrix(30, 0, 40), relion_matrix(30, 180, 40), np.eye(3), relion_matrix(-170, 90, 170)]
    centres, coms = rng.uniform(10, 90, (200, 3)), rng.uniform(5, 10, (200, 3))
    for shape in ((16, 16, 16), (15, 15, 15), (16, 14, 12)):
        one = np.array([pose_position(c, m, r, shape) for c, m, r in zip(centres, coms, rms)])
        np.testing.assert_allclose(pose_positions(centres, coms, rms, shape), one, atol=1e-9)
    np.testing.assert_allclose(relion_angles_many(rms), [relion_angles(r) for r in rms], atol=1e-9)
    with pytest.raises(ValueError):
        relion_angles_many(np.diag([1.0, 1.0, -1.0])[None])


@pytest.mark.parametrize("damage,words", [
    ("name", "part 00001's tomogram name 'TS_\\udcff' holds a control character or a character UTF-8 cannot encode"),
    ("order", "volumes/.zarray: order 'F' is not C"),
])
def test_export_refuses_a_hostile_store_and_writes_nothing(run, trained, tmp_path, capsys, damage, words):
    """A tomogram name no UTF-8 file can hold was a UnicodeEncodeError; an "F"-order part exported transposed volumes."""
    from tests.data.test_dataset_trust import edit_json

    store = tmp_path / "hostile.zarr"
    shutil.copytree(trained / "plain.zarr", store)
    record = json.loads((run / "run.json").read_text())
    record["inputs"]["data"] = str(store)
    (run / "run.json").write_text(json.dumps(record))
    if damage == "name":
        edit_json(store / ".zattrs", lambda a: a["autoencoder3d"]["parts"][1].update(name="TS_\udcff"))
    else:
        edit_json(store / "parts" / "00000" / "volumes" / ".zarray", lambda z: z.update(order="F"))
    before = sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*"))
    capsys.readouterr()
    assert cli(["export", str(run), "--format", "star,csv,imod"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
