"""`autoencoder3d dataset build/convert/info`: one store from three simulated tomograms, from every input kind."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.data.store import open_store
from autoencoder3d.formats.mrc import read_tomogram
from autoencoder3d.formats.subvolume_pickle import load_subvolumes, save_subvolumes
from autoencoder3d.prep.pick import extract_boxes
from autoencoder3d.simulate.dataset import simulate_dataset

BOX = 16
SHAPE = (64, 64, 48)
VOXEL = 20.0
NAMES = ["TS_01", "TS_02", "TS_03"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Three simulated tomograms (rec_TS_0N.mrc, RELION's names) and each one's particle centres."""
    root = tmp_path_factory.mktemp("project")
    tomo_dir = root / "Tomograms" / "job001" / "tomograms"
    tomo_dir.mkdir(parents=True)
    centers = {}
    for seed, name in enumerate(NAMES):
        sim = root / f"sim{seed}"
        simulate_dataset(sim, shape=SHAPE, voxel_size=VOXEL, copies=3, box=BOX, example_2_copies=1, seed=seed,
                         example_2_classes=("ribosome",))
        os.replace(sim / "tomogram.rec", tomo_dir / f"rec_{name}.mrc")
        xyz = load_subvolumes(sim / "subvolumes_example_1.pickle").centers
        centers[name] = np.vstack([xyz, [[2, 30, 20]]])  # the last box leaves the tomogram: dropped
    return root, tomo_dir, centers


def tomogram_file(project, name):
    return str(project[1] / f"rec_{name}.mrc")


def expected_cut(project, name, centers):
    tomogram = read_tomogram(tomogram_file(project, name))
    subvolumes, _ = extract_boxes(tomogram, centers, BOX)
    tomogram.close()
    return subvolumes


def write_table(project, path, rows=None):
    root, tomo_dir, centers = project
    lines = ["tomogram,x,y,z"]
    for name in NAMES:
        rel = os.path.relpath(tomogram_file(project, name), os.path.dirname(path))
        lines += [f"{rel},{x:g},{y:g},{z:g}" for x, y, z in centers[name]]
    with open(path, "w") as handle:
        handle.write("\n".join(rows if rows is not None else lines) + "\n")
    return str(path)


def parts(store):
    return sorted(p for p in os.listdir(os.path.join(store, "parts")) if not p.startswith("."))


def build(out, *args):
    return main(["dataset", "build", str(out), *map(str, args), "--box", str(BOX), "-q"])


def assert_rows_right(store, project, centers):
    """Per tomogram: the right name on each row, the centres given, the volumes extract cuts."""
    subvolumes = open_store(store)
    assert list(dict.fromkeys(subvolumes.tomograms)) == NAMES
    for name in NAMES:
        rows = np.flatnonzero(subvolumes.tomograms == name)
        want = expected_cut(project, name, centers[name])
        assert len(rows) == len(want) == len(centers[name]) - 1
        np.testing.assert_allclose(subvolumes.centers[rows], centers[name][:-1], atol=1e-6)
        np.testing.assert_array_equal(subvolumes.volumes[rows], want.volumes)
    assert len(set(subvolumes.uuids)) == len(subvolumes)
    return subvolumes


