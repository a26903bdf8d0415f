"""The cluster report (clus-center/index.html): contents, self-containedness, and a real browser.

The browser tests drive headless Chromium (Debian package ``chromium``) through
the Chrome DevTools protocol over ``--remote-debugging-pipe`` (standard library
only); they are skipped when no Chromium is installed. Set ``CHROMIUM`` to use
another binary and ``REPORT_SCREENSHOT`` to keep the screenshot.
"""

import base64
import fcntl
import json
import os
import pickle
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from html.parser import HTMLParser

import numpy as np
import pytest

from autoencoder3d.clustering.stability import cluster_stability
from autoencoder3d.errors import InputError
from autoencoder3d.formats.subvolume_pickle import save_pickle
from autoencoder3d.report.page import build_report, load_encodings, read_encodings, read_run, save_encodings, write_report

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

# ---------------------------------------------------------------- a fake finished run


def make_run(root, sizes, n=32, encoding_dim=32, seed=0, pose=False, texture=False):
    """A run folder as ``autoencoder3d train`` leaves it, without training (fast).

    Cluster k has ``sizes[k]`` members; its decoded centre is a dark ball whose
    radius grows with k; members are the centre plus noise. ``texture`` adds
    smooth random structure to the centres, like real decoded centres (PNGs
    then compress as badly as real ones).
    """
    rng = np.random.default_rng(seed)
    root = str(root)
    clus = os.path.join(root, "clus-center")
    os.makedirs(os.path.join(root, "model"), exist_ok=True)
    grid = np.linalg.norm(np.mgrid[:n, :n, :n] - (n - 1) / 2, axis=0)
    centers_code = rng.normal(0, 3, (len(sizes), encoding_dim)).astype(np.float32)
    centers, members, vs, uuids, codes, labels = {}, {}, {}, [], [], []
    for k, size in enumerate(sizes):
        center = np.where(grid < 2 + k * n / (3 * len(sizes)), -1.0, 0.2).astype(np.float32)
        if texture:
            from scipy.ndimage import gaussian_filter

            center = center + gaussian_filter(rng.normal(0, 3, center.shape), 1.5).astype(np.float32)
        centers[k] = center
        members[k] = []
        for i in range(size):
            uuid = f"c{k:03d}-m{i:04d}"
            members[k].append(uuid)
            vs[uuid] = {"center": [k, i, 0], "id": uuid, "v": (center + rng.normal(0, 0.4, center.shape)).astype(np.float32)}
            uuids.append(uuid)
            codes.append(centers_code[k] + rng.normal(0, 0.5, encoding_dim))
            labels.append(k)
    data = os.path.join(root, "pose-normalized.pickle" if pose else "data.pickle")
    with open(data, "wb") as handle:
        pickle.dump({"v_siz": np.array([n, n, n]), "vs": vs}, handle, protocol=4)
    save_pickle(os.path.join(clus, "kmeans.pickle"), members)
    save_pickle(os.path.join(clus, "ccents.pickle"), centers)
    save_pickle(os.path.join(clus, "ccents_d.pickle"), centers_code)
    save_encodings(clus, uuids, np.array(codes), labels, stability=cluster_stability(np.array(codes), labels))  # as the run records it
    with open(os.path.join(root, "model", "history.csv"), "w") as handle:
        handle.write("epoch,loss,val_loss,learning_rate\n1,0.9,0.95,0.001\n2,0.5,0.6,0.001\n3,0.4,0.45,0.001\n")
    record = {
        "command": "train", "argv": ["autoencoder3d", "train", "data.pickle", "None", "False", str(len(sizes))],
        "started": "2026-01-01T00:00:00+0000",
        "inputs": {"data": "/elsewhere/original.pickle" if pose else data, "tomogram": None, "pose": pose, "n_clusters": len(sizes)},
        "options": {"epochs": 3, "batch_size": 128, "n_init": 100}, "seed": 1, "n_subvolumes": len(uuids),
        "v_siz": [n, n, n], "voxel_size": None, "training": {"epochs_total": 3, "best_val_loss": 0.45},
        "cluster_sizes": {str(k): s for k, s in enumerate(sizes)}, "timings": {"total_s": 1.0}, "versions": {"autoencoder3d": "test"},
    }
    with open(os.path.join(root, "run.json"), "w") as handle:
        json.dump(record, handle)
    return root


SIZES = [12, 30, 5, 21, 0, 17]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = make_run(tmp_path_factory.mktemp("run") / "run1", SIZES)
    return root, write_report(root, tsne=False)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page):
    collector = _Collect()
    collector.feed(page)
    return collector.tags


# ---------------------------------------------------------------- page contents (no browser)


