#!/usr/bin/env python
"""Benchmark of `autoencoder3d train`, measured in one run; prints a short table.

Measures, on this machine:
1. training samples/s and achieved GFLOP/s of the autoencoder (forward + backward
   counted as 3x the forward FLOPs), against TensorFlow's own float32 matmul GFLOP/s;
2. the whole train command's time beyond the training steps (loading, pose
   normalization, encoding, k-means, figures) as a fraction of its total;
3. pose normalization subvolumes/s with local smoothing against whole-tomogram
   smoothing, on a 512x512x200 tomogram with 500 particles, and whether the
   results are equal;
4. peak memory (RSS) of a train run in a child process against the raw bytes of
   its subvolumes.

Usage: python scripts/bench_train.py [--quick] [--json OUT.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def matmul_gflops(size=2048, repeats=10):
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        c = tf.matmul(a, b)
    c.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def training_throughput(n_samples, edge, batch_size, epochs):
    import keras

    from autoencoder3d.model import build_autoencoder, count_flops
    from autoencoder3d.train import ArrayBatches, published_optimizer

    keras.utils.set_random_seed(0)
    volumes = np.random.default_rng(0).normal(size=(n_samples, edge, edge, edge)).astype(np.float32)
    autoencoder, _, _ = build_autoencoder((edge,) * 3)
    autoencoder.compile(optimizer=published_optimizer(), loss="mse")
    data = ArrayBatches(volumes, np.arange(n_samples), batch_size, shuffle=True)
    autoencoder.fit(data, epochs=1, verbose=0)  # warm-up: tracing and allocation
    started = time.perf_counter()
    autoencoder.fit(data, epochs=epochs, verbose=0)
    rate = n_samples * epochs / (time.perf_counter() - started)
    x = volumes[..., None]
    autoencoder.fit(x, x, batch_size=batch_size, epochs=1, verbose=0)
    started = time.perf_counter()
    autoencoder.fit(x, x, batch_size=batch_size, epochs=epochs, verbose=0)
    numpy_rate = n_samples * epochs / (time.perf_counter() - started)
    gflops = rate * 3 * count_flops((edge,) * 3) / 1e9
    return rate, numpy_rate, gflops


def synthetic_tomogram(shape, n_particles, edge, seed=0):
    """Noise with dark ellipsoids; returns the tomogram and a SubvolumeSet cut around them."""
    from autoencoder3d.volume import SubvolumeSet, cut_box

    rng = np.random.default_rng(seed)
    tomo = rng.normal(scale=0.5, size=shape).astype(np.float32)
    margin = edge // 2 + 1
    centers = np.stack([rng.integers(margin, s - margin, n_particles) for s in shape], axis=1)
    grid = np.indices((11, 11, 11)).reshape(3, -1).T - 5
    for center in centers:
        radii = rng.uniform(2, 5, 3)
        inside = ((grid / radii) ** 2).sum(axis=1) <= 1
        points = center + grid[inside]
        tomo[points[:, 0], points[:, 1], points[:, 2]] -= 1.0
    volumes = np.stack([cut_box(tomo, c - edge // 2, edge, 0.0) for c in centers])
    uuids = [f"p{i:05d}" for i in range(n_particles)]
    return tomo, SubvolumeSet(uuids, volumes, centers.astype(float))


def _published_normalize(smoothed, center, mass, fill):
    """The published step: cut from the whole smoothed tomogram, rotate the whole box, crop."""
    import math

    from scipy import ndimage

    from autoencoder3d.pose import principal_axes
    from autoencoder3d.volume import cut_box

    shape = np.asarray(mass.shape)
    c, rm = principal_axes(mass)
    loc_r = rm.T @ ((shape - 1) / 2.0 - c)
    side = int(math.ceil((shape.max() + 2 * np.abs(loc_r).max()) * np.abs(rm @ np.ones(3)).max()))
    box = cut_box(smoothed, np.rint(center).astype(int) - int(math.ceil(side / 2)), side, fill)
    c1 = np.full(3, (side - 1) / 2.0)
    rotated = ndimage.affine_transform(box, rm, offset=c1 - rm @ (c1 + loc_r), output_shape=box.shape, cval=fill)
    s = side // 2 - int(math.ceil(shape[0] / 2))
    return rotated[s : s + shape[0], s : s + shape[1], s : s + shape[2]]


def pose_speed(shape, n_particles, edge):
    """Subvolumes/s: ours (local smoothing, 1 thread and all cores) and the published way."""
    from scipy import ndimage

    from autoencoder3d import pose

    tomo, subvolumes = synthetic_tomogram(shape, n_particles, edge)
    rates = {}
    for workers in (1, os.cpu_count()):
        started = time.perf_counter()
        local = pose.pose_normalize(subvolumes, tomo, workers=workers)
        rates[f"local_{workers}"] = n_particles / (time.perf_counter() - started)
    global_max = float(subvolumes.volumes.max())
    masses = [np.abs(global_max - v) for v in subvolumes.volumes]

    started = time.perf_counter()
    smoothed = ndimage.gaussian_filter(tomo, 2.0)
    fill = float(smoothed.mean())
    whole = np.stack([pose.normalize_one(smoothed, c, m, 0.0, fill)[0] for c, m in zip(subvolumes.centers, masses)])
    rates["whole_smoothing_1"] = n_particles / (time.perf_counter() - started)

    started = time.perf_counter()
    smoothed = ndimage.gaussian_filter(tomo, 2.0)
    fill = float(smoothed.mean())
    published = np.stack([_published_normalize(smoothed, c, m, fill) for c, m in zip(subvolumes.centers, masses)])
    rates["published_1"] = n_particles / (time.perf_counter() - started)
    diff = max(float(np.abs(local.volumes - whole).max()), float(np.abs(local.volumes - published).max()))
    return rates, diff


def train_command(workdir, n_samples, edge, epochs, tomo_shape):
    """Run `autoencoder3d train ... True 10` in a child process; return run.json and its peak RSS."""
    from autoencoder3d.io import save_subvolumes, write_mrc

    tomo, subvolumes = synthetic_tomogram(tomo_shape, n_samples, edge, seed=1)
    data, tomogram = os.path.join(workdir, "data.pickle"), os.path.join(workdir, "tomo.mrc")
    save_subvolumes(data, subvolumes)
    write_mrc(tomogram, tomo, voxel_size=10.0)
    del tomo, subvolumes
    out = os.path.join(workdir, f"run{n_samples}")
    args = ["train", data, tomogram, "True", "10", "--out", out, "--epochs", str(epochs), "--seed", "0", "-q"]
    child = (
        "import resource, sys; from autoencoder3d.cli.main import main; status = main(sys.argv[1:]); "
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(status)"
    )
    result = subprocess.run([sys.executable, "-c", child, *args], check=True, capture_output=True, text=True)
    peak_kib = int(result.stdout.split("PEAK_KIB")[-1].split()[0])
    with open(os.path.join(out, "run.json")) as handle:
        return json.load(handle), peak_kib * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    quick = args.quick
    rows, numbers = [], {}

    sizes = (200, 400) if quick else (600, 1800)
    runs = {}
    with tempfile.TemporaryDirectory() as workdir:
        for n in sizes:
            runs[n] = train_command(workdir, n, 32, 1 if quick else 2, (256, 256, 100) if quick else (512, 512, 200))
    n_cmd = sizes[-1]
    record, peak = runs[n_cmd]
    t = record["timings"]
    beyond = t["total_s"] - t["train_s"]
    per_epoch = t["train_s"] / max(1, record["training"]["epochs_run"])
    projected = beyond / (beyond + 100 * per_epoch)
    raw = {n: n * 32**3 * 4 for n in sizes}
    slope = (runs[sizes[1]][1] - runs[sizes[0]][1]) / (raw[sizes[1]] - raw[sizes[0]])
    numbers.update(command_subvolumes=n_cmd, command_total_s=t["total_s"], command_train_s=t["train_s"],
                   beyond_training_fraction=beyond / t["total_s"], beyond_training_fraction_100_epochs=projected,
                   peak_rss_bytes={n: runs[n][1] for n in sizes}, raw_subvolume_bytes=raw,
                   peak_per_raw_byte=slope, timings=t)

    pose_shape, pose_n = ((256, 256, 100), 100) if quick else ((512, 512, 200), 500)
    pose_rates, diff = pose_speed(pose_shape, pose_n, 32)
    numbers.update(pose_rates=pose_rates, pose_max_abs_diff=diff)

    gemm = matmul_gflops()
    rate, numpy_rate, gflops = training_throughput(256 if quick else 1024, 32, 128, 1 if quick else 2)
    numbers.update(matmul_gflops=gemm, train_samples_per_s=rate, train_samples_per_s_numpy_fit=numpy_rate, train_gflops=gflops)

    rows.append(("training samples/s (32^3, batch 128)", f"{rate:.1f}", f"plain numpy fit: {numpy_rate:.1f}"))
    rows.append(("training GFLOP/s / TF matmul GFLOP/s", f"{gflops:.1f} / {gemm:.1f}", f"ratio {gflops / gemm:.2f} (aim >= 0.8)"))
    rows.append((f"train command beyond training ({n_cmd} subvolumes)", f"{beyond:.1f} s of {t['total_s']:.1f} s",
                 f"fraction {beyond / t['total_s']:.2f} measured; {projected:.3f} projected at 100 epochs (aim <= 0.10)"))
    cores = os.cpu_count()
    rows.append((f"pose subvolumes/s, {pose_n} in {pose_shape}, ours", f"{pose_rates['local_1']:.1f} (1 thread)",
                 f"{pose_rates[f'local_{cores}']:.1f} with {cores} threads"))
    rows.append(("pose subvolumes/s, whole-tomogram smoothing", f"{pose_rates['whole_smoothing_1']:.1f} (1 thread)",
                 f"ours/whole: {pose_rates[f'local_{cores}'] / pose_rates['whole_smoothing_1']:.2f}; max |diff| {diff:.2g}"))
    rows.append(("pose subvolumes/s, published (whole + full-box rotation)", f"{pose_rates['published_1']:.1f} (1 thread)",
                 f"ours/published: {pose_rates[f'local_{cores}'] / pose_rates['published_1']:.2f} (aim >= 10)"))
    peaks = numbers["peak_rss_bytes"]
    rows.append(("peak RSS of train (GiB) at " + " / ".join(f"{n}" for n in sizes) + " subvolumes",
                 " / ".join(f"{peaks[n] / 2**30:.2f}" for n in sizes),
                 f"raw {raw[sizes[-1]] / 2**30:.2f} GiB; extra RSS per extra raw byte {slope:.2f} (aim <= 2 + 1.5 GB fixed)"))
    width = max(len(r[0]) for r in rows)
    print(f"machine: {os.cpu_count()} cores; numbers from one run")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>22}  {note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=2)


if __name__ == "__main__":
    main()