def test_table_build(project, tmp_path, capsys):
    table = write_table(project, tmp_path / "picks.csv")
    assert build(tmp_path / "ds.zarr", "--table", table) == 0
    subvolumes = assert_rows_right(tmp_path / "ds.zarr", project, project[2])
    assert subvolumes.uuids[:2] == ["TS_01_0", "TS_01_1"]
    assert np.all(np.isnan(subvolumes.rotations))
    capsys.readouterr()
    assert main(["dataset", "info", str(tmp_path / "ds.zarr")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["TS_01", "18", "20x20x20 A"] and lines[-1].startswith("total: 54 subvolumes")


def test_pose_build_equals_pipeline_and_float16(project, tmp_path):
    from autoencoder3d.workflows.train import prepare_subvolumes

    table = write_table(project, tmp_path / "picks.csv")
    assert build(tmp_path / "pose.zarr", "--table", table, "--pose", "--workers", "2", "--dtype", "float16", "--block", "5") == 0
    subvolumes = open_store(tmp_path / "pose.zarr")
    assert subvolumes.manifest["dtype"] == "float16" and subvolumes.manifest["pose_normalized"]
    for name in NAMES[:2]:
        pickle = tmp_path / f"{name}.pickle"
        save_subvolumes(pickle, expected_cut(project, name, project[2][name]))
        want, _ = prepare_subvolumes(str(pickle), tomogram_file(project, name), True, workers=1, progress=False)
        rows = np.flatnonzero(subvolumes.tomograms == name)
        np.testing.assert_array_equal(subvolumes.volumes[rows], want.volumes.astype(np.float16).astype(np.float32))
        rotations = np.array([want.extras[u]["rotation"] for u in want.uuids])
        np.testing.assert_allclose(subvolumes.rotations[rows], rotations, atol=1e-12)


def write_relion(project, folder):
    """RELION 5 star files: tilt-series pixels of 10 A, tomograms binned by 2, centred Angstrom, refinement shifts."""
    root, tomo_dir, centers = project
    tomograms = pd.DataFrame({
        "rlnTomoName": NAMES, "rlnTomoTiltSeriesPixelSize": 10.0, "rlnTomoTomogramBinning": 2.0,
        "rlnTomoSizeX": SHAPE[0] * 2, "rlnTomoSizeY": SHAPE[1] * 2, "rlnTomoSizeZ": SHAPE[2] * 2,
        "rlnTomoReconstructedTomogram": [f"Tomograms/job001/tomograms/rec_{n}.mrc" for n in NAMES],
    })
    rows = []
    rng = np.random.default_rng(0)
    for name in NAMES:
        for i, c in enumerate(centers[name]):
            shift = rng.normal(scale=15.0, size=3)  # RELION: the particle is at coordinate - origin
            angst = (c * 2 - np.array(SHAPE) * 2 / 2) * 10.0 + shift
            rows.append({"rlnTomoName": name, "rlnTomoParticleName": f"{name}/{i + 1}",
                         "rlnCenteredCoordinateXAngst": angst[0], "rlnCenteredCoordinateYAngst": angst[1],
                         "rlnCenteredCoordinateZAngst": angst[2], "rlnOriginXAngst": shift[0],
                         "rlnOriginYAngst": shift[1], "rlnOriginZAngst": shift[2], "rlnOpticsGroup": 1})
    particles = pd.DataFrame(rows[::-1])  # particles of the last tomogram first
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnTomoTiltSeriesPixelSize": [10.0]})
    import starfile

    folder.mkdir(parents=True, exist_ok=True)
    starfile.write({"global": tomograms}, folder / "tomograms.star", overwrite=True)
    starfile.write({"optics": optics, "particles": particles}, folder / "particles.star", overwrite=True)
    return folder / "tomograms.star", folder / "particles.star"


def test_relion5_build(project, tmp_path):
    from autoencoder3d.formats.coords import read_coordinates

    tomograms, particles = write_relion(project, project[0] / "Refine3D" / "job002")
    assert build(tmp_path / "relion.zarr", "--relion", tomograms, particles) == 0
    subvolumes = open_store(tmp_path / "relion.zarr")
    assert list(dict.fromkeys(subvolumes.tomograms)) == NAMES[::-1]
    for name in NAMES:
        rows = np.flatnonzero(subvolumes.tomograms == name)
        want = project[2][name][:-1][::-1]  # particles.star lists them backwards
        np.testing.assert_allclose(subvolumes.centers[rows], want, atol=1e-6)
        np.testing.assert_array_equal(subvolumes.volumes[rows], expected_cut(project, name, want).volumes)
        same = read_coordinates(str(particles), SHAPE, (VOXEL,) * 3, tomogram=tomogram_file(project, name), tomograms_star=str(tomograms))
        np.testing.assert_allclose(subvolumes.centers[rows], same[1:], atol=1e-9)  # what `extract --tomograms` reads
    assert subvolumes.uuids[0] == f"{NAMES[-1]}/{len(project[2][NAMES[-1]]) - 1}"


def make_copick_project(project, folder):
    """A local copick project: three runs, 'wbp' OME-zarr tomograms at 20 A, picks of 'ribosome' by 'tester'."""
    import copick
    from copick.models import PickableObject

    root = copick.new_config(str(folder / "copick.json"), str(folder / "overlay"), pickable_objects=[
        PickableObject(name="ribosome", is_particle=True, label=1, radius=120.0)])
    rng = np.random.default_rng(1)
    for name in NAMES:
        run = root.new_run(name)
        tomogram = run.new_voxel_spacing(VOXEL).new_tomogram("wbp")
        data = read_tomogram(tomogram_file(project, name))
        tomogram.from_numpy(np.ascontiguousarray(np.asarray(data.data).transpose(2, 1, 0)), levels=1)
        data.close()
        angstrom = project[2][name] * VOXEL
        shift = rng.normal(scale=5.0, size=angstrom.shape)  # a refined shift in each transform
        transforms = np.tile(np.eye(4), (len(angstrom), 1, 1))
        transforms[:, :3, 3] = shift
        run.new_picks("ribosome", session_id="0", user_id="tester").from_numpy(angstrom - shift, transforms)
    return folder / "copick.json"


def test_copick_build(project, tmp_path):
    config = make_copick_project(project, tmp_path)
    assert build(tmp_path / "copick.zarr", "--copick", config, "--object", "ribosome", "--user", "tester",
                 "--voxel-spacing", VOXEL, "--tomo-type", "wbp") == 0
    subvolumes = assert_rows_right(tmp_path / "copick.zarr", project, project[2])
    assert subvolumes.tomogram_table["TS_02"]["copick"]["tomo_type"] == "wbp"
    assert main(["dataset", "build", str(tmp_path / "x.zarr"), "--copick", str(config), "--object", "membrane",
                 "--user", "tester", "--voxel-spacing", "20", "--tomo-type", "wbp"]) == 2
    assert main(["dataset", "build", str(tmp_path / "x.zarr"), "--copick", str(config), "--object", "ribosome",
                 "--user", "tester", "--voxel-spacing", "20", "--tomo-type", "denoised"]) == 2
    assert not (tmp_path / "x.zarr").exists()


def test_pick_build(project, tmp_path):
    from autoencoder3d.prep.pick import dog_pick

    listing = tmp_path / "tomograms.txt"
    listing.write_text("\n".join(tomogram_file(project, n) for n in NAMES) + "\n")
    assert build(tmp_path / "picked.zarr", "--pick-list", listing, "--sigma1", "2", "--max-particles", "12") == 0
    subvolumes = open_store(tmp_path / "picked.zarr")
    for name in NAMES:
        tomogram = read_tomogram(tomogram_file(project, name))
        picks = dog_pick(tomogram.data, 2.0, box=BOX, max_particles=12)
        tomogram.close()
        rows = np.flatnonzero(subvolumes.tomograms == name)
        assert len(rows) == len(picks.centers) > 0
        np.testing.assert_array_equal(subvolumes.centers[rows], picks.centers)
        np.testing.assert_array_equal(subvolumes.volumes[rows], expected_cut(project, name, picks.centers).volumes)


def test_convert_round_trip(project, tmp_path):
    sim = project[0] / "sim0" / "subvolumes_example_1.pickle"
    pickle = load_subvolumes(sim)
    assert main(["dataset", "convert", str(sim), str(tmp_path / "c.zarr"), "--tomogram", tomogram_file(project, "TS_01"), "-q"]) == 0
    store = open_store(tmp_path / "c.zarr")
    assert store.uuids == pickle.uuids
    assert store.volumes[np.arange(len(store))].tobytes() == pickle.volumes.tobytes()
    np.testing.assert_array_equal(store.centers, pickle.centers)
    assert store.tomogram_table["TS_01"]["voxel_size"] == [VOXEL] * 3
    assert main(["dataset", "convert", str(sim), str(tmp_path / "h.zarr"), "--dtype", "float16", "-q"]) == 0
    half = open_store(tmp_path / "h.zarr")
    np.testing.assert_array_equal(half.volumes[:], pickle.volumes.astype(np.float16).astype(np.float32))


def test_interrupted_build_resumes_to_the_same_store(project, tmp_path, monkeypatch):
    import autoencoder3d.data.store.build as build_module

    table = write_table(project, tmp_path / "picks.csv")
    assert build(tmp_path / "whole.zarr", "--table", table) == 0
    original, calls = build_module.extract_part, []

    def dies_on_the_second(out, index, *args, **kwargs):
        calls.append(index)
        if index == 1:
            os.makedirs(os.path.join(out, "parts", "00001.tmp-99999", "volumes"))  # what a killed worker leaves
            open(os.path.join(out, "parts", "00001.tmp-99999", "volumes", "0.0.0.0"), "wb").close()
            raise KeyboardInterrupt
        return original(out, index, *args, **kwargs)

    monkeypatch.setattr(build_module, "extract_part", dies_on_the_second)
    assert build(tmp_path / "cut.zarr", "--table", table) == 130
    assert parts(tmp_path / "cut.zarr") == ["00000", "00001.tmp-99999"]
    assert main(["dataset", "info", str(tmp_path / "cut.zarr")]) == 2  # unfinished: refused
    monkeypatch.setattr(build_module, "extract_part", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    calls.clear()
    assert build(tmp_path / "cut.zarr", "--table", table) == 0
    assert calls == [1, 2]  # the finished part was kept
    whole, resumed = open_store(tmp_path / "whole.zarr"), open_store(tmp_path / "cut.zarr")
    assert resumed.uuids == whole.uuids and list(resumed.tomograms) == list(whole.tomograms)
    assert resumed.volumes[:].tobytes() == whole.volumes[:].tobytes()
    np.testing.assert_array_equal(resumed.centers, whole.centers)
    assert parts(tmp_path / "cut.zarr") == ["00000", "00001", "00002"]


def test_rerun_with_other_settings_is_refused(project, tmp_path, capsys):
    table = write_table(project, tmp_path / "picks.csv")
    assert build(tmp_path / "ds.zarr", "--table", table) == 0
    before = json.loads((tmp_path / "ds.zarr" / ".zattrs").read_text())
    capsys.readouterr()
    assert main(["dataset", "build", str(tmp_path / "ds.zarr"), "--table", table, "--box", "8"]) == 2
    assert "other settings" in capsys.readouterr().err
    other = write_table(project, tmp_path / "other.csv", rows=["tomogram,x,y,z", f"{tomogram_file(project, 'TS_01')},30,30,20"])
    assert build(tmp_path / "ds.zarr", "--table", other) == 2
    err = capsys.readouterr().err
    assert "other inputs" in err and len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "ds.zarr" / ".zattrs").read_text()) == before


@pytest.mark.parametrize("rows,message", [
    (["tomogram,x,y,z", "missing.mrc,1,2,3"], "missing.mrc not found"),
    (["tomogram,x,y,z", "a_folder.mrc,1,2,3"], "a_folder.mrc is a folder, not a file"),
    (["tomogram,x,y,z"], "no particles"),
    ([], "empty"),
    (["tomo,x,y,z", "a.mrc,1,2,3"], "no column tomogram"),
    (["tomogram,x,y,z", "{tomo},1,two,3"], "line 2: x, y, z are not numbers"),
    (["tomogram,x,y,z", "{tomo},1,2"], "line 2 has 3 columns"),
])
def test_bad_tables_are_one_line(project, tmp_path, capsys, rows, message):
    rows = [r.format(tomo=tomogram_file(project, "TS_01")) for r in rows]
    table = tmp_path / "bad.csv"
    (tmp_path / "a_folder.mrc").mkdir()
    table.write_text("\n".join(rows) + ("\n" if rows else ""))
    assert build(tmp_path / "bad.zarr", "--table", table) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(table) in err and message in err, err
    assert not (tmp_path / "bad.zarr").exists()


def test_a_broken_tomogram_stops_the_build_before_it_starts(project, tmp_path, capsys):
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(open(tomogram_file(project, "TS_02"), "rb").read()[:3000])
    table = write_table(project, tmp_path / "t.csv")
    text = open(table).read().replace(os.path.relpath(tomogram_file(project, "TS_02"), tmp_path), "broken.mrc")
    open(table, "w").write(text)
    assert build(tmp_path / "b.zarr", "--table", table, "--workers", "2") == 2
    assert "broken.mrc: not a readable MRC file" in capsys.readouterr().err
    assert not (tmp_path / "b.zarr").exists()


def test_unknown_names_are_one_line(project, tmp_path, capsys):
    table = write_table(project, tmp_path / "names.csv", rows=["tomogram,x,y,z", "TS_09,30,30,20"])
    assert build(tmp_path / "bad.zarr", "--table", table, "--tomogram-dir", project[1]) == 2
    assert "tomogram 'TS_09' not found in" in capsys.readouterr().err
    names = write_table(project, tmp_path / "ok.csv", rows=["tomogram,x,y,z", "TS_02,30,30,20"])
    assert build(tmp_path / "ok.zarr", "--table", names, "--tomogram-dir", project[1]) == 0
    assert open_store(tmp_path / "ok.zarr").tomograms[0] == "TS_02"
    tomograms, particles = write_relion(project, tmp_path / "relion")
    import starfile

    table = starfile.read(tomograms)
    starfile.write({"global": table.iloc[:2]}, tmp_path / "relion" / "two.star", overwrite=True)
    assert build(tmp_path / "bad.zarr", "--relion", tmp_path / "relion" / "two.star", particles) == 2
    err = capsys.readouterr().err
    assert "tomogram TS_03 is not in" in err and str(particles) in err
    assert build(tmp_path / "bad.zarr", "--relion", tomograms, particles) == 2  # paths relative to another project
    assert "file Tomograms/job001/tomograms/rec_TS_03.mrc not found" in capsys.readouterr().err
    (tmp_path / "relion" / "Tomograms" / "job001" / "tomograms" / "rec_TS_03.mrc").mkdir(parents=True)
    assert build(tmp_path / "bad.zarr", "--relion", tomograms, particles) == 2
    assert "rec_TS_03.mrc is a folder, not a file; give the tomogram's MRC file" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "relion" / "Tomograms")
    assert build(tmp_path / "dir.zarr", "--relion", tomograms, particles, "--tomogram-dir", project[1]) == 0
    assert not (tmp_path / "bad.zarr").exists()