def test_cards_sorted_by_size_with_all_images(small_run):
    root, path = small_run
    assert path == os.path.join(root, "clus-center", "index.html")
    tags = parse(open(path, encoding="utf-8").read())
    cards = [a for t, a in tags if t == "div" and "card" in a.get("class", "").split()]
    assert [int(c["data-size"]) for c in cards] == sorted(SIZES, reverse=True)
    assert [int(c["data-cluster"]) for c in cards] == [1, 3, 5, 0, 2, 4]
    images = [a for t, a in tags if t == "img"]
    # per non-empty cluster: montage, 3 central slices, min(4, size) members; plus the PCA map and the loss
    assert len(images) == sum(4 + min(4, s) for s in SIZES if s) + 2
    for img in images:
        head, _, payload = img["src"].partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_is_self_contained(small_run):
    _, path = small_run
    page = open(path, encoding="utf-8").read()
    for tag, attrs in parse(page):
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.lower().startswith(("http:", "https:", "//")), (tag, value[:80])
        assert not (tag == "script" and attrs.get("src")), "external script"
        assert not (tag == "link" and attrs.get("rel") == "stylesheet"), "external stylesheet"
    assert "@import" not in page and "url(http" not in page


def test_command_uses_the_clustered_data_and_run(tmp_path):
    root = make_run(tmp_path / "posed", [3, 4], n=16, pose=True)
    page = build_report(root, tsne=False)
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["command_prefix"] == f"edss3d train {root}/pose-normalized.pickle --out {root}"
    assert read_run(root).data_path == os.path.join(root, "pose-normalized.pickle")


def test_page_with_a_missing_data_pickle_still_shows_the_centres(tmp_path):
    root = make_run(tmp_path / "run", [3, 4], n=16)
    os.remove(os.path.join(root, "data.pickle"))
    page = build_report(root, tsne=False)
    assert "member slices are not shown" in page
    assert page.count('class="card"') == 2


def test_tsne_map_when_asked_and_not_on_identical_codes(tmp_path):
    root = make_run(tmp_path / "run", [6, 7, 8], n=16)
    page = build_report(root, tsne=True, tsne_max_points=15)
    assert 'data-map="pca"' in page and 'data-map="tsne"' in page and "t-SNE on 15 of them" in page
    uuids, codes, labels = load_encodings(os.path.join(root, "clus-center"))
    save_encodings(os.path.join(root, "clus-center"), uuids, np.zeros_like(codes), labels)
    page = build_report(root, tsne=True)
    assert 'data-map="tsne"' not in page and "All encodings are identical" in page


