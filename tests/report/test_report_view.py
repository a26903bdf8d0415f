"""What the report shows first: dead codes and empty clusters, grouped settings, a shared contrast, large montages."""

import base64
import json
import os
import pickle
import re

import numpy as np
import pytest

from autoencoder3d.report.figures import montage
from autoencoder3d.report.page import build_report
from autoencoder3d.report.parts import data_uri
from tests.report.test_report import SIZES, make_run, parse


def edit_record(root, **changes):
    path = os.path.join(root, "run.json")
    record = json.load(open(path))
    for key, value in changes.items():
        record[key] = value
    json.dump(record, open(path, "w"))


def header(page):
    return page.split("<header>", 1)[1].split("</header>", 1)[0]


@pytest.fixture(scope="module")
def run_with_empty(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("view") / "run", SIZES)


def test_an_empty_cluster_gets_a_card_without_images_or_assign_button(run_with_empty):
    page = build_report(run_with_empty, tsne=False)
    empty = re.search(r'<div class="card empty" id="cluster-4".*?</p></div>', page, re.S)
    assert empty and "empty: k-means gave this cluster no subvolume" in empty.group(0)
    assert "<img" not in empty.group(0) and "assign" not in empty.group(0)
    assert "1 of 6 clusters are empty (k-means gave them no subvolume): 4." in header(page)


@pytest.mark.parametrize("codes,words", [
    ({"active_code_units": 0, "distinct_codes": 1}, "The codes are dead: 0 of 32 code units are ever active"),
    ({"active_code_units": 7, "distinct_codes": 2}, "The codes are dead: 7 of 32 code units"),
    ({"active_code_units": 2, "distinct_codes": 85}, "The codes are nearly dead: 2 of 32 code units"),
    ({"active_code_units": 9, "distinct_codes": 5}, "The codes are nearly dead: 9 of 32"),
    ({"active_code_units": 9, "distinct_codes": 85}, None),
])
def test_the_top_of_the_page_says_when_codes_are_dead_or_nearly(tmp_path, codes, words):
    root = make_run(tmp_path / "run", [30, 25, 30])
    edit_record(root, codes=codes, options={"encoding_dim": 32, "batch_size": 16, "n_init": 10})
    top = header(build_report(root, tsne=False))
    if words is None:
        assert 'id="health"' not in top
    else:
        assert words in top and 'id="health"' in top
        assert ("health dead" in top) == ("are dead" in words)


def test_settings_are_grouped_and_nothing_recorded_is_hidden(run_with_empty):
    edit_record(run_with_empty, options={"epochs": 3, "batch_size": 128, "n_init": 100, "encoding_dim": 32, "some_new_option": "x"},
                codes={"active_code_units": 30, "distinct_codes": 92})
    page = build_report(run_with_empty, tsne=False)
    settings = page.split('id="settings"', 1)[1]
    groups = re.findall(r'<div class="settings-group"><h3>([^<]+)</h3>', settings)
    assert groups == ["run", "data", "model", "training", "clustering", "other options", "timings", "versions"]

    def rows(group):
        block = settings.split(f"<h3>{group}</h3>", 1)[1].split("</table>", 1)[0]
        return dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", block))

    assert rows("training")["batch size"] == "128" and rows("training")["epochs (maximum)"] == "3"
    assert rows("model")["code length"] == "32"
    assert rows("clustering")["k-means restarts"] == "100" and rows("clustering")["active code units"] == "30"
    assert rows("other options") == {"some new option": "x"}
    assert rows("timings") == {"total (s)": "1"}


def _grey(uri, plane=0):
    """The grey levels of a PNG data URI (plane 1: its alpha)."""
    import png

    width, height, rows, info = png.Reader(bytes=base64.b64decode(uri.split(",", 1)[1])).read()
    return np.array([list(r) for r in rows], dtype=np.uint8).reshape(height, width, info["planes"])[:, :, plane]


def test_shared_contrast_makes_densities_comparable(tmp_path):
    from autoencoder3d.report.parts import montage_png, shared_contrast

    root = make_run(tmp_path / "run", [10, 10])
    path = os.path.join(root, "clus-center", "ccents.pickle")
    centres = pickle.load(open(path, "rb"))
    centres[1] = centres[0] * 0.1  # the same shape, a tenth of the density
    pickle.dump(centres, open(path, "wb"))
    page = build_report(root, tsne=False)
    tags = parse(page)
    montages = {a["alt"]: a for t, a in tags if t == "img" and "montage" in a.get("class", "")}
    own = [_grey(montages[f"montage of cluster {k}"]["src"]) for k in (0, 1)]
    np.testing.assert_array_equal(own[0], own[1])  # on its own contrast (fig/'s), a tenth of the density looks the same
    contrast = shared_contrast(centres, {0: 10, 1: 10})
    shared = []
    for k in (0, 1):
        assert montages[f"montage of cluster {k}"]["data-filter"] == f"shared-{k}"
        slope, intercept = _filter(page, k)
        mapped = np.clip(own[k] / 255.0 * slope + intercept, 0, 1) * 255  # what the browser's filter draws
        expected = _grey(data_uri(montage_png(centres[k], contrast))).astype(float)
        voxels = ~np.isnan(montage(centres[k]))  # not the gaps between slices
        assert np.abs(mapped[voxels] - expected[voxels]).max() <= 1.5
        shared.append(expected[voxels])
    assert shared[0].max() == 255 and np.ptp(shared[1]) < 0.2 * np.ptp(shared[0])


def _filter(page, k):
    return map(float, re.search(
        rf'<filter id="shared-{k}" color-interpolation-filters="sRGB"><feComponentTransfer><feFuncR type="linear" '
        r'slope="([^"]+)" intercept="([^"]+)"/>', page).groups())


def test_one_intensity_window_for_the_whole_page_by_default(tmp_path):
    """Every centre image (montage, slices) shows through one window, every member slice through one, and the page says which."""
    from autoencoder3d.report.parts import central_slices
    from autoencoder3d.report.windows import to_uint8

    root = make_run(tmp_path / "run", [6, 9, 5], n=16)
    centres = pickle.load(open(os.path.join(root, "clus-center", "ccents.pickle"), "rb"))
    volumes = {u: e["v"] for u, e in pickle.load(open(os.path.join(root, "data.pickle"), "rb"))["vs"].items()}
    page = build_report(root, tsne=False)
    tags = parse(page)
    assert re.search(r'<select id="contrast"><option value="shared" selected>', page)
    low, high = min(float(c.min()) for c in centres.values()), max(float(c.max()) for c in centres.values())
    centre_images = [a for t, a in tags if t == "img" and "contrast" in a.get("class", "")]
    assert len(centre_images) == 3 * 4
    for image in centre_images:
        k = int(re.search(r"cluster (\d+)", image["alt"]).group(1))
        assert image["style"] == f"filter:url(#shared-{k})"  # shown shared without any script
        if "montage" in image["class"]:
            values = montage(centres[k])
        else:
            values = dict(central_slices(centres[k]))[image["alt"].rsplit(" ", 1)[1]]
        slope, intercept = _filter(page, k)
        shown = np.clip(_grey(image["src"]) / 255.0 * slope + intercept, 0, 1) * 255
        inside = ~np.isnan(values)
        if "montage" in image["class"]:  # the gaps between slices are transparent: black under any filter
            assert np.array_equal(_grey(image["src"], plane=1) == 255, inside)
        assert np.abs(shown[inside] - to_uint8(values[inside], low, high)).max() <= 1.5
    members = [(a, volumes[a["alt"].removeprefix("member ")]) for t, a in tags if t == "img" and "member" in a.get("class", "")]
    assert len(members) == 12
    slices = [v[:, :, v.shape[2] // 2] for _, v in members]
    m_low, m_high = np.percentile(np.concatenate([s.ravel() for s in slices]), [1, 99])
    for (image, _), values in zip(members, slices):
        assert np.array_equal(_grey(image["src"]), to_uint8(values, m_low, m_high))  # one window, in the data's units
        # the other choice, each image its own 1st-99th percentile, is the linear map data-own names
        slope, intercept = map(float, image["data-own"].split())
        own_low, own_high = np.percentile(values, [1, 99])
        inside = (values > max(own_low, m_low)) & (values < min(own_high, m_high))
        own = np.clip(_grey(image["src"]) / 255.0 * slope + intercept, 0, 1) * 255
        assert np.abs(own[inside] - to_uint8(values[inside], own_low, own_high)).max() <= 2.5
    said = f"Shown: one intensity window for the whole page: centres {low:.4g} (black) to {high:.4g} (white), member slices {m_low:.4g} to {m_high:.4g}"
    assert said in page


@pytest.mark.parametrize("box,zoom", [(32, 2), (16, 6), (64, 1)])
def test_montages_are_shown_about_400_px_wide(tmp_path, box, zoom):
    root = make_run(tmp_path / "run", [3, 3], n=box)
    page = build_report(root, tsne=False, n_members=0)
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1))
    assert data["montage_zoom"] == zoom
    montage = next(a for t, a in parse(page) if t == "img" and "montage" in a.get("class", ""))
    assert 300 <= _grey(montage["src"]).shape[1] * zoom <= 560


