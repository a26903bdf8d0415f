"""Per-cluster measures: spread in code space, stability as the run recorded it, and the mark on flat centres."""

import os
import pickle
import re

import numpy as np
import pytest

from autoencoder3d.report.measures import FLAT_BELOW, code_spread, structure_score
from autoencoder3d.report.page import build_report, read_encodings, save_encodings
from tests.report.test_report import make_run, parse


def test_spread_is_the_mean_distance_to_the_centre():
    codes = np.array([[0.0, 0], [3, 4], [10, 0], [10, 2]])
    assert code_spread(codes, [0, 0, 1, 1], np.array([[0.0, 0], [10, 1]])) == {0: 2.5, 1: 1.0}
    assert code_spread(codes, [0, 0, 1, 1]) == {0: 2.5, 1: 1.0}  # without centres: the members' mean


def test_structure_of_a_flat_centre_is_below_one_and_of_a_particle_above():
    rng = np.random.default_rng(1)
    n = 16
    radius = np.linalg.norm(np.mgrid[:n, :n, :n] - (n - 1) / 2, axis=0)
    particle = np.where(radius < 3, -1.0, 0.2)
    members = particle + rng.normal(0, 1, (16, n, n, n))
    assert structure_score(particle, members) > 3
    noise = rng.normal(0, 1, (16, n, n, n))
    flat = 0.2 + rng.normal(0, 0.01, (n, n, n))
    assert structure_score(flat, noise) < 0.1
    assert structure_score(noise[0], noise[1:]) > 0.8  # one member of pure noise: about 1
    assert structure_score(particle, members[:2]) is None  # too few members to know their noise


@pytest.fixture(scope="module")
def run_with_a_flat_cluster(tmp_path_factory):
    """make_run's clusters (dark balls plus noise) with cluster 2's centre flat and its members pure noise."""
    root = make_run(tmp_path_factory.mktemp("flat") / "run", [20, 20, 20], n=16)
    centres_path = os.path.join(root, "clus-center", "ccents.pickle")
    centres = pickle.load(open(centres_path, "rb"))
    centres[2] = np.full_like(centres[2], 0.2) + np.random.default_rng(0).normal(0, 0.005, centres[2].shape).astype(np.float32)
    pickle.dump(centres, open(centres_path, "wb"))
    data = pickle.load(open(os.path.join(root, "data.pickle"), "rb"))
    rng = np.random.default_rng(5)
    for uuid, entry in data["vs"].items():
        if uuid.startswith("c002"):
            entry["v"] = (0.2 + rng.normal(0, 0.4, entry["v"].shape)).astype(np.float32)
    pickle.dump(data, open(os.path.join(root, "data.pickle"), "wb"))
    return root


def _cards(page):
    return {int(a["data-cluster"]): a for t, a in parse(page) if t == "div" and "card" in a.get("class", "").split()}


def test_cards_show_and_sort_by_the_measures_and_mark_the_flat_centre(run_with_a_flat_cluster):
    page = build_report(run_with_a_flat_cluster, tsne=False)
    cards = _cards(page)
    assert cards[2]["data-flat"] == "1" and float(cards[2]["data-structure"]) < FLAT_BELOW
    for k in (0, 1):
        assert cards[k]["data-flat"] == "0" and float(cards[k]["data-structure"]) > FLAT_BELOW
    card_2 = re.search(r'<div class="card" id="cluster-2".*?<div class="measures">', page, re.S).group(0)
    assert "flat centre" in card_2 and "flat centre" not in re.search(r'<div class="card" id="cluster-0".*?<div class="measures">', page, re.S).group(0)
    # make_run's codes: three Gaussian blobs 0.5 wide around centres about 24 apart
    assert all(float(cards[k]["data-stability"]) == 1.0 for k in range(3))
    assert all(0.5 * np.sqrt(32) * 0.8 < float(cards[k]["data-spread"]) < 0.5 * np.sqrt(32) * 1.2 for k in range(3))
    for option in ("stability-desc", "spread-asc", "structure-desc"):
        assert f'<option value="{option}">' in page


def test_the_page_shows_the_stability_the_run_recorded_and_says_when_there_is_none(tmp_path):
    root = make_run(tmp_path / "run", [6, 7, 8], n=16)
    clus = os.path.join(root, "clus-center")
    uuids, codes, labels, _, _ = read_encodings(clus)
    save_encodings(clus, uuids, codes, labels, stability={0: 0.25, 1: 0.5, 2: 0.75})
    cards = _cards(build_report(root, tsne=False))
    assert [float(cards[k]["data-stability"]) for k in range(3)] == [0.25, 0.5, 0.75]  # read, not measured again
    save_encodings(clus, uuids, codes, labels)
    page = build_report(root, tsne=False)
    assert all(_cards(page)[k]["data-stability"] == "" for k in range(3)) and "stability not measured" in page
    assert "the run recorded no stability of its clusters" in page
    # a run from an earlier version: the CLI measures it now by reruns on the saved codes (three far blobs: 1.0)
    from autoencoder3d.clustering.stability import cluster_stability

    page = build_report(root, tsne=False, measure_stability=cluster_stability)
    assert [float(_cards(page)[k]["data-stability"]) for k in range(3)] == [1.0, 1.0, 1.0] and "measured now" in page
    # ... but not one clustered with --flips match: its four flips' codes are gone
    save_encodings(clus, uuids, codes, labels, flips=np.zeros(len(uuids), dtype=int))
    page = build_report(root, tsne=False, measure_stability=cluster_stability)
    assert all(_cards(page)[k]["data-stability"] == "" for k in range(3)) and "measured now" not in page


# ---------------------------------------------------------------- in a browser (skipped without Chromium)

from tests.report.test_report import browser  # noqa: E402,F401  (the Chromium fixture)


def test_in_chromium_the_cards_sort_by_each_measure(run_with_a_flat_cluster, browser, tmp_path):
    from autoencoder3d.report.page import write_report

    path = write_report(run_with_a_flat_cluster, tmp_path / "page.html", tsne=False)
    cards = _cards(open(path, encoding="utf-8").read())
    browser.open(path)

    def order(sort):
        browser.evaluate(f"(() => {{ const e = document.getElementById('sort'); e.value = '{sort}'; e.dispatchEvent(new Event('change')); }})()")
        return [int(c) for c in browser.evaluate("Array.from(document.querySelectorAll('#cards .card')).map(c => c.dataset.cluster)")]

    assert order("structure-desc") == sorted(cards, key=lambda k: -float(cards[k]["data-structure"])) and order("structure-desc")[-1] == 2
    assert order("spread-asc") == sorted(cards, key=lambda k: float(cards[k]["data-spread"]))
    assert order("stability-desc") == [0, 1, 2]  # all 1.0: by id
    assert order("size-desc") == [0, 1, 2]
