"""A rerun into a finished run folder never loses exported particle lists (or other files) without a word."""

import filecmp

import pytest

from autoencoder3d.formats.subvolume_pickle import load_pickle
from tests.runs.test_runfolder import TRAIN, finished, run_cli, run_copy  # noqa: F401 - a finished 1-epoch run, k=3, and copies

pytestmark = pytest.mark.slow  # trains a network or runs whole commands


@pytest.fixture
def exported(run_copy):  # noqa: F811 - the fixture
    data, run = run_copy
    assert run_cli("export", run, "--format", "star,csv") == 0
    (run / "clus-center" / "selection.json").write_text('{"1": [0]}')  # the report's download, saved here by the user
    return data, run


def test_a_rerun_with_the_same_clustering_keeps_the_exports(exported, capsys, tmp_path):
    data, run = exported
    before = tmp_path / "before"
    (run / "clus-center" / "particles").rename(before)
    (run / "clus-center" / "particles").mkdir()
    for path in before.iterdir():
        (run / "clus-center" / "particles" / path.name).write_bytes(path.read_bytes())
    capsys.readouterr()
    assert run_cli("train", data, "None", "False", 3, "--out", run, *TRAIN[:-1]) == 0  # same command, same clusters
    err = capsys.readouterr().err
    assert "kept particles/ (" in err and "could not" not in err  # train's own report and MRC export ran under its lock
    particles = run / "clus-center" / "particles"
    names = sorted(p.name for p in before.iterdir())
    assert names and sorted(p.name for p in particles.iterdir()) == names
    assert all(filecmp.cmp(before / n, particles / n, shallow=False) for n in names)
    assert (run / "clus-center" / "selection.json").read_text() == '{"1": [0]}'
    assert not (run / "previous").exists()


def test_a_rerun_with_another_clustering_moves_the_old_one_aside_with_one_warning(exported, capsys):
    data, run = exported
    old_members = load_pickle(run / "clus-center" / "kmeans.pickle")
    old_list = (run / "clus-center" / "particles" / "all.star").read_bytes()
    capsys.readouterr()
    assert run_cli("train", data, "None", "False", 2, "--out", run, *TRAIN) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "previous clustering" in line]
    assert len(warnings) == 1 and "particles/ (" in warnings[0] and "selection.json" in warnings[0]
    (moved,) = (run / "previous").iterdir()
    assert moved.name.startswith("clus-center-k3-") and moved.name in warnings[0]
    # the old lists, with the clustering they describe
    assert (moved / "particles" / "all.star").read_bytes() == old_list
    assert load_pickle(moved / "kmeans.pickle") == old_members and (moved / "selection.json").is_file()
    # the new clus-center holds the new clustering only
    assert len(load_pickle(run / "clus-center" / "kmeans.pickle")) == 2
    assert not (run / "clus-center" / "particles").exists() and not (run / "clus-center" / "selection.json").exists()
