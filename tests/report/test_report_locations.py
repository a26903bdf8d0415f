"""Where the members lie (a projection of their tomogram with their centres marked) and the scale bars under every image."""

import base64
import json
import os
import pickle
import re

import numpy as np
import pytest

from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.report import locations
from autoencoder3d.report.locations import DOT
from autoencoder3d.report.page import build_report
from tests.conftest import write_tomogram
from tests.report.test_report import make_run, parse

SHAPE = (60, 40, 12)  # x, y, z
POSITIONS = {  # cluster -> member centres (x, y, z), in tomogram voxels
    0: [(5, 5, 6), (50, 30, 5), (30, 20, 6), (59, 0, 7), (0, 39, 6), (17, 33, 4)],
    1: [(10, 25, 6), (44, 8, 6), (45, 8, 6), (22, 17, 8), (36, 3, 5), (2, 12, 6)],
}


def _png(uri):
    import png

    reader = png.Reader(bytes=base64.b64decode(uri.split(",", 1)[1]))
    width, height, rows, info = reader.read()
    return np.array([list(r) for r in rows], dtype=np.uint8).reshape(height, width, -1)[:, :, 0], info


def _tomogram(path):
    data = np.zeros(SHAPE, dtype=np.float32)
    data[26:34, 16:24, :] = -5.0  # dense matter, dark as recorded
    return write_tomogram(path, data, voxel_size=10.0)


def _edit(root, voxel_size=(40.0, 40.0, 40.0), **inputs):
    path = os.path.join(root, "run.json")
    record = json.load(open(path))
    record["voxel_size"] = list(voxel_size) if voxel_size else None
    record["inputs"].update(inputs)
    json.dump(record, open(path, "w"))


@pytest.fixture()
def located_run(tmp_path):
    """make_run's two clusters, members at POSITIONS, with a tomogram the run names."""
    root = make_run(tmp_path / "run", [6, 6], n=16)
    data_path = os.path.join(root, "data.pickle")
    data = pickle.load(open(data_path, "rb"))
    for k, places in POSITIONS.items():
        for i, xyz in enumerate(places):
            data["vs"][f"c{k:03d}-m{i:04d}"]["center"] = list(xyz)
    pickle.dump(data, open(data_path, "wb"))
    tomogram = _tomogram(tmp_path / "tomo.mrc")
    _edit(root, tomogram=tomogram)
    return root, tomogram


def _card_maps(page, k):
    card = re.search(rf'<div class="card" id="cluster-{k}".*?(?=<div class="card(?: empty)?" id=|<svg class="filters")', page, re.S).group(0)
    return [a for t, a in parse(card) if t == "img" and a.get("class") == "marks"]


