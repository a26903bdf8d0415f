"""Writers of a store: one at a time, no silent replacement, stale parts cut again, workers that stop with the build."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.data.store import open_store
from autoencoder3d.data.store.store import store_digest
from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.util.lock import RunFolderLock
from tests.data.test_dataset_build import BOX, NAMES, expected_cut, parts, project, write_table  # noqa: F401 (project: a fixture)


def cli(*args):
    return [sys.executable, "-m", "autoencoder3d", *map(str, args)]


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def copied_project(project, folder):  # noqa: F811
    """The three tomograms copied into ``folder`` (a test may change them), and a table of their particles."""
    folder.mkdir()
    for name in NAMES:
        shutil.copy(project[1] / f"rec_{name}.mrc", folder / f"rec_{name}.mrc")
    lines = ["tomogram,x,y,z"] + [f"rec_{name}.mrc,{x:g},{y:g},{z:g}" for name in NAMES for x, y, z in project[2][name]]
    (folder / "picks.csv").write_text("\n".join(lines) + "\n")
    return folder / "picks.csv"


def test_a_second_build_or_convert_is_refused_while_the_first_writes(project, tmp_path):  # noqa: F811
    table = write_table(project, tmp_path / "picks.csv")
    out = tmp_path / "ds.zarr"
    assert main(["dataset", "build", str(out), "--table", table, "--box", str(BOX), "-q"]) == 0
    before = store_digest(out)
    pickle = project[0] / "sim0" / "subvolumes_example_1.pickle"
    with RunFolderLock(out):  # the first writer, still running
        for args in (["dataset", "build", out, "--table", table, "--box", BOX], ["dataset", "convert", pickle, out, "--overwrite"]):
            done = subprocess.run(cli(*args), capture_output=True, text=True)
            assert done.returncode == 2
            assert "another autoencoder3d process (pid" in one_line(done.stderr) and "is writing this store" in done.stderr
        assert os.path.exists(out / ".autoencoder3d.lock")
        assert store_digest(out) == before  # the lock file is no part, and the store still reads as finished
        assert len(open_store(out)) == 54
    assert not os.path.exists(out / ".autoencoder3d.lock")
    assert parts(out) == ["00000", "00001", "00002"]
    with RunFolderLock(tmp_path):  # a run folder written around a store: its lock is not the store's
        assert main(["dataset", "build", str(tmp_path / "inner.zarr"), "--table", table, "--box", str(BOX), "-q"]) == 0


def test_a_build_into_a_folder_that_is_no_store_leaves_it_alone(project, tmp_path, capsys):  # noqa: F811
    table = write_table(project, tmp_path / "picks.csv")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["dataset", "build", str(tmp_path / "mine"), "--table", table, "--box", str(BOX), "-q"]) == 2
    assert "exists and is not a subvolume store" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


@pytest.mark.parametrize("link", ["parts", "parts/00001"])
def test_a_rerun_deletes_nothing_through_a_symlink(project, tmp_path, capsys, link):  # noqa: F811
    table = write_table(project, tmp_path / "picks.csv")
    out = tmp_path / "ds.zarr"
    assert main(["dataset", "build", str(out), "--table", table, "--box", str(BOX), "-q"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(out / link, elsewhere / "moved")
    os.symlink(elsewhere / "moved", out / link)
    victim = elsewhere / "moved" / ("00002.tmp-1" if link == "parts" else "volumes")
    victim.mkdir(exist_ok=True)
    (victim / "keep").write_text("not the store's")
    capsys.readouterr()
    assert main(["dataset", "build", str(out), "--table", table, "--box", str(BOX), "-q"]) == 2
    assert f"{link}: a symbolic link inside the store" in one_line(capsys.readouterr().err)
    assert (victim / "keep").read_text() == "not the store's"


def test_a_resumed_build_cuts_again_the_parts_whose_tomogram_changed(project, tmp_path):  # noqa: F811
    table = copied_project(project, tmp_path / "project")
    out = tmp_path / "ds.zarr"
    assert main(["dataset", "build", str(out), "--table", str(table), "--box", str(BOX), "-q"]) == 0
    kept = os.stat(out / "parts" / "00000" / "volumes" / "0.0.0.0").st_ino
    changed = tmp_path / "project" / "rec_TS_02.mrc"
    shutil.copy(project[1] / "rec_TS_03.mrc", changed)  # same size and header: another tomogram
    assert main(["dataset", "build", str(out), "--table", str(table), "--box", str(BOX), "-q"]) == 0
    subvolumes = open_store(out)
    rows = np.flatnonzero(subvolumes.tomograms == "TS_02")
    want = expected_cut((None, tmp_path / "project"), "TS_02", project[2]["TS_02"][:-1])
    np.testing.assert_array_equal(subvolumes.volumes[rows], want.volumes)
    assert os.stat(out / "parts" / "00000" / "volumes" / "0.0.0.0").st_ino == kept  # unchanged: not cut again


def test_a_part_cut_from_other_rows_is_cut_again(project, tmp_path):  # noqa: F811
    """As a build racing another into the same store would leave it: one part from the other's particles."""
    table = write_table(project, tmp_path / "picks.csv")
    assert main(["dataset", "build", str(tmp_path / "a.zarr"), "--table", table, "--box", str(BOX), "-q"]) == 0
    shifted = {name: c + (1 if name == "TS_02" else 0) for name, c in project[2].items()}
    other = write_table((project[0], project[1], shifted), tmp_path / "other.csv")
    assert main(["dataset", "build", str(tmp_path / "b.zarr"), "--table", other, "--box", str(BOX), "-q"]) == 0
    shutil.rmtree(tmp_path / "a.zarr" / "parts" / "00001")
    shutil.copytree(tmp_path / "b.zarr" / "parts" / "00001", tmp_path / "a.zarr" / "parts" / "00001")
    assert main(["dataset", "build", str(tmp_path / "a.zarr"), "--table", table, "--box", str(BOX), "-q"]) == 0
    subvolumes = open_store(tmp_path / "a.zarr")
    rows = np.flatnonzero(subvolumes.tomograms == "TS_02")
    np.testing.assert_allclose(subvolumes.centers[rows], project[2]["TS_02"][:-1])


