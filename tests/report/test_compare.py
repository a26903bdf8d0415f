"""The report's comparisons (report/compare.py) and what the selection panel's script reads."""

import json
import os
import re

import pytest

from autoencoder3d.report.compare import annotate_card, card_badges, cluster_name, compare_section, selection_data
from autoencoder3d.report.page import build_report
from tests.report.test_report import make_run

RECORD = {
    "inputs": {"data": "/data/sub vols.pickle", "tomogram": "/data/t.rec", "pose": True, "n_clusters": 8},
    "options": {"n_init": 100, "kmeans": "auto", "baseline": True},
    "seed": 7,
    "baseline": {"method": "k-means", "ari": 0.25, "stability": {"autoencoder": 0.9, "baseline": 0.6, "runs": 3},
                 "contingency": {"rows": [0, 1], "columns": [0, 1], "counts": [[3, 1], [0, 4]]}},
    "duplicates": {"threshold": 0.9, "pairs": [{"clusters": [1, 3], "correlation": 0.97, "rotation": "180 deg about z",
                                                "matrix": [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]}]},
    "merge": {"groups": [[2, 5]], "kept": {"2": [2, 5]}},
}


def test_cards_name_the_relion_class_and_the_duplicate():
    assert cluster_name(3) == "cluster 3 (rlnClassNumber 4)"
    card = '<div class="card"><div class="card-head"><span class="card-title">cluster 3</span></div></div>'
    out = annotate_card(card, 3, RECORD)
    assert "rlnClassNumber 4" in out and 'data-duplicate="1"' in out and "180 deg about z" in out
    assert out.index("cluster 3</span>") < out.index("rlnClassNumber 4")
    assert "merged from 2, 5" in card_badges(2, RECORD) and "duplicate" not in card_badges(0, RECORD)


def test_the_section_lists_baseline_duplicates_and_merges():
    section = compare_section(RECORD)
    assert "ARI 0.250" in section and "autoencoder 0.900" in section and "PCA 0.600" in section
    assert 'href="#cluster-1"' in section and 'href="#cluster-3"' in section
    assert "2, 5 into 2" in section and "rlnClassNumber is the cluster id + 1" in section
    assert "skipped" in compare_section({"options": {"baseline": False}})


def test_selection_data_rebuilds_the_cluster_command():
    data = selection_data("/runs/k 8", RECORD)
    assert data["export_prefix"] == "autoencoder3d export '/runs/k 8'"
    assert data["cluster_prefix"] == ("autoencoder3d cluster '/data/sub vols.pickle' --tomogram /data/t.rec --pose 8 "
                                      "--out '/runs/k 8' --seed 7")
    assert data["merged"] == {"2": [2, 5]} and data["seeded"] is True
    assert selection_data("/r", {"inputs": {"data": "d", "n_clusters": 4}, "seed": None})["seeded"] is False


def test_the_page_carries_what_the_panel_needs(tmp_path):
    page = build_report(make_run(tmp_path / "run", [5, 4, 3]), tsne=False)
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1))
    assert data["export_prefix"].startswith("autoencoder3d export ")
    assert data["cluster_prefix"].startswith("autoencoder3d cluster ") and " 3 --out " in data["cluster_prefix"]
    assert data["merged"] == {} and data["seeded"] is True
    for k in range(3):
        assert f"rlnClassNumber {k + 1}" in page
    for element in ('id="export-command"', 'id="merge-command"', "function mergeCommand", "function exportCommand"):
        assert element in page


# ---------------------------------------------------------------- in a browser (skipped without Chromium)

from tests.report.test_report import browser  # noqa: E402,F401  (the Chromium fixture)


@pytest.mark.slow
def test_in_chromium_the_panel_composes_export_and_merge_commands(tmp_path, browser):  # noqa: F811
    from autoencoder3d.report.page import write_report

    root = make_run(tmp_path / "run", [6, 5, 4, 3])
    record = json.load(open(os.path.join(root, "run.json")))
    record["merge"] = {"groups": [[1, 3]], "kept": {"1": [1, 3]}}  # an earlier merge: cluster 1 holds 1 and 3
    json.dump(record, open(os.path.join(root, "run.json"), "w"))
    browser.open(write_report(root, tsne=False))
    assert browser.evaluate("document.body.dataset.ready") == "1"
    browser.click("#clear-selection")
    assert browser.evaluate("document.getElementById('merge-command').textContent").startswith("(assign two or more")
    browser.click(".card[data-cluster='2'] .assign")
    browser.click(".card[data-cluster='1'] .assign")
    browser.click("#add-label")
    browser.click(".card[data-cluster='0'] .assign")
    export = browser.evaluate("document.getElementById('export-command').textContent")
    assert export == f"autoencoder3d export {root} --clusters 0,1,2"
    merge = browser.evaluate("document.getElementById('merge-command').textContent")
    assert merge.startswith("autoencoder3d cluster ") and f"--out {root} --seed 1" in merge
    assert merge.endswith(" --merge 1,2,3")  # label 1 (clusters 1 and 2), cluster 1 bringing its earlier group
