#!/usr/bin/env python
"""Data sets of many tomograms: speed and memory at two sizes 10x apart, measured in one run.

For each size N (default 20,000 and 200,000 subvolumes of 16^3 over 20
simulated tomograms; 32^3 with --box 32 when disk and time allow), this

1. simulates the tomograms (once) and writes a table ``tomogram,x,y,z`` of N
   centres drawn uniformly inside them (windows of a crowded cellular
   tomogram: the subvolumes' content is realistic, their number arbitrary);
2. builds the store: ``autoencoder3d dataset build --table ... --pose`` (extraction
   and pose normalization, tomogram by tomogram, in parallel);
3. measures the store's size, its read throughput (random batches of 128, as
   training reads them, and part by part) from a cold page cache, and the
   disk's sequential read speed on a file of the same size, in the same run;
4. trains 1 epoch from the store, encodes and clusters at k=100
   (``autoencoder3d train STORE None True 100 --epochs 1``), then encodes and
   clusters again at k=1000 (``autoencoder3d cluster``);
5. on the smaller size, compares training samples/s streaming from the store
   with the in-memory path (the same batches from a numpy array), interleaved
   in one process so that load on the machine affects both alike.

Every step runs in its own process; its peak resident memory is the largest
sum of RSS over the process and its children, sampled every 0.2 s.

A separate check (``--same``) trains the same seed on a simulated pickle and on
the store converted from it and compares the clusters (ARI), with the ground
truth's ARI of each and of k-means on PCA of the raw voxels.

Usage:
  python scripts/bench_dataset.py WORKDIR                       # 20k and 200k, 16^3 (hours on 2 cores)
  python scripts/bench_dataset.py WORKDIR --sizes 2000,20000    # quicker
  python scripts/bench_dataset.py WORKDIR --same                # the store-vs-pickle clusters only
  python scripts/bench_dataset.py WORKDIR --reads               # store layouts 1 and 2: disk, batch and training rates
Results: WORKDIR/bench.json and a Markdown table on stdout.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


# ---------------------------------------------------------------- measuring a process tree


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid):
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_kb(current)
        todo.extend(_children(current))
    return total


def run_measured(command, log_path):
    """Run ``command``; return (seconds, peak RSS of its process tree in MB); raise on failure."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        peak = [0]

        def sample():
            while process.poll() is None:
                peak[0] = max(peak[0], tree_rss_kb(process.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        sampler.join()
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}; see {log_path}")
    return seconds, peak[0] / 1024


def cli(*args):
    return [sys.executable, "-m", "autoencoder3d", *[str(a) for a in args]]


# ---------------------------------------------------------------- data


def simulate_tomograms(folder, count, box, seed=0):
    from autoencoder3d.simulate.dataset import simulate_dataset

    paths = []
    for i in range(count):
        out = os.path.join(folder, f"TS_{i + 1:02d}")
        if not os.path.isfile(os.path.join(out, "tomogram.rec")):
            simulate_dataset(out, seed=seed + i, box=box, shape=(256, 256, 96), copies=30, snr=0.3)
        named = f"{out}.rec"  # a data set names each tomogram after its file
        if not os.path.lexists(named):
            os.symlink(os.path.join(out, "tomogram.rec"), named)
        paths.append(named)
    return paths


def write_table(path, tomograms, n, box, seed=0):
    from autoencoder3d.formats.mrc import read_tomogram

    rng = np.random.default_rng(seed)
    per = np.full(len(tomograms), n // len(tomograms))
    per[: n % len(tomograms)] += 1
    with open(path, "w") as handle:
        handle.write("tomogram,x,y,z\n")
        for tomogram, count in zip(tomograms, per):
            shape = read_tomogram(tomogram).shape
            centres = np.stack([rng.integers(box // 2, s - box // 2, count) for s in shape], axis=1)
            for x, y, z in centres:
                handle.write(f"{tomogram},{x},{y},{z}\n")


# ---------------------------------------------------------------- reading speed


def _drop_cache(paths):
    """Evict ``paths`` from the page cache (no root needed: their pages are clean after the sync)."""
    from bench_store_read import drop_cache

    drop_cache(paths, everything=False)


def _store_files(store):
    return [os.path.join(root, name) for root, _, names in os.walk(store) for name in names]


def disk_sequential_mb_s(folder, size_bytes):
    """Sequential read speed of a new file of ``size_bytes`` from a cold cache."""
    path = os.path.join(folder, "disk-speed.bin")
    block = np.random.default_rng(0).integers(0, 255, 1 << 24, dtype=np.uint8).tobytes()
    with open(path, "wb") as handle:
        for _ in range(max(1, size_bytes // len(block))):
            handle.write(block)
    _drop_cache([path])
    started = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(1 << 24):
            total += len(chunk)
    seconds = time.perf_counter() - started
    os.remove(path)
    return total / seconds / 1e6


def store_read_mb_s(store, batches=100, batch=128, seed=0):
    """(random-batch MB/s, part-by-part MB/s) reading the store's volumes from a cold cache."""
    from autoencoder3d.data.open import open_data

    volumes = open_data(store).volumes
    per = int(np.prod(volumes.shape[1:])) * volumes.stored_dtype.itemsize
    rng = np.random.default_rng(seed)
    _drop_cache(_store_files(store))
    started = time.perf_counter()
    for _ in range(batches):
        volumes[np.sort(rng.choice(len(volumes), batch, replace=False))]
    random_rate = batches * batch * per / (time.perf_counter() - started) / 1e6
    _drop_cache(_store_files(store))
    started = time.perf_counter()
    count = min(len(volumes), 50_000)
    for lo in range(0, count, 1024):
        volumes[lo : min(lo + 1024, count)]
    sequential_rate = count * per / (time.perf_counter() - started) / 1e6
    return random_rate, sequential_rate


# ---------------------------------------------------------------- training speed, in memory vs streamed


def training_speed(store, steps, batch, rounds=2):
    """Samples/s of training steps on the same batches from memory and from the store, interleaved."""
    import keras

    from autoencoder3d.data.open import open_data
    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import ArrayBatches, published_optimizer

    on_disk = open_data(store).volumes
    n = min(len(on_disk), steps * batch)
    in_memory = on_disk[np.arange(n)]
    keras.utils.set_random_seed(0)
    models = build_autoencoder(on_disk.shape[1:], 32, mean=float(in_memory.mean()), std=float(in_memory.std()))
    models.trainer.compile(optimizer=published_optimizer(), loss="mse")
    rates = {"memory": [], "store": []}
    warm = ArrayBatches(in_memory, np.arange(2 * batch), batch, shuffle=True)
    models.trainer.fit(warm, epochs=1, verbose=0, shuffle=False)  # build and trace once
    for _ in range(rounds):
        for name, volumes in (("memory", in_memory), ("store", on_disk)):
            data = ArrayBatches(volumes, np.arange(n), batch, shuffle=True, seed=1)
            started = time.perf_counter()
            models.trainer.fit(data, epochs=1, verbose=0, shuffle=False)
            rates[name].append(n / (time.perf_counter() - started))
    return {name: float(np.mean(values)) for name, values in rates.items()}


# ---------------------------------------------------------------- building and reading a store


def build_and_read(folder, table, store, tomograms, n, args, row):
    """Build the store of ``n`` subvolumes and measure it: build time and memory, size, read speeds."""
    write_table(table, tomograms, n, args.box)
    shutil.rmtree(store, ignore_errors=True)
    build = ["dataset", "build", store, "--table", table, "--box", args.box, "--workers", args.workers, "--dtype", args.dtype]
    row["build_s"], row["build_rss_mb"] = run_measured(cli(*build, *(["--pose"] if args.pose else []), "-q"), os.path.join(folder, "build.log"))
    print(f"n={n}: built in {row['build_s']:.0f} s, peak {row['build_rss_mb']:.0f} MB", flush=True)
    row["store_mb"] = sum(os.path.getsize(p) for p in _store_files(store)) / 1e6
    row["read_random_mb_s"], row["read_parts_mb_s"] = store_read_mb_s(store)
    row["disk_mb_s"] = disk_sequential_mb_s(folder, min(int(row["store_mb"] * 1e6), 4 << 30))


# ---------------------------------------------------------------- the largest size, without a full epoch


def large_stages(store, model_dir, steps, batch, out_json):
    """At a size whose full epoch does not fit the session: every stage but the whole epoch, streamed.

    Encodes every subvolume with the encoder trained at the smaller size, runs
    k-means at k=100 and k=1000 on those codes (the pipeline's functions), and
    times ``steps`` training steps streamed from the store; writes the timings.
    """
    import keras

    from autoencoder3d.clustering.kmeans import cluster_encodings
    from autoencoder3d.data.open import open_data
    from autoencoder3d.network.train import ArrayBatches, encode, load_saved_models, published_optimizer

    subvolumes = open_data(store)
    _, encoder, _ = load_saved_models(model_dir, subvolumes.v_siz)
    result = {}
    started = time.perf_counter()
    codes = encode(encoder, subvolumes.volumes, batch)
    result["encode_s"] = time.perf_counter() - started
    for k in (100, 1000):
        if k > len(codes):
            continue
        started = time.perf_counter()
        clustering = cluster_encodings(codes, subvolumes.uuids, k, seed=0)
        result[f"kmeans{k}_s"], result[f"kmeans{k}_method"] = time.perf_counter() - started, clustering.method
    autoencoder = load_saved_models(model_dir, subvolumes.v_siz)[0]
    autoencoder.compile(optimizer=published_optimizer(), loss="mse")
    data = ArrayBatches(subvolumes.volumes, np.arange(len(subvolumes)), batch, shuffle=True, seed=0)
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    autoencoder.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    result["train_samples_per_s"] = steps * batch / (time.perf_counter() - started)
    result["epoch_s_extrapolated"] = len(subvolumes) / result["train_samples_per_s"]
    json.dump(result, open(out_json, "w"))


def bench_large(work, tomograms, n, model_dir, args):
    folder = os.path.join(work, f"n{n}")
    os.makedirs(folder, exist_ok=True)
    table, store = os.path.join(folder, "particles.csv"), os.path.join(folder, "data.zarr")
    row = {"n": n, "box": args.box, "tomograms": len(tomograms), "k_large": 1000, "train_steps": args.large_steps}
    build_and_read(folder, table, store, tomograms, n, args, row)
    out = os.path.join(folder, "large.json")
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import bench_dataset as b; "
            f"b.large_stages({store!r}, {model_dir!r}, {args.large_steps}, {args.batch}, {out!r})")
    row["large_total_s"], row["large_rss_mb"] = run_measured([sys.executable, "-c", code], os.path.join(folder, "large.log"))
    large = json.load(open(out))
    row.update(encode_s=large["encode_s"], kmeans100_s=large["kmeans100_s"], kmeans1000_s=large["kmeans1000_s"],
               kmeans1000_method=large["kmeans1000_method"], train_samples_per_s=large["train_samples_per_s"],
               train_s=large["epoch_s_extrapolated"], train_rss_mb=row["large_rss_mb"], cluster1000_rss_mb=row["large_rss_mb"])
    return row


# ---------------------------------------------------------------- one size


def bench_size(work, tomograms, n, args):
    folder = os.path.join(work, f"n{n}")
    os.makedirs(folder, exist_ok=True)
    table = os.path.join(folder, "particles.csv")
    store = os.path.join(folder, "data.zarr")
    run = os.path.join(folder, "run")
    row = {"n": n, "box": args.box, "tomograms": len(tomograms)}
    shutil.rmtree(run, ignore_errors=True)
    build_and_read(folder, table, store, tomograms, n, args, row)
    train = ["train", store, "None", str(args.pose), 100, "--epochs", 1, "--batch-size", args.batch, "--seed", 0, "--out", run, "-q"]
    row["train_total_s"], row["train_rss_mb"] = run_measured(cli(*train), os.path.join(folder, "train.log"))
    timings = json.load(open(os.path.join(run, "run.json")))["timings"]
    row.update(train_s=timings["train_s"], encode_s=timings["encode_s"], kmeans100_s=timings["kmeans_s"])
    print(f"n={n}: trained 1 epoch in {row['train_s']:.0f} s, peak {row['train_rss_mb']:.0f} MB", flush=True)
    row["k_large"] = min(1000, n // 2)  # tiny trial sizes only
    cluster = ["cluster", store, "None", str(args.pose), row["k_large"], "--batch-size", args.batch, "--seed", 0, "--out", run, "-q"]
    row["cluster1000_total_s"], row["cluster1000_rss_mb"] = run_measured(cli(*cluster), os.path.join(folder, "cluster.log"))
    record = json.load(open(os.path.join(run, "run.json")))
    row.update(kmeans1000_s=record["timings"]["kmeans_s"], kmeans1000_method=record.get("kmeans_method"))
    return row


def speed_row(work, n, args):
    store = os.path.join(work, f"n{n}", "data.zarr")
    code = (f"import json, sys; sys.path.insert(0, {HERE!r}); import bench_dataset as b; "
            f"print(json.dumps(b.training_speed({store!r}, {args.speed_steps}, {args.batch})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- same clusters from the store as from the pickle


def same_clusters(work, args):
    from sklearn.metrics import adjusted_rand_score

    from autoencoder3d.clustering.evaluate import baseline_clusters, load_truth, true_classes
    from autoencoder3d.formats.subvolume_pickle import load_pickle, load_subvolumes
    from autoencoder3d.simulate.dataset import simulate_dataset

    folder = os.path.join(work, "same")
    sim = os.path.join(folder, "sim")
    if not os.path.isfile(os.path.join(sim, "truth.json")):
        simulate_dataset(sim, seed=7, box=16, voxel_size=20.0, shape=(400, 400, 240), copies=50, snr=0.5)  # as scripts/bench_science.py
    pickle_path = os.path.join(sim, "subvolumes_example_1.pickle")
    store = os.path.join(folder, "data.zarr")
    shutil.rmtree(store, ignore_errors=True)
    subprocess.run(cli("dataset", "convert", pickle_path, store, "-q"), check=True)
    labels = {}
    for name, data in (("pickle", pickle_path), ("store", store)):
        run = os.path.join(folder, f"run-{name}")
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run(cli("train", data, "None", "False", 6, "--epochs", args.same_epochs, "--batch-size", 32, "--seed", 0, "--out", run, "-q"), check=True)
        members = load_pickle(os.path.join(run, "clus-center", "kmeans.pickle"))
        labels[name] = {u: k for k, us in members.items() for u in us}
    subvolumes = load_subvolumes(pickle_path)
    truth = true_classes(load_truth(os.path.join(sim, "truth.json")), subvolumes.uuids)
    pca = baseline_clusters(subvolumes.volumes, 6, seed=0)
    as_list = {name: [found[u] for u in subvolumes.uuids] for name, found in labels.items()}
    return {
        "n": len(subvolumes), "epochs": args.same_epochs,
        "ari_store_vs_pickle": adjusted_rand_score(as_list["pickle"], as_list["store"]),
        "ari_truth_pickle": adjusted_rand_score(truth, as_list["pickle"]),
        "ari_truth_store": adjusted_rand_score(truth, as_list["store"]),
        "ari_truth_pca_raw": adjusted_rand_score(truth, pca),
    }


# ---------------------------------------------------------------- main


def _epoch(row):
    if "train_steps" in row:
        return f"{row['train_s']:.0f} s (from {row['train_steps']} steps at {row['train_samples_per_s']:.0f}/s)"
    return f"{row['train_s']:.0f} s"


def table(rows, speed):
    lines = ["| subvolumes | build (extract + pose) | peak RSS build | store size | read: random batches / parts / disk sequential | "
             "1 epoch train | peak RSS train | encode | k-means k=100 | k-means k=1000 | peak RSS cluster |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} x {r['box']}^3 | {r['build_s']:.0f} s | {r['build_rss_mb']:.0f} MB | {r['store_mb'] / 1e3:.2f} GB | "
            f"{r['read_random_mb_s']:.0f} / {r['read_parts_mb_s']:.0f} / {r['disk_mb_s']:.0f} MB/s | {_epoch(r)} | "
            f"{r['train_rss_mb']:.0f} MB | {r['encode_s']:.0f} s | {r['kmeans100_s']:.1f} s | {r['kmeans1000_s']:.1f} s ({r['kmeans1000_method']}"
            f"{'' if r['k_large'] == 1000 else ', k=' + str(r['k_large'])}) | "
            f"{r['cluster1000_rss_mb']:.0f} MB |"
        )
    if speed:
        ratio = speed["store"] / speed["memory"]
        lines.append(f"\nTraining samples/s (same batches, interleaved): in memory {speed['memory']:.1f}, streamed from the store "
                     f"{speed['store']:.1f} ({ratio:.2f} x).")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work")
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--tomograms", type=int, default=20)
    parser.add_argument("--box", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--no-pose", dest="pose", action="store_false")
    parser.add_argument("--speed-steps", type=int, default=40)
    parser.add_argument("--large", type=int, default=0, help="a further size run without a full epoch (see large_stages)")
    parser.add_argument("--large-steps", type=int, default=100)
    parser.add_argument("--same", action="store_true", help="only the store-vs-pickle clusters")
    parser.add_argument("--same-epochs", type=int, default=3)
    parser.add_argument("--reads", action="store_true", help="only store read rates by layout (scripts/bench_store_read.py)")
    parser.add_argument("--n", type=int, default=3000, help="--reads: subvolumes (of --box, default 32 there)")
    parser.add_argument("--train-samples", type=int, default=256, help="--reads: samples per training epoch (0: none)")
    args = parser.parse_args()
    if args.reads:  # scripts/bench_store_read.py
        return __import__("bench_store_read").run(args.work, args.n, 32 if "--box" not in sys.argv else args.box, args.batch, args.train_samples)
    os.makedirs(args.work, exist_ok=True)
    results = {}
    if args.same:
        results["same"] = same_clusters(args.work, args)
        print(json.dumps(results["same"], indent=1))
    else:
        tomograms = simulate_tomograms(os.path.join(args.work, "tomograms"), args.tomograms, args.box)
        sizes = [int(s) for s in args.sizes.split(",")]
        results["rows"] = []
        for n in sizes:
            results["rows"].append(bench_size(args.work, tomograms, n, args))
            json.dump(results, open(os.path.join(args.work, "bench.json"), "w"), indent=1)
            if n == sizes[0]:
                results["speed"] = speed_row(args.work, n, args)
                print(f"training samples/s: {results['speed']}", flush=True)
        if args.large:
            model_dir = os.path.join(args.work, f"n{sizes[-1]}", "run", "model")
            results["rows"].append(bench_large(args.work, tomograms, args.large, model_dir, args))
        print(table(results["rows"], results.get("speed")))
    json.dump(results, open(os.path.join(args.work, "bench-same.json" if args.same else "bench.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
