#!/usr/bin/env python
"""Benchmark of the cluster report at 10^5 - 10^6 subvolumes; prints a short table.

Builds a run folder as ``autoencoder3d train`` leaves it, without training:
N encodings (a mixture of k Gaussian clusters) clustered by the real
``cluster_encodings`` (MiniBatchKMeans), written by the real writers
(``write_cluster_pickles``, ``save_encodings``) with small synthetic decoded
centres, and the subvolumes in a real on-disk store (T tomograms, float16,
SIDE^3 boxes) that ``run.json`` names as DATA. Then measures, on this machine:

1. ``write_report`` wall time and peak memory (RSS, in a child process);
2. the page's size in bytes;
3. its load time in headless Chromium (navigation start to the load event,
   median of 3 loads), when Chromium is installed.

Measured here (2 cores shared with other jobs, load average 5-11, so times are
upper bounds; N codes of length 32, 20 tomograms, 8^3 boxes, t-SNE on 1,000 and
PCA map on 5,000 points, 4 members per card):

| N | k | write_report | peak RSS | page | Chromium load |
|---|---|---|---|---|---|
| 100,000 | 100 | 20 s, 72 s | 283 MB | 670 KB | 638 ms, 752 ms |
| 1,000,000 | 100 | 41 s, 60 s | 717-750 MB | 670 KB | 372 ms, 710 ms |
| 1,000,000 | 1,000 | 80 s | 748 MB | 3.9 MB | 2,667 ms |

(two runs where two values are given; the spread is the machine's load.)
The code before this benchmark, on the same 10^6 / k=100 run: 51 s, peak RSS
1,674 MB (PCA by SVD of all N codes in float64), a 491 KB page without member
slices or per-tomogram counts (it could not read a store). The page grows with
k (one card per cluster), not with N. Building the 10^6-subvolume store took
995 s and MiniBatchKMeans 26 s (k=100) and 85 s (k=1000).

With the per-cluster measures, scale bars and location maps (``--tomogram-shape
1024,1024,200``: every tomogram of the store names one noise MRC file) see
docs/report.md: at 10^5 subvolumes, 13-17 s and a 2.3 MB page for k=100,
24-28 s and a 7.5 MB page (Chromium load 1.7 s) for k=1000.

Usage: python scripts/bench_report.py [--n 1000000] [--k 100] [--tomograms 20] [--side 8] [--folder DIR] [--json OUT.json]
       [--tomogram-shape X,Y,Z]
The folder is kept and reused (pass --rebuild to make it again).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))


def fake_codes(n, k, dim, seed=0):
    """(codes (n, dim) float32, true cluster of each) drawn from k Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, dim)).astype(np.float32)
    truth = rng.integers(0, k, n)
    codes = centres[truth] + rng.normal(0, 0.5, (n, dim)).astype(np.float32)
    return codes, truth


def write_tomogram_file(path, shape, seed=0):
    """A noise tomogram of ``shape`` (x, y, z) as an MRC file, written slice by slice (float32, 10 A voxels)."""
    import mrcfile

    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=tuple(reversed(shape)), mrc_mode=2, overwrite=True) as mrc:
        for z in range(shape[2]):
            mrc.data[z] = rng.normal(0, 1, (shape[1], shape[0])).astype(np.float32)
        mrc.voxel_size = 10.0


def build_store(path, uuids, names, side, block=4096, seed=0, tomogram=None, shape=(512, 512, 200)):
    """A store of len(uuids) noise boxes, one part per tomogram (names: each subvolume's tomogram, in runs).

    ``tomogram``: an MRC file every part names as its tomogram (None: no file), of ``shape``.
    """
    from autoencoder3d.data.store.store import PartWriter, create_store, finish_store

    rng = np.random.default_rng(seed)
    create_store(path, (side,) * 3, dtype="float16")
    runs = np.flatnonzero(np.r_[True, names[1:] != names[:-1], True])
    for part, (lo, hi) in enumerate(zip(runs[:-1], runs[1:])):
        info = {"name": str(names[lo]), "path": tomogram, "voxel_size": [10.0] * 3, "shape": list(shape)}
        with PartWriter(path, part, hi - lo, info, v_siz=(side,) * 3, dtype="float16") as writer:
            for start in range(lo, hi, block):
                stop = min(start + block, hi)
                volumes = rng.normal(0, 1, (stop - start,) + (side,) * 3).astype(np.float32)
                centres = rng.integers(0, min(shape), (stop - start, 3)).astype(float)
                writer.write(start - lo, volumes, uuids[start:stop], centres)
    finish_store(path, len(runs) - 1)


