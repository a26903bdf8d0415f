"""A whole run with its comparisons: the PCA baseline and duplicates in run.json, and `cluster --merge`."""

import os
import pickle

import numpy as np
import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.runs.folder import BASELINE_MEMBERS, RunFolder

pytestmark = pytest.mark.slow  # trains a network and runs whole commands

FAST = ["--epochs", "1", "--n-init", "3", "--seed", "3", "-q"]


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import make_subvolume_dict

    root = tmp_path_factory.mktemp("compare")
    data = root / "d.pickle"
    pickle.dump(make_subvolume_dict(n=48, classes=4), open(data, "wb"), protocol=4)
    assert run_cli("train", data, "None", "False", 5, "--out", root / "run", *FAST) == 0
    return data, root / "run"


def test_every_run_records_the_baseline_and_duplicates(trained):
    _, run = trained
    record = RunFolder(run).record()
    base = record["baseline"]
    assert base["k"] == 5 and base["seed"] == 3 and -1 <= base["ari"] <= 1
    assert np.array(base["contingency"]["counts"]).sum() == 48
    assert set(base["stability"]) >= {"autoencoder", "baseline"}
    members = pickle.load(open(RunFolder(run).clus_file(BASELINE_MEMBERS), "rb"))
    assert sorted(u for v in members.values() for u in v) == sorted(u for v in RunFolder(run).members().values() for u in v)
    assert record["duplicates"]["threshold"] > 0 and isinstance(record["duplicates"]["pairs"], list)
    assert "baseline_s" in record["timings"] and "duplicates_s" in record["timings"]


def test_cluster_merge_then_export_treat_the_group_as_one(trained, tmp_path):
    data, run = trained
    before = RunFolder(run).members()
    assert run_cli("cluster", data, 5, "--out", run, "--n-init", "3", "--seed", "3", "--merge", "4,1", "--merge", "2,3",
                   "--no-baseline", "-q") == 0
    folder = RunFolder(run)
    after = folder.members()
    assert sorted(after) == [0, 1, 2]
    assert sorted(after[1]) == sorted(before[1] + before[4]) and sorted(after[2]) == sorted(before[2] + before[3])
    assert after[0] == before[0]
    assert sorted(folder.centers()) == [0, 1, 2]
    assert sorted(os.listdir(folder.clus_file("mrc"))) == ["000.mrc", "001.mrc", "002.mrc"]
    assert sorted(n.split("--")[0] for n in os.listdir(folder.clus_file("fig"))) == ["000", "001", "002"]
    record = folder.record()
    assert record["merge"]["groups"] == [[1, 4], [2, 3]] and "baseline" not in record
    assert record["cluster_sizes"] == {"0": len(after[0]), "1": len(after[1]), "2": len(after[2])}
    assert run_cli("export", run, "--clusters", "1", "--format", "csv", "-q") == 0
    rows = open(folder.clus_file(os.path.join("particles", "001.csv"))).read().strip().splitlines()[1:]
    assert len(rows) == len(after[1])
    assert run_cli("export", run, "--clusters", "4", "--format", "csv", "-q") == 2  # merged away: not in the run


@pytest.mark.parametrize("merge,message", [
    ("1,9", "cluster 9 not in this run (clusters 0..4)"),
    ("1,x", "expected cluster ids separated by commas"),
])
def test_bad_merges_are_refused_in_one_line_before_any_work(trained, capsys, merge, message):
    data, run = trained
    stamp = os.stat(RunFolder(run).record_path).st_mtime_ns
    assert run_cli("cluster", data, 5, "--out", run, "--merge", merge, "-q") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.stat(RunFolder(run).record_path).st_mtime_ns == stamp


def test_overlapping_groups_are_refused(trained, capsys):
    data, run = trained
    assert run_cli("cluster", data, 5, "--out", run, "--merge", "1,2", "--merge", "2,3", "-q") == 2
    assert "cluster 2 is in two groups" in capsys.readouterr().err
