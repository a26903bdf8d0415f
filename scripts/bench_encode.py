#!/usr/bin/env python
"""Encoding and k-means of many subvolumes from a store: peak memory and time at several sizes.

For each size N (default 10,000, 50,000 and 200,000 subvolumes of 32^3,
stored as float16), this

1. builds a store of random subvolumes (noise around a few dark blocks, in
   parts of 10,000 as if from that many tomograms), in its own process;
2. in a fresh process, builds the default autoencoder (untrained: speed and
   memory do not depend on the weights), opens the store and runs what a
   ``train``/``cluster`` run does after training, one stage at a time:
   encoding (:func:`autoencoder3d.network.train.encode`), the code statistics,
   k-means (``cluster_encodings``, ``--kmeans auto``) and the PCA baseline with its
   stability reruns (``run_baseline``);
3. records each stage's wall time and the process's peak resident memory
   (``getrusage`` ``ru_maxrss``) after it.

The store is removed after its size is measured unless ``--keep``. The
machine's load average (``os.getloadavg``) is recorded before and after each
size: on shared cores, times depend on it; the peak memory does not.

Usage:
  python scripts/bench_encode.py WORKDIR                        # 10k, 50k, 200k (about 13 GB of disk at 200k)
  python scripts/bench_encode.py WORKDIR --sizes 2000,10000     # quicker
  python scripts/bench_encode.py WORKDIR --codes 100000,1000000  # k-means alone on random codes
Results: WORKDIR/bench_encode.json and a Markdown table on stdout.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

PART = 10_000  # subvolumes per part (tomogram) of the store


class RandomVolumes:
    """``(n, box, box, box)`` float32 subvolumes made on demand: noise, half of them with a dark block."""

    def __init__(self, n, box, seed=0):
        self.n, self.box, self.seed = int(n), int(box), int(seed)
        self.shape = (self.n, self.box, self.box, self.box)
        self.dtype = np.dtype(np.float32)

    def __len__(self):
        return self.n

    def __getitem__(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng([self.seed, int(rows[0]) if len(rows) else 0])
        out = rng.normal(0.0, 1.0, (len(rows),) + self.shape[1:]).astype(np.float32)
        q = self.box // 4
        dark = rows % 2 == 0
        out[dark, q : 3 * q, q : 3 * q, q : 2 * q] -= 1.0
        return out


def build(path, n, box, dtype):
    from autoencoder3d.data.store.store import store_from_set
    from autoencoder3d.volume import SubvolumeSet

    started = time.perf_counter()
    subvolumes = SubvolumeSet(
        uuids=[f"p{i:07d}" for i in range(n)], volumes=RandomVolumes(n, box), centers=np.zeros((n, 3)),
        tomograms=np.array([f"TS_{i // PART:03d}" for i in range(n)], dtype=object),
    )
    store_from_set(path, subvolumes, dtype=dtype, block=1024)
    return {"build_s": round(time.perf_counter() - started, 1), "build_peak_rss_mb": _peak_mb()}


def measure_codes(n, k, seed, dim=32):
    """k-means, code statistics and the stability reruns alone, on ``n`` codes drawn around ``k`` centres."""
    from autoencoder3d.clustering.baseline import stability
    from autoencoder3d.clustering.kmeans import cluster_encodings
    from autoencoder3d.network.codes import describe_codes

    rng = np.random.default_rng(seed)
    codes = (rng.normal(0, 1, (k, dim))[rng.integers(0, k, n)] + rng.normal(0, 0.3, (n, dim))).astype(np.float32)
    uuids = [f"p{i:07d}" for i in range(n)]
    stages = []
    for name, run in (("code statistics", lambda: describe_codes(codes, k)),
                      ("k-means", lambda: cluster_encodings(codes, uuids, k, seed=seed)),
                      ("stability (3 seeds)", lambda: stability(codes, k, seed))):
        started = time.perf_counter()
        out = run()
        stages.append({"stage": name, "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": _peak_mb(),
                       **({"method": out.method} if hasattr(out, "method") else {})})
    return {"n": n, "k": k, "codes_mb": round(codes.nbytes / 2**20, 1), "stages": stages, "peak_rss_mb": _peak_mb()}


def measure(path, k, batch, seed, filters=None):
    import keras

    from autoencoder3d.clustering.baseline import run_baseline
    from autoencoder3d.clustering.kmeans import cluster_encodings
    from autoencoder3d.data.open import open_data
    from autoencoder3d.network.codes import describe_codes
    from autoencoder3d.network.model import build_autoencoder, standardization
    from autoencoder3d.network.train import encode

    result, stages = {"keras_backend": keras.backend.backend()}, []

    def stage(name, started, **extra):
        stages.append({"stage": name, "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": _peak_mb(),
                       "rss_mb": _rss_mb(), **extra})

    started = time.perf_counter()
    subvolumes = open_data(path)
    stage("open (store check)", started)
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    _, encoder, _, _ = build_autoencoder(subvolumes.v_siz, **({"filters": filters} if filters else {}))
    stage("build model", started)
    started = time.perf_counter()
    codes = encode(encoder, subvolumes.volumes, batch)
    stage("encode", started, per_s=round(len(codes) / max(time.perf_counter() - started, 1e-9), 1))
    started = time.perf_counter()
    stats = describe_codes(codes, k)
    stage("code statistics", started, distinct_codes=stats["distinct_codes"])
    started = time.perf_counter()
    clustering = cluster_encodings(codes, subvolumes.uuids, k, seed=seed)
    stage("k-means", started, method=clustering.method, k=k)
    started = time.perf_counter()
    mean, std = standardization(encoder)
    record, _ = run_baseline(subvolumes.volumes, subvolumes.uuids, codes, clustering.labels, sorted(clustering.members), k,
                             seed=seed, mean=mean, std=std)
    stage("PCA baseline + stability", started, fitted_on=record["fitted_on"])
    result.update(n=len(subvolumes), stages=stages, peak_rss_mb=_peak_mb(), codes_mb=round(codes.nbytes / 2**20, 1))
    return result


def _peak_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _rss_mb():
    with open("/proc/self/statm") as handle:
        return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _du_gb(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return round(total / 1e9, 2)


def _child(args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filters", type=int, help="filters of the encoder (default: the published 32)")
    parser.add_argument("--codes", help="instead: k-means alone on this many random 32-number codes (comma-separated sizes)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--codes-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    store = lambda n: os.path.join(args.workdir, f"random_{args.box}_{n}.zarr")  # noqa: E731
    if args.codes_one:
        print(json.dumps(measure_codes(args.codes_one, args.k, args.seed)))
        return
    if args.build:
        print(json.dumps(build(store(args.build), args.build, args.box, args.dtype)))
        return
    if args.measure:
        print(json.dumps(measure(args.workdir, args.k, args.batch, args.seed, args.filters)))
        return
    os.makedirs(args.workdir, exist_ok=True)
    if args.codes:
        for n in [int(s) for s in args.codes.split(",")]:
            row = {"load_before": [round(x, 2) for x in os.getloadavg()]}
            row.update(_child([args.workdir, "--codes-one", str(n), "--k", str(args.k), "--seed", str(args.seed)]))
            row["load_after"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(row), flush=True)
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        row = {"n": n, "box": args.box, "dtype": args.dtype, "filters": args.filters or 32, "load_before": [round(x, 2) for x in os.getloadavg()]}
        if not os.path.isdir(store(n)):
            row.update(_child([args.workdir, "--build", str(n), "--box", str(args.box), "--dtype", args.dtype]))
        row["store_gb"] = _du_gb(store(n))
        row.update(_child([store(n), "--measure", "--k", str(args.k), "--batch", str(args.batch), "--seed", str(args.seed),
                           *(["--filters", str(args.filters)] if args.filters else [])]))
        row["load_after"] = [round(x, 2) for x in os.getloadavg()]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(store(n))
        with open(os.path.join(args.workdir, "bench_encode.json"), "w") as handle:
            json.dump(rows, handle, indent=1)
    _table(rows)


def _table(rows):
    print("\n| subvolumes | store | " + " | ".join(s["stage"] for s in rows[0]["stages"]) + " | peak RSS | load (1/5/15 min) |")
    print("|---" * (len(rows[0]["stages"]) + 4) + "|")
    for row in rows:
        cells = [f"{s['seconds']} s" + (f" ({s['method']})" if "method" in s else "") for s in row["stages"]]
        print(f"| {row['n']:,} | {row['store_gb']} GB | " + " | ".join(cells)
              + f" | {row['peak_rss_mb']:,.0f} MB | {row['load_before']} -> {row['load_after']} |")


if __name__ == "__main__":
    main()