def test_convert_never_replaces_silently(project, tmp_path, capsys):  # noqa: F811
    pickle = project[0] / "sim0" / "subvolumes_example_1.pickle"
    other = project[0] / "sim1" / "subvolumes_example_1.pickle"
    out = tmp_path / "c.zarr"
    assert main(["dataset", "convert", str(pickle), str(out), "-q"]) == 0
    before = store_digest(out)
    assert main(["dataset", "convert", str(other), str(out), "-q"]) == 2
    assert "exists; choose a new name, or pass --overwrite" in one_line(capsys.readouterr().err)
    assert store_digest(out) == before
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "keep.txt").write_text("keep")
    assert main(["dataset", "convert", str(pickle), str(tmp_path / "plain"), "--overwrite", "-q"]) == 2
    assert "is not a subvolume store; --overwrite replaces only a store" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path / "plain") == ["keep.txt"]
    os.makedirs(tmp_path / ".c.zarr.abcd1234.tmp" / "parts")  # what a killed convert --overwrite leaves
    assert main(["dataset", "convert", str(other), str(out), "--overwrite", "-q"]) == 0
    assert open_store(out).uuids == load_subvolumes(other).uuids
    assert sorted(os.listdir(tmp_path)) == ["c.zarr", "plain"]
    assert sorted(os.listdir(out)) == [".zattrs", ".zgroup", "parts"]