def test_copick_tomograms_read_across_chunks(tmp_path):
    import zarr

    from autoencoder3d.data.sources.copick import ZarrXYZ

    zyx = np.random.default_rng(2).normal(size=(23, 31, 37)).astype(np.float32)
    array = zarr.open(str(tmp_path / "t.zarr"), mode="w", shape=zyx.shape, chunks=(10, 8, 16), dtype="f4")
    array[:] = zyx
    xyz = zyx.transpose(2, 1, 0)
    tomogram = ZarrXYZ(array, cache_bytes=3 * 10 * 8 * 16 * 4)  # three chunks cached: most reads decode again
    assert tomogram.shape == (37, 31, 23)
    for region in [(slice(0, 37), slice(0, 31), slice(0, 23)), (slice(5, 30), slice(7, 9), slice(9, 21)),
                   (slice(36, 40), slice(-3, None), slice(0, 1)), (slice(None), slice(None), slice(4, 8))]:
        np.testing.assert_array_equal(tomogram[region], xyz[region])


def test_killed_build_resumes_to_the_same_store(project, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    table = write_table(project, tmp_path / "picks.csv")
    args = ["--table", table, "--pose", "--block", "1"]
    out = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "autoencoder3d", "dataset", "build", str(out), *args, "--box", str(BOX), "-q"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    def writing_part_1():
        return any(p.startswith("00001.tmp-") for p in os.listdir(out / "parts")) if (out / "parts").exists() else False

    while not writing_part_1() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # as a node failure would: nothing gets to clean up
    process.wait()
    assert parts(out)[0] == "00000" and parts(out)[1].startswith("00001.tmp-")
    assert build(out, *args) == 0
    assert build(tmp_path / "whole.zarr", *args) == 0
    whole, resumed = open_store(tmp_path / "whole.zarr"), open_store(out)
    assert resumed.uuids == whole.uuids and resumed.volumes[:].tobytes() == whole.volumes[:].tobytes()
    np.testing.assert_array_equal(resumed.rotations, whole.rotations)
    assert parts(out) == ["00000", "00001", "00002"]


def test_rerun_from_another_folder_is_the_same_build(project, tmp_path, monkeypatch):
    write_table(project, tmp_path / "picks.csv")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert build("ds.zarr", "--table", "picks.csv") == 0
    monkeypatch.chdir(tmp_path / "sub")
    assert build("../ds.zarr", "--table", "../picks.csv") == 0


def test_partial_fill_keeps_boxes_that_leave_the_tomogram(project, tmp_path):
    table = write_table(project, tmp_path / "picks.csv")
    assert build(tmp_path / "fill.zarr", "--table", table, "--partial", "fill") == 0
    subvolumes = open_store(tmp_path / "fill.zarr")
    for name in NAMES:
        rows = np.flatnonzero(subvolumes.tomograms == name)
        tomogram = read_tomogram(tomogram_file(project, name))
        want, _ = extract_boxes(tomogram, project[2][name], BOX, partial="fill")
        tomogram.close()
        assert len(rows) == len(project[2][name])
        np.testing.assert_array_equal(subvolumes.volumes[rows], want.volumes)
