"""The cluster report of a run on an on-disk data set of several tomograms: exact counts, sampled maps, members read by index."""

import collections
import json
import os
import re

import numpy as np
import pytest

from autoencoder3d.data.store.read import StoreVolumes
from autoencoder3d.data.store.store import store_from_set
from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.report.page import build_report, write_report
from tests.report.test_report import make_run, parse

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

SIZES = [12, 30, 5, 21, 0, 17]
TOMOGRAMS = ["TS_a", "TS_b", "TS_c"]


def _never_whole(self, dtype=None, copy=None):
    raise AssertionError("the report read the whole store")


@pytest.fixture()
def store_run(tmp_path, monkeypatch):
    """make_run's run folder with DATA turned into a store of 3 tomograms (subvolume i from TOMOGRAMS[i % 3])."""
    root = make_run(tmp_path / "run", SIZES, n=16)
    subvolumes = load_subvolumes(os.path.join(root, "data.pickle"))
    subvolumes.tomograms = np.array([TOMOGRAMS[i % 3] for i in range(len(subvolumes))], dtype=object)
    store = os.path.join(root, "data.zarr")
    store_from_set(store, subvolumes)
    record = json.load(open(os.path.join(root, "run.json")))
    record["inputs"]["data"] = store
    json.dump(record, open(os.path.join(root, "run.json"), "w"))
    monkeypatch.setattr(StoreVolumes, "__array__", _never_whole)
    expected = {}
    for k, size in enumerate(SIZES):
        names = [subvolumes.tomograms[subvolumes.uuids.index(f"c{k:03d}-m{i:04d}")] for i in range(size)]
        expected[k] = collections.Counter(names)
    return root, expected


def _cards(page):
    card = r'<div class="card[^"]*" id="cluster-(\d+)".*?(?=<div class="card(?: empty)?" id=|<svg class="filters")'
    return {int(m.group(1)): m.group(0) for m in re.finditer(card, page, re.S)}


def _member_images(page):
    return [a["src"] for t, a in parse(page) if t == "img" and "member" in a.get("class", "")]


def test_report_of_a_store_run_counts_per_tomogram_and_shows_members(store_run, tmp_path):
    root, expected = store_run
    page = build_report(root, tsne=False)
    cards = _cards(page)
    assert sorted(cards) == list(range(len(SIZES)))
    for k, size in enumerate(SIZES):
        assert f'data-size="{size}"' in cards[k]
        line = re.search(r'<div class="tomograms note"[^>]*>from (\d+) tomograms?: ([^<]*)</div>', cards[k])
        if size == 0:
            assert line is None
            continue
        counts = dict((name, int(n)) for name, n in (part.rsplit(" ", 1) for part in line.group(2).split(", ")))
        assert counts == dict(expected[k]) and int(line.group(1)) == len(expected[k])
        assert list(counts.values()) == sorted(counts.values(), reverse=True)
    assert f"{sum(SIZES)} subvolumes of 16 x 16 x 16 voxels in 6 clusters from 3 tomograms" in page
    # members are read from the store by index: the same pictures as from the pickle the store was made of
    members = _member_images(page)
    assert len(members) == sum(min(4, s) for s in SIZES)
    os.rename(os.path.join(root, "data.zarr"), os.path.join(root, "elsewhere.zarr"))
    record = json.load(open(os.path.join(root, "run.json")))
    record["inputs"]["data"] = os.path.join(root, "data.pickle")
    json.dump(record, open(os.path.join(root, "run.json"), "w"))
    assert _member_images(build_report(root, tsne=False)) == members


def test_maps_draw_a_sample_and_say_so_while_counts_stay_exact(store_run, capsys):
    from autoencoder3d.cli.main import main

    root, _ = store_run
    page = build_report(root, tsne=True, tsne_max_points=8, map_max_points=10)
    n = sum(SIZES)
    assert f"The maps show a random sample of 10 of the {n} subvolumes (the counts elsewhere on this page are exact)." in page
    assert "t-SNE on 8 of them at random." in page
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert len(data["maps"]["pca"]) == 3 * 10 and len(data["maps"]["tsne"]) == 3 * 8
    assert [int(m) for m in re.findall(r'data-size="(\d+)"', page)] == sorted(SIZES, reverse=True)
    out = os.path.join(root, "page.html")
    assert main(["report", root, "--out", out, "--no-tsne", "--map-max-points", "7", "-q"]) == 0
    assert f"a random sample of 7 of the {n} subvolumes" in open(out, encoding="utf-8").read()
    assert "All 85 subvolumes." in build_report(root, tsne=False)


def test_report_given_the_store_set_and_encoding_the_store_again(store_run):
    """As at the end of train on a store (the set passed in); without encodings.pickle the store is encoded again, batch by batch."""
    from autoencoder3d.data.open import open_data
    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import save_models

    root, expected = store_run
    stored = open_data(os.path.join(root, "data.zarr"))
    page = open(write_report(root, tsne=False, subvolumes=stored), encoding="utf-8").read()
    assert "from 3 tomograms" in page and len(_member_images(page)) == sum(min(4, s) for s in SIZES)
    save_models(build_autoencoder((16, 16, 16), encoding_dim=32), os.path.join(root, "model"))
    os.remove(os.path.join(root, "clus-center", "encodings.pickle"))
    again = build_report(root, tsne=False)
    assert "cannot be recomputed" not in again and 'data-map="pca"' in again and f"All {sum(SIZES)} subvolumes." in again