def slow_build(project, tmp_path):  # noqa: F811
    """A build with two workers that takes a while: each tomogram's particles ten times over, pose-normalized one by one."""
    lines = ["tomogram,x,y,z"]
    for name in NAMES:
        path = project[1] / f"rec_{name}.mrc"
        lines += [f"{path},{x:g},{y:g},{z:g}" for x, y, z in np.tile(project[2][name][:-1], (10, 1))]
    (tmp_path / "many.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "slow.zarr"
    command = cli("dataset", "build", out, "--table", tmp_path / "many.csv", "--box", BOX, "--pose", "--block", "1",
                  "--workers", "2", "-q")
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(writing(out)) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert len(writing(out)) == 2, "both workers should be cutting a tomogram"
    return process, out, [int(name.split(".tmp-")[1]) for name in writing(out)]


def writing(out):
    folder = out / "parts"
    return [p for p in os.listdir(folder) if ".tmp-" in p] if folder.is_dir() else []


def alive(pid):
    """Whether ``pid`` runs (a zombie waiting for a parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids, seconds=60):
    """The ``pids`` still running after up to ``seconds`` (killed then, so that a failing test leaves none behind)."""
    deadline = time.time() + seconds
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_sigterm_stops_the_workers_at_once(project, tmp_path):  # noqa: F811
    process, out, workers = slow_build(project, tmp_path)
    os.kill(process.pid, signal.SIGTERM)  # the parent only, as `kill PID` or a scheduler would
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "terminated (SIGTERM)" in one_line(err) and "rerun to resume" in err
    assert wait_until_gone(workers) == []
    assert len([p for p in parts(out) if ".tmp-" not in p]) < 3  # not every tomogram was finished first
    assert writing(out) == []  # the terminated workers' unfinished parts are removed


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_workers_die_with_a_killed_build(project, tmp_path):  # noqa: F811
    process, out, workers = slow_build(project, tmp_path)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert wait_until_gone(workers) == []


@pytest.mark.parametrize("job", ["convert", "convert --overwrite", "build"])
def test_an_empty_out_is_refused_and_the_current_folder_kept(project, tmp_path, monkeypatch, capsys, job):  # noqa: F811
    """OUT '' is the current folder: convert replaced it whole (deleting the user's files), build made it a store."""
    from tests.conftest import make_subvolume_dict

    here = tmp_path / "here"
    here.mkdir()
    (here / "mine.txt").write_text("keep me\n")
    import pickle

    with open(tmp_path / "d.pickle", "wb") as handle:
        pickle.dump(make_subvolume_dict(n=4, edge=8), handle, protocol=4)
    table = write_table(project, tmp_path / "picks.csv")
    monkeypatch.chdir(here)
    argv = {"convert": ["dataset", "convert", str(tmp_path / "d.pickle"), ""],
            "convert --overwrite": ["dataset", "convert", str(tmp_path / "d.pickle"), "", "--overwrite"],
            "build": ["dataset", "build", "", "--table", str(table), "--box", str(BOX)]}[job]
    capsys.readouterr()
    assert main(argv) == 2
    assert "OUT '': an empty name is the current folder" in one_line(capsys.readouterr().err)
    assert sorted(os.listdir(here)) == ["mine.txt"]


def test_no_folder_replaces_the_current_one(tmp_path, monkeypatch):
    from autoencoder3d.errors import InputError
    from autoencoder3d.util.atomic import atomic_directory

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("keep me\n")
    for path in ("", ".", str(tmp_path.parent)):
        with pytest.raises(InputError, match="the current folder or one above it"):
            with atomic_directory(path):
                pass
    assert os.listdir(tmp_path) == ["mine.txt"]


@pytest.mark.parametrize("name", ["", ".", "sub/", "sub"])
def test_an_output_file_name_that_is_empty_or_a_folder_is_one_line(tmp_path, monkeypatch, name):
    """'pick TOMO \"\"' (also pose, extract) ended in a FileNotFoundError traceback after writing beside the current folder."""
    from autoencoder3d.errors import InputError
    from autoencoder3d.util.atomic import atomic_open

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="not a file name to write"):
        with atomic_open(name) as handle:
            handle.write(b"x")
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []
