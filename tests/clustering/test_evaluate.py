"""Scores of a clustering against the simulator's truth."""

import json
import math
import os

import numpy as np
import pytest

from autoencoder3d.cli.main import main as cli_main
from autoencoder3d.clustering.evaluate import contingency, evaluate_clustering, purity, scores
from autoencoder3d.errors import InputError
from autoencoder3d.formats.subvolume_pickle import save_pickle
from autoencoder3d.simulate.dataset import simulate_dataset

SMALL = dict(shape=(64, 64, 48), voxel_size=20.0, box=16, copies=4, example_2_copies=3)


def _entropy(counts):
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts if c)


def test_tiny_table_by_hand():
    classes = ["a", "a", "a", "b", "b", "c"]
    clusters = [1, 1, 2, 2, 2, 3]
    table, cluster_ids, class_names = contingency(classes, clusters)
    assert cluster_ids == [1, 2, 3] and class_names == ["a", "b", "c"]
    assert table.tolist() == [[2, 0, 0], [1, 2, 0], [0, 0, 1]]
    s = scores(classes, clusters)
    # pairs together in both: C(2,2) + C(2,2) = 2; row pairs 1 + 3 + 0 = 4; column pairs 3 + 1 + 0 = 4; all 15
    expected = 4 * 4 / 15
    assert s["ari"] == pytest.approx((2 - expected) / ((4 + 4) / 2 - expected))  # 7/22
    assert s["ari"] == pytest.approx(7 / 22)
    h_class = _entropy([3, 2, 1])
    h_class_given_cluster = 3 / 6 * _entropy([1, 2])
    assert s["homogeneity"] == pytest.approx(1 - h_class_given_cluster / h_class)
    # the cluster sizes (2, 3, 1) have the same entropy as the classes, so NMI = I / H(class)
    assert s["nmi"] == pytest.approx((h_class - h_class_given_cluster) / h_class)
    assert s["purity"] == pytest.approx(5 / 6)
    assert (s["n"], s["k"], s["classes"]) == (6, 3, 3)


def test_perfect_clustering_scores_one_whatever_the_labels():
    classes = ["a", "a", "b", "b", "c", "c"]
    s = scores(classes, [7, 7, 2, 2, 0, 0])
    for key in ("ari", "nmi", "homogeneity", "completeness", "purity"):
        assert s[key] == pytest.approx(1.0)


