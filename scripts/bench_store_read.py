#!/usr/bin/env python
"""How fast a store feeds training: one subvolume per chunk (layout 1) against many (layout 2), measured in one run.

On N random float32 subvolumes (default 3,000 of 32^3, which do not compress,
like tomogram noise), written once in each layout, this measures

1. the disk's sequential read rate of each store's chunk files (every file in
   turn, whole), cold (page cache dropped: ``/proc/sys/vm/drop_caches`` as root,
   else ``posix_fadvise`` on each file) and warm;
2. an epoch of training batches (128) read from each store in the order
   training takes them (:func:`~autoencoder3d.network.batches.epoch_order`:
   a permutation for layout 1; chunk order and a shuffle buffer for layout 2),
   as training reads them (``ArrayBatches`` batches through ``stream``), in
   this thread and with training's 2 threads reading ahead, cold and warm, in
   subvolumes/s and MB/s, and cold batch reads as a fraction of the cold
   sequential rate of the same files;
3. training samples/s through the training pipeline (``training_dataset``,
   2 read threads) from memory and from the layout-2 store (its files evicted
   from the page cache before every store epoch), interleaved (which goes
   first alternates), after one traced warm-up step.

The machine's load average is recorded before and after. Results: WORKDIR/reads.json and lines on stdout.

Usage: python scripts/bench_dataset.py WORKDIR --reads [--n 3000] [--box 32] [--train-samples 256]
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def drop_cache(paths, everything=True):
    """Empty the page cache (``everything``, as root: file pages, folders and inodes), or evict ``paths``
    from it (their pages are clean after the sync)."""
    os.sync()
    try:
        if not everything:
            raise PermissionError
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return "drop_caches"
    except OSError:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"


def chunk_files(store):
    found = []
    for root, _, names in os.walk(os.path.join(store, "parts")):
        if os.path.basename(root) == "volumes":
            found += sorted((os.path.join(root, n) for n in names if not n.startswith(".")), key=lambda p: int(os.path.basename(p).split(".")[0]))
    return found


def sequential_mb_s(files):
    started, total = time.perf_counter(), 0
    for path in files:
        with open(path, "rb", buffering=0) as handle:
            while block := handle.read(8 << 20):
                total += len(block)
    return total / (time.perf_counter() - started) / 1e6


def epoch_reads(store, batch, seed=0, threads=0):
    """(subvolumes/s, MB/s) reading one epoch of training batches from a freshly opened store: in this thread
    (``threads`` 0), or as training reads them, ``threads`` threads reading ahead (:func:`~autoencoder3d.network.batches.stream`)."""
    from autoencoder3d.data.store.read import open_store
    from autoencoder3d.network.batches import stream
    from autoencoder3d.network.train import ArrayBatches

    volumes = open_store(store).volumes
    batches = ArrayBatches(volumes, np.arange(len(volumes)), batch, shuffle=True, seed=seed)
    started = time.perf_counter()
    for _ in stream(batches, [0], threads):
        pass
    seconds = time.perf_counter() - started
    per = int(np.prod(volumes.shape[1:])) * volumes.stored_dtype.itemsize
    return len(volumes) / seconds, len(volumes) * per / seconds / 1e6


def training_rates(store, volumes, samples, batch, rounds):
    """Samples/s of training epochs of ``samples`` from memory and from the store, interleaved (same model, same batches)."""
    import keras

    from autoencoder3d.data.store.read import open_store
    from autoencoder3d.network.batches import READ_THREADS, training_dataset
    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import ArrayBatches, published_optimizer

    keras.utils.set_random_seed(0)
    models = build_autoencoder(volumes.shape[1:], 32, mean=0.0, std=1.0)
    models.trainer.compile(optimizer=published_optimizer(), loss="mse")
    rates = {"memory": [], "store": []}
    files = chunk_files(store)
    warm = ArrayBatches(volumes[:batch], np.arange(batch), batch, shuffle=True)
    models.trainer.fit(training_dataset(warm, 0, 1, READ_THREADS), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # tracing
    for epoch in range(rounds):
        for name in ("memory", "store")[:: 1 if epoch % 2 == 0 else -1]:  # alternate which goes first: drift in load hits both alike
            source = volumes[:samples] if name == "memory" else open_store(store).volumes
            batches = ArrayBatches(source, np.arange(samples), batch, shuffle=True, seed=1, epoch=epoch)
            if name == "store":
                drop_cache(files, everything=False)  # this store's pages only: other jobs on the machine keep theirs
            started = time.perf_counter()
            models.trainer.fit(training_dataset(batches, epoch, epoch + 1, READ_THREADS), steps_per_epoch=len(batches),
                               epochs=epoch + 1, initial_epoch=epoch, verbose=0, shuffle=False)
            rates[name].append(samples / (time.perf_counter() - started))
    return {name: float(np.mean(values)) for name, values in rates.items()} | {"rounds": rates}


def run(work, n=3000, box=32, batch=128, train_samples=256, rounds=3):
    from autoencoder3d.data.store.store import store_from_set
    from autoencoder3d.volume import SubvolumeSet

    os.makedirs(work, exist_ok=True)
    result = {"n": n, "box": box, "batch": batch, "load_before": load(), "cpus": os.cpu_count()}
    volumes = np.random.default_rng(0).normal(size=(n, box, box, box)).astype(np.float32)
    subvolumes = SubvolumeSet(uuids=[f"p{i:07d}" for i in range(n)], volumes=volumes, centers=np.zeros((n, 3)))
    for version in (1, 2):
        store = os.path.join(work, f"layout{version}.zarr")
        shutil.rmtree(store, ignore_errors=True)
        started = time.perf_counter()
        manifest = store_from_set(store, subvolumes, version=version)
        files = chunk_files(store)
        row = {"write_s": time.perf_counter() - started, "files": len(files),
               "per_chunk": manifest.get("chunk_subvolumes", 1), "mb": sum(os.path.getsize(p) for p in files) / 1e6}
        row["cache_dropped_by"] = drop_cache(files)
        row["sequential_cold_mb_s"] = sequential_mb_s(files)
        row["sequential_warm_mb_s"] = sequential_mb_s(files)
        drop_cache(files)
        row["batches_cold_per_s"], row["batches_cold_mb_s"] = epoch_reads(store, batch)
        row["batches_warm_per_s"], row["batches_warm_mb_s"] = epoch_reads(store, batch)
        drop_cache(files)
        row["batches_2threads_cold_per_s"], row["batches_2threads_cold_mb_s"] = epoch_reads(store, batch, threads=2)
        row["batches_2threads_warm_per_s"], row["batches_2threads_warm_mb_s"] = epoch_reads(store, batch, threads=2)
        row["cold_over_sequential"] = row["batches_cold_mb_s"] / row["sequential_cold_mb_s"]
        row["cold_2threads_over_sequential"] = row["batches_2threads_cold_mb_s"] / row["sequential_cold_mb_s"]
        result[f"layout{version}"] = row
        print(f"layout {version}: {json.dumps(row)}", flush=True)
    if train_samples:
        result["training"] = training_rates(os.path.join(work, "layout2.zarr"), volumes, min(train_samples, n), batch, rounds)
        result["training"]["store_over_memory"] = result["training"]["store"] / result["training"]["memory"]
        print(f"training samples/s: {json.dumps(result['training'])}", flush=True)
    result["load_after"] = load()
    json.dump(result, open(os.path.join(work, "reads.json"), "w"), indent=1)
    print(f"load before: {result['load_before']}\nload after: {result['load_after']}")
    return result