# ---------------------------------------------------------------- in a browser (skipped without Chromium)

from tests.report.test_report import browser  # noqa: E402,F401  (the Chromium fixture)


def _pixel(browser, x, y):
    import png

    shot = browser.send("Page.captureScreenshot", session=True, format="png", clip={"x": x, "y": y, "width": 1, "height": 1, "scale": 1})
    _, _, rows, _ = png.Reader(bytes=base64.b64decode(shot["data"])).asRGB8()
    return list(next(iter(rows)))[:3]


def test_in_chromium_shared_contrast_zoom_and_empty_card(tmp_path, browser):
    root = make_run(tmp_path / "run", [10, 10, 0])
    path = os.path.join(root, "clus-center", "ccents.pickle")
    centres = pickle.load(open(path, "rb"))
    centres[1] = centres[0] * 0.1
    pickle.dump(centres, open(path, "wb"))
    from autoencoder3d.report.page import write_report

    browser.open(write_report(root, tsne=False))
    assert browser.evaluate("document.body.dataset.ready") == "1"
    assert browser.evaluate("document.getElementById('zoom').value") == "2"
    assert browser.evaluate("document.querySelector('.card[data-cluster=\"1\"] img.montage').getBoundingClientRect().width") == 2 * 198
    assert browser.evaluate("document.querySelector('.card[data-cluster=\"2\"]').classList.contains('empty')")
    # the centre of the middle slice (z = 16: grid row 2, column 4) of cluster 1, inside the dark ball
    where = (
        "(() => { const img = document.querySelector('.card[data-cluster=\"1\"] img.montage'); img.scrollIntoView({block: 'center'});"
        " const r = img.getBoundingClientRect(), s = r.width / img.naturalWidth;"
        " return [window.scrollX + r.left + (4 * 33 + 16.5) * s, window.scrollY + r.top + (2 * 33 + 16.5) * s]; })()"
    )
    x, y = browser.evaluate(where)
    grey = _pixel(browser, x, y)
    # shown shared by default: with cluster 0 (ball -1, outside 0.2) a tenth of the density, -0.1, is light grey: (1 - 0.1) / 1.2 of white
    assert grey[0] == grey[1] == grey[2] and abs(grey[0] - 255 * 0.9 / 1.2) <= 6, grey
    gap = where.replace("(4 * 33 + 16.5)", "(4 * 33 + 32.5)")  # the gap right of that slice stays black under the filter
    assert _pixel(browser, *browser.evaluate(gap)) == [0, 0, 0]
    assert browser.evaluate("document.getElementById('contrast-shown').textContent").startswith("Shown: one intensity window")
    browser.evaluate("(() => { const e = document.getElementById('contrast'); e.value = 'own'; e.dispatchEvent(new Event('change')); })()")
    x, y = browser.evaluate(where)
    assert _pixel(browser, x, y) == [0, 0, 0]  # its own contrast: the darkest of the cluster is black
    assert browser.evaluate("document.getElementById('contrast-shown').textContent").startswith("Shown: each cluster's centre on its own")
    # a member slice on its own window: the filter made from its data-own map
    assert browser.evaluate("document.querySelector('img.member').style.filter") == 'url("#own-member-0")'
    assert browser.evaluate("document.querySelectorAll('svg.filters filter[id^=own-member]').length") == 2 * 4
    browser.evaluate("(() => { const e = document.getElementById('zoom'); e.value = '3'; e.dispatchEvent(new Event('change')); })()")
    assert browser.evaluate("document.querySelector('.card[data-cluster=\"1\"] img.montage').getBoundingClientRect().width") == 3 * 198