def test_encodings_round_trip(tmp_path):
    codes = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_encodings(tmp_path, ["a", "b", "c"], codes, [0, 1, 0])
    uuids, got, labels = load_encodings(tmp_path)
    assert uuids == ["a", "b", "c"] and np.array_equal(got, codes) and list(labels) == [0, 1, 0]
    assert read_encodings(tmp_path)[3:] == (None, None)
    save_encodings(tmp_path, ["a", "b", "c"], codes, [0, 1, 0], stability={0: 0.5, np.int64(1): np.float32(1.0)})
    assert read_encodings(tmp_path)[4] == {0: 0.5, 1: 1.0}
    assert load_encodings(tmp_path / "nowhere") is None


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="run.json"):
        write_report(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(InputError, match="kmeans.pickle.*autoencoder3d train"):
        write_report(tmp_path)


def test_report_command(tmp_path, capsys):
    from autoencoder3d.cli.main import main

    root = make_run(tmp_path / "run", [3, 4], n=16)
    out = tmp_path / "page.html"
    assert main(["report", root, "--out", str(out), "--no-tsne", "-q"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------- headless Chromium over the DevTools pipe


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """Minimal Chrome DevTools protocol client over ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, executable, width=1400, height=1000):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        keep_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        keep_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def child_fds():
            os.dup2(keep_r, 3)
            os.dup2(keep_w, 4)

        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
            "--remote-debugging-pipe", "about:blank",
        ]
        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4, keep_r, keep_w), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(keep_r)
        os.close(keep_w)
        self._next_id = 0
        self._replies = {}
        self._events = queue.Queue()
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Runtime.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self):
        buffer = b""
        with os.fdopen(self._from_chrome, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                while b"\0" in buffer:
                    raw, buffer = buffer.split(b"\0", 1)
                    message = json.loads(raw)
                    with self._lock:
                        if "id" in message:
                            self._replies[message["id"]] = message
                            self._lock.notify_all()
                        else:
                            self._events.put(message)

    def send(self, method, session=False, timeout=60, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._next_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no reply from Chromium to {method}")
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            event = self._events.get(timeout=max(deadline - time.monotonic(), 0.01))
            if event.get("method") == method:
                return event

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path):
        """Navigate to a file; returns the page's load time in ms (navigation start to load event end)."""
        self.send("Page.navigate", session=True, url="file://" + os.path.abspath(path))
        self.wait_event("Page.loadEventFired")
        return self.evaluate(
            "new Promise(r => setTimeout(() => { const t = performance.getEntriesByType('navigation')[0];"
            " r(t.loadEventEnd - t.startTime); }, 0))"
        )

    def click(self, selector):
        """A real mouse click in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        self.mouse(*box)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", session=True, type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def mouse(self, x, y):
        self.send("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)

    def screenshot(self, path):
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png")["data"]))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); browser tests skipped")
    chromium = Chromium(executable)
    yield chromium
    chromium.close()


IMAGES_STATE = "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"


def test_in_chromium_images_selection_command_and_json(small_run, browser, tmp_path):
    root, path = small_run
    load_ms = browser.open(path)
    assert browser.evaluate("document.body.dataset.ready") == "1"
    images = browser.evaluate(IMAGES_STATE)
    assert len(images) == sum(4 + min(4, s) for s in SIZES if s) + 2
    assert all(complete and width > 0 for complete, width, _ in images), [alt for c, w, alt in images if not (c and w > 0)]
    assert browser.evaluate("document.getElementById('shown-count').textContent") == "showing 6 of 6 clusters"

    # two clusters into label 1 (given a name), one into label 2, with real mouse clicks
    browser.click(".label-row[data-label='1'] input[type=text]")
    browser.send("Input.insertText", session=True, text="membrane")
    browser.click(".card[data-cluster='3'] .assign")
    browser.click(".card[data-cluster='0'] .assign")
    browser.click("#add-label")
    browser.click(".card[data-cluster='1'] .assign")
    command = browser.evaluate("document.getElementById('command').textContent")
    assert command == f"edss3d train {root}/data.pickle --out {root} --select 1=0,3 --select 2=1"
    assert json.loads(browser.evaluate("document.getElementById('selection-json').dataset.json")) == {"1": [0, 3], "2": [1]}
    href = browser.evaluate("document.getElementById('download').getAttribute('href')")
    assert href.startswith("data:application/json")
    assert json.loads(urllib.parse.unquote(href.split(",", 1)[1])) == {"1": [0, 3], "2": [1]}
    assert browser.evaluate("document.getElementById('download').getAttribute('download')") == "selection.json"
    assert "1 = membrane" in browser.evaluate("document.getElementById('selection-json').textContent")

    # clicking again takes a cluster out
    browser.click(".label-row[data-label='2'] input[type=radio]")
    browser.click(".card[data-cluster='1'] .assign")
    assert json.loads(browser.evaluate("document.getElementById('selection-json').dataset.json")) == {"1": [0, 3]}

    # size filter
    browser.evaluate("(() => { const e = document.getElementById('min-size'); e.value = '15'; e.dispatchEvent(new Event('input')); })()")
    assert browser.evaluate("document.getElementById('shown-count').textContent") == "showing 3 of 6 clusters"
    browser.evaluate("(() => { const e = document.getElementById('min-size'); e.value = '0'; e.dispatchEvent(new Event('input')); })()")

    # hovering a point of the PCA map names its cluster
    x, y, cluster = browser.evaluate(
        "(() => { const img = document.querySelector('.map[data-map=pca] img'); img.scrollIntoView({block: 'center'});"
        " const r = img.getBoundingClientRect(); const p = JSON.parse(document.getElementById('report-data').textContent).maps.pca;"
        " return [r.left + p[0] * r.width / img.naturalWidth, r.top + p[1] * r.height / img.naturalHeight, p[2]]; })()"
    )
    browser.mouse(x, y)
    tip = browser.evaluate("(() => { const t = document.querySelector('.map[data-map=pca] .tooltip'); return [t.style.display, t.textContent]; })()")
    assert tip[0] == "block" and tip[1].startswith(f"cluster {cluster} (")

    browser.evaluate("window.scrollTo(0, 0)")
    shot = os.environ.get("REPORT_SCREENSHOT") or str(tmp_path / "report.png")
    browser.screenshot(shot)
    assert os.path.getsize(shot) > 10000
    assert load_ms < 2000


def test_in_chromium_100_clusters_of_32_cubed_load_fast_and_stay_small(tmp_path, browser):
    rng = np.random.default_rng(3)
    sizes = [int(s) for s in rng.integers(1, 20, 100)]
    root = make_run(tmp_path / "big", sizes, n=32, texture=True)
    started = time.perf_counter()
    path = write_report(root, tsne=False)
    build_s = time.perf_counter() - started
    size_mb = os.path.getsize(path) / 1e6
    load_ms = browser.open(path)
    images = browser.evaluate(IMAGES_STATE)
    assert len(images) == sum(4 + min(4, int(s)) for s in sizes) + 2
    assert all(complete and width > 0 for complete, width, _ in images)
    print(f"100 clusters of 32^3: {size_mb:.2f} MB, built in {build_s:.1f} s, loaded in Chromium in {load_ms:.0f} ms")
    assert size_mb < 20
    assert load_ms < 2000