def test_random_clustering_by_hand():
    # table [[1, 1], [1, 1]]: no pair agrees; expected index 2 * 2 / 6, max 2
    s = scores(["a", "a", "b", "b"], [1, 2, 1, 2])
    assert s["ari"] == pytest.approx((0 - 2 / 3) / (2 - 2 / 3))  # -0.5
    assert s["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert s["homogeneity"] == pytest.approx(0.0, abs=1e-12)
    assert s["purity"] == pytest.approx(0.5)


def test_one_big_cluster():
    s = scores(["a", "a", "a", "b"], [0, 0, 0, 0])
    assert s["ari"] == pytest.approx(0.0)
    assert s["homogeneity"] == pytest.approx(0.0)
    assert s["purity"] == pytest.approx(0.75)
    assert purity([[3, 1]]) == 0.75


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    simulate_dataset(folder, **SMALL)
    with open(folder / "truth.json") as handle:
        truth = json.load(handle)
    return folder, truth


def _write_clustering(run_dir, truth, how="perfect"):
    names = [c["name"] for c in truth["classes"]]
    clusters = {}
    for i, (uuid, rec) in enumerate(truth["subvolumes"].items()):
        if rec["set"] != "example_1":
            continue
        label = names.index(rec["class"]) if how == "perfect" else i % 3
        clusters.setdefault(label, []).append(uuid)
    path = os.path.join(run_dir, "clus-center", "kmeans.pickle")
    save_pickle(path, clusters)
    return path


def test_evaluate_run_folder_with_baseline(simulated, tmp_path):
    folder, truth = simulated
    _write_clustering(tmp_path, truth)
    result = evaluate_clustering(tmp_path, folder / "truth.json", baseline=True)
    out = tmp_path / "clus-center" / "evaluation"
    assert result["autoencoder"]["ari"] == pytest.approx(1.0)
    assert result["autoencoder"]["n"] == 6 * SMALL["copies"]
    assert result["baseline"]["k"] == 6
    assert -1.0 <= result["baseline"]["ari"] <= 1.0
    for name in ("evaluation.json", "contingency.csv", "contingency.png", "baseline_contingency.csv",
                 "baseline_contingency.png"):
        assert (out / name).is_file(), name
    with open(out / "evaluation.json") as handle:
        written = json.load(handle)
    assert written["autoencoder"] == result["autoencoder"]
    assert written["snr"]["example_1"]["asked"] == 0.3
    lines = (out / "contingency.csv").read_text().splitlines()
    assert lines[0] == "cluster,barrel,double_ring,filament,globule,ribosome,tetramer,total,majority"
    assert lines[-1] == "total,4,4,4,4,4,4,24,"
    with open(out / "contingency.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_accepts_pickle_or_clus_center_and_out(simulated, tmp_path):
    folder, truth = simulated
    path = _write_clustering(tmp_path, truth, how="mixed")
    a = evaluate_clustering(path, folder / "truth.json", out_dir=tmp_path / "a")
    b = evaluate_clustering(os.path.dirname(path), folder / "truth.json", out_dir=tmp_path / "b")
    assert a["autoencoder"] == b["autoencoder"]
    assert a["autoencoder"]["k"] == 3 and a["autoencoder"]["purity"] < 1
    assert (tmp_path / "a" / "evaluation.json").is_file()


def test_cli_evaluate(simulated, tmp_path, capsys):
    folder, truth = simulated
    _write_clustering(tmp_path, truth)
    status = cli_main(["evaluate", str(tmp_path), str(folder / "truth.json"), "--baseline",
                       "--data", str(folder / "subvolumes_example_1.pickle")])
    assert status == 0
    out = capsys.readouterr().out
    assert "autoencoder       6  1.000  1.000  1.000  1.000" in out
    assert "PCA baseline" in out


def test_errors_name_the_file_and_problem(simulated, tmp_path):
    folder, truth = simulated
    truth_path = folder / "truth.json"
    with pytest.raises(InputError, match="no clustering found"):
        evaluate_clustering(tmp_path, truth_path)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    clus = _write_clustering(tmp_path, truth)
    with pytest.raises(InputError, match="bad.json: not valid JSON for a truth file"):
        evaluate_clustering(clus, bad_json)
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a truth file of `autoencoder3d simulate`"):
        evaluate_clustering(clus, other)
    save_pickle(tmp_path / "unknown.pickle", {0: ["not-a-uuid"]})
    with pytest.raises(InputError, match="1 of 1 clustered subvolumes are not in the truth"):
        evaluate_clustering(tmp_path / "unknown.pickle", truth_path)
    save_pickle(tmp_path / "twice.pickle", {0: ["x"], 1: ["x"]})
    with pytest.raises(InputError, match="in more than one cluster"):
        evaluate_clustering(tmp_path / "twice.pickle", truth_path)
    save_pickle(tmp_path / "list.pickle", [1, 2])
    with pytest.raises(InputError, match="expected a non-empty dict of cluster id"):
        evaluate_clustering(tmp_path / "list.pickle", truth_path)
    with pytest.raises(InputError, match="clustered subvolumes are not in this pickle"):
        evaluate_clustering(clus, truth_path, baseline=True, data=folder / "subvolumes_example_2.pickle")


def test_scores_need_matching_lengths():
    with pytest.raises(ValueError):
        scores(["a"], [1, 2])
    assert np.isfinite(scores(["a", "b"], [0, 1])["ari"])


def test_empty_clusters_count_for_the_baseline_k(simulated, tmp_path, capsys):
    folder, truth = simulated
    uuids = [u for u, r in truth["subvolumes"].items() if r["set"] == "example_1"]
    save_pickle(tmp_path / "collapsed.pickle", {0: uuids, 1: [], 2: []})
    result = evaluate_clustering(tmp_path / "collapsed.pickle", folder / "truth.json", baseline=True,
                                 out_dir=tmp_path / "out")
    assert result["clusters_in_file"] == 3
    assert result["autoencoder"]["k"] == 1 and result["autoencoder"]["ari"] == pytest.approx(0.0)
    assert result["baseline"]["k"] == 3
    save_pickle(tmp_path / "empty.pickle", {0: [], 1: []})
    with pytest.raises(InputError, match="every cluster is empty"):
        evaluate_clustering(tmp_path / "empty.pickle", folder / "truth.json")