def _expected(places, bin_, width, height):
    return {(height - 1 - min((y * 2 + 1) // (2 * bin_), height - 1), min((x * 2 + 1) // (2 * bin_), width - 1)) for x, y, _ in places}


@pytest.mark.parametrize("max_px,bin_", [(256, 1), (16, 4)])
def test_the_location_map_marks_exactly_the_members_centres(located_run, monkeypatch, max_px, bin_):
    root, _ = located_run
    monkeypatch.setattr(locations, "MAP_MAX_PX", max_px)
    page = build_report(root, tsne=False)
    width, height = SHAPE[0] // bin_, SHAPE[1] // bin_
    for k, places in POSITIONS.items():
        (marks,) = _card_maps(page, k)
        image, info = _png(marks["src"])
        assert image.shape == (height, width) and info["palette"][0][3] == 0  # transparent but for the marks
        dots = {tuple(p) for p in np.argwhere(image == DOT)}
        assert dots == _expected(places, bin_, width, height)
        assert int(marks["data-bin"]) == bin_
    # the tomogram drawn under the marks: a projection as recorded (dense matter dark), once for the page
    style = re.search(r"\.tomo-0\{background-image:url\(([^)]+)\)\}", page).group(1)
    assert page.count(style) == 1 and 'class="locmap tomo-0"' in page
    projection, _ = _png(style)
    assert projection.shape == (height, width)
    dense = projection[height - 1 - 20 // bin_, 30 // bin_]
    assert dense == 0 and np.median(projection) > 100
    assert "spread over the z range of its picks, binned" in page  # make_run records no polarity


def test_the_maps_say_the_polarity_the_run_recorded(located_run):
    root, _ = located_run
    path = os.path.join(root, "run.json")
    record = json.load(open(path))
    record["contrast"] = {"asked": "auto", "used": "bright"}
    json.dump(record, open(path, "w"))
    assert "z range of its picks (dense matter bright, as recorded), binned" in build_report(root, tsne=False)


def test_a_data_set_maps_each_tomogram_and_says_which_cannot_be_drawn(located_run, tmp_path):
    root, tomogram = located_run
    subvolumes = load_subvolumes(os.path.join(root, "data.pickle"))
    cluster_1 = np.array([u.startswith("c001") for u in subvolumes.uuids])
    subvolumes.tomograms = np.where(cluster_1, "TS_b", "TS_a").astype(object)
    subvolumes.tomogram_table = {"TS_a": {"path": tomogram}, "TS_b": {"path": str(tmp_path / "gone.mrc")}}
    page = build_report(root, tsne=False, subvolumes=subvolumes)
    (marks,) = _card_maps(page, 0)
    assert {tuple(p) for p in np.argwhere(_png(marks["src"])[0] == DOT)} == _expected(POSITIONS[0], 1, *SHAPE[:2])
    assert _card_maps(page, 1) == []
    assert page.count("No location map for 1 of 2 tomograms (no file recorded, or not found): TS_b.") == 1


@pytest.mark.parametrize("tomogram,said", [
    (None, "No location maps: the run names no tomogram for these subvolumes."),
    ("/nowhere/tomo.mrc", "No location map: tomogram /nowhere/tomo.mrc not found."),
])
def test_without_the_tomogram_one_line_says_so(located_run, tomogram, said):
    root, _ = located_run
    _edit(root, tomogram=tomogram)
    page = build_report(root, tsne=False)
    assert page.count(said) == 1 and 'class="marks"' not in page


def _images_and_bars(page):
    """(image attributes, the scale bar after it) for every image on the cards."""
    cards = page.split('<div class="cards" id="cards">', 1)[1].split('<svg class="filters"', 1)[0]
    tags = parse(cards)
    pairs = []
    for i, (tag, attrs) in enumerate(tags):
        if tag == "img":
            following = next(a for t, a in tags[i + 1 :] if t == "div")
            pairs.append((attrs, following))
    return pairs


def test_every_image_has_a_scale_bar_of_the_right_length(located_run):
    root, _ = located_run
    page = build_report(root, tsne=False)
    pairs = _images_and_bars(page)
    assert len(pairs) == 2 * (1 + 3 + 4 + 1)  # montage, 3 centre slices, 4 members, 1 location map
    for image, bar in pairs:
        assert bar["class"] == "scalebar"
        width = _png(image["src"])[0].shape[1]
        pixel_a = 10.0 * int(image["data-bin"]) if image.get("class") == "marks" else 40.0  # the tomogram's header; run.json
        nm, px = float(bar["data-bar-nm"]), int(bar["data-bar-px"])
        assert px == round(nm * 10 / pixel_a) >= 1 and int(bar["data-image-px"]) == width
    montage_bar = next(bar for image, bar in pairs if "montage" in image["class"])
    assert (montage_bar["data-bar-nm"], montage_bar["data-bar-px"]) == ("20", "5")  # 20 nm at 40 A a voxel, within a 16-voxel slice
    assert re.search(r'data-bar-px="5" data-image-px="68"><i style="width:7.3529%"></i><span>20 nm</span>', page)


def test_without_a_voxel_size_the_images_say_so(located_run):
    root, _ = located_run
    _edit(root, voxel_size=None, tomogram=None)
    page = build_report(root, tsne=False)
    pairs = _images_and_bars(page)
    assert pairs and all(bar["class"] == "scalebar unknown" for _, bar in pairs)
    assert page.count(">voxel size unknown</div>") == len(pairs) and "data-bar-px" not in page
    assert "; voxel size unknown;" in page


def test_a_big_tomogram_is_read_a_few_slices_at_most(tmp_path):
    """project_slab reads at most SLAB_SLICES z slices and bins them to at most MAP_MAX_PX pixels."""
    from autoencoder3d.formats.mrc import read_tomogram

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (300, 200, 64)).astype(np.float32)
    tomogram = read_tomogram(write_tomogram(tmp_path / "big.mrc", data))
    projection, bin_, slices = locations.project_slab(tomogram, 0, 63, max_px=100, slices=8)
    tomogram.close()
    assert bin_ == 3 and projection.shape == (100, 66) and slices == 8
    zs = np.rint(np.linspace(0, 63, 8)).astype(int)
    expected = data[:300, :198][:, :, zs].mean(axis=2).reshape(100, 3, 66, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(projection, expected, atol=1e-5)