def decoded_centres(k, side):
    """Small synthetic decoded centres: dark balls of growing radius on a light background."""
    grid = np.linalg.norm(np.mgrid[:side, :side, :side] - (side - 1) / 2, axis=0)
    return np.stack([np.where(grid < 1 + c * side / (3 * k), -1.0, 0.2) for c in range(k)]).astype(np.float32)


def build_run(folder, n, k, n_tomograms, side, dim=32, store=None, tomogram_shape=None):
    from autoencoder3d.clustering.kmeans import cluster_encodings, write_cluster_pickles
    from autoencoder3d.report.page import save_encodings

    timings = {}
    os.makedirs(os.path.join(folder, "model"), exist_ok=True)
    codes, _ = fake_codes(n, k, dim)
    uuids = [f"p{i:07d}" for i in range(n)]
    names = np.array([f"TS_{t:03d}" for t in np.repeat(np.arange(n_tomograms), -(-n // n_tomograms))[:n]], dtype=object)
    if store is None or not os.path.isdir(store):  # --store reuses one made by an earlier run with the same --n, --tomograms, --side
        store = store or os.path.join(folder, "data.zarr")
        started = time.perf_counter()
        tomogram = None
        if tomogram_shape:
            tomogram = os.path.join(folder, "tomogram.mrc")
            write_tomogram_file(tomogram, tomogram_shape)
        build_store(store, uuids, names, side, tomogram=tomogram, shape=tomogram_shape or (512, 512, 200))
        timings["store_build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    clustering = cluster_encodings(codes, uuids, k, n_init=3, seed=0, method="minibatch")
    timings["kmeans_s"] = time.perf_counter() - started
    clus = os.path.join(folder, "clus-center")
    started = time.perf_counter()
    write_cluster_pickles(clus, clustering, decoded_centres(k, side))
    save_encodings(clus, uuids, codes, clustering.labels)
    timings["write_pickles_s"] = time.perf_counter() - started
    record = {
        "command": "train", "argv": ["autoencoder3d", "train", store, "None", "False", str(k)], "started": "2026-01-01T00:00:00+0000",
        "inputs": {"data": store, "tomogram": None, "pose": False, "n_clusters": k},
        "options": {"epochs": 1, "batch_size": 128, "n_init": 3, "encoding_dim": dim, "kmeans": "minibatch"}, "seed": 0,
        "n_subvolumes": n, "v_siz": [side] * 3, "voxel_size": [10.0] * 3, "training": {},
        "codes": {"active_code_units": dim, "distinct_codes": n},
        "cluster_sizes": {str(c): s for c, s in clustering.sizes().items()}, "kmeans_method": clustering.method, "timings": {},
    }
    with open(os.path.join(folder, "run.json"), "w") as handle:
        json.dump(record, handle)
    return timings


def time_report(folder):
    """write_report in a child process: (seconds, peak RSS in MB, page path)."""
    code = (
        "import json, resource, sys, time; from autoencoder3d.report.page import write_report; t = time.perf_counter(); "
        f"p = write_report({folder!r}); "
        "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, p]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def browser_load_ms(page, repeats=3):
    sys.path.append(os.path.join(HERE, ".."))  # after the code measured (PYTHONPATH), which it must not replace
    from tests.report.test_report import Chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        return None, None
    browser = Chromium(executable)
    try:
        times = [browser.open(page) for _ in range(repeats)]
        images = browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    finally:
        browser.close()
    return float(np.median(times)), images


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--tomograms", type=int, default=20)
    parser.add_argument("--side", type=int, default=8)
    parser.add_argument("--folder", default=None, help="run folder to build and reuse (default /tmp/bench-report-N-K)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--store", default=None, help="the data set store to use (made there when missing; default FOLDER/data.zarr)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--tomogram-shape", default=None, metavar="X,Y,Z",
                        help="write one noise MRC tomogram of this shape that every tomogram of the store names (the location maps read it)")
    args = parser.parse_args()
    folder = args.folder or f"/tmp/bench-report-{args.n}-{args.k}"
    result = {"n": args.n, "k": args.k, "tomograms": args.tomograms, "side": args.side, "cpus": os.cpu_count()}
    if args.rebuild or not os.path.isfile(os.path.join(folder, "run.json")):
        shape = [int(s) for s in args.tomogram_shape.split(",")] if args.tomogram_shape else None
        result.update(build_run(folder, args.n, args.k, args.tomograms, args.side, store=args.store, tomogram_shape=shape))
    seconds, rss_mb, page = time_report(folder)
    result.update(report_s=round(seconds, 2), report_peak_rss_mb=round(rss_mb), page_bytes=os.path.getsize(page))
    load_ms, images_ok = browser_load_ms(page)
    result.update(chromium_load_ms=None if load_ms is None else round(load_ms), chromium_images_ok=images_ok)
    for key, value in result.items():
        print(f"{key:24s} {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
