#!/usr/bin/env python
"""Benchmark of `autoencoder3d train`, measured in one run; prints a short table.

Measures, on this machine:
1. training samples/s (32^3, batch 128) of the same training done five ways, interleaved:
   our input pipeline (one iterator per fit), Keras on the PyDataset (a new iterator
   every epoch), a bare Keras fit on numpy arrays, our pipeline with Keras's Conv3D as
   the output layer, and mixed bfloat16; the first batch's wait in each epoch;
   achieved GFLOP/s (forward + backward counted as 3x the forward FLOPs) against
   TensorFlow's Conv3D ops alone on the network's five convolutions; the output
   layer alone, Keras's Conv3D against ours; training with TF_ENABLE_ONEDNN_OPTS=1
   and =0 (child processes, alternated);
2. the whole train command's time beyond the training steps (loading, pose
   normalization, encoding, k-means, figures) as a fraction of its total;
3. pose normalization subvolumes/s with local smoothing against whole-tomogram
   smoothing, on a 512x512x200 tomogram with 500 particles, and whether the
   results are equal;
4. peak memory (RSS) of a train run in a child process against the raw bytes of
   its subvolumes.

Usage: python scripts/bench_train.py [--quick] [--parts fits,conv,steps,onednn,command] [--json OUT.json]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def epoch_times():
    """A Keras callback keeping, per epoch, the time to its first batch's end and its other batches' times."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.firsts, self.steps = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.last, self.first = time.perf_counter(), True

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            (self.firsts if self.first else self.steps).append(now - self.last)
            self.last, self.first = now, False

    return EpochTimes()


def _trainer(edge, output_layer=None, policy="float32"):
    import keras

    from autoencoder3d.network import model as model_module
    from autoencoder3d.network.train import published_optimizer

    keras.mixed_precision.set_global_policy(policy)
    saved = model_module.Conv3D
    if output_layer is not None:
        model_module.Conv3D = output_layer  # the reconstruction layer only; the conv blocks use keras.layers.Conv3D
    try:
        keras.utils.set_random_seed(0)
        trainer = model_module.build_autoencoder((edge,) * 3).trainer
    finally:
        model_module.Conv3D = saved
        keras.mixed_precision.set_global_policy("float32")
    trainer.compile(optimizer=published_optimizer(), loss="mse")
    return trainer


def training_variants(n_samples, edge, batch_size, epochs, rounds):
    """Samples/s of the same training, interleaved: our pipeline, Keras on the PyDataset and a bare Keras
    fit; each fit runs ``epochs`` epochs, ``rounds`` times."""
    from autoencoder3d.network.batches import training_dataset
    from autoencoder3d.network.train import ArrayBatches

    volumes = np.random.default_rng(0).normal(size=(n_samples, edge, edge, edge)).astype(np.float32)
    x = volumes[..., None]
    batches = ArrayBatches(volumes, np.arange(n_samples), batch_size, shuffle=True)
    steps = len(batches)
    trainers = {"pipeline": _trainer(edge), "keras_pydataset": _trainer(edge), "bare_keras_fit": _trainer(edge)}

    def fit(name, n_epochs, warm_up=False):
        trainer, times = trainers[name], epoch_times()
        if name == "keras_pydataset":
            trainer.fit(batches, epochs=n_epochs, steps_per_epoch=1 if warm_up else None, verbose=0, shuffle=False, callbacks=[times])
        elif name == "bare_keras_fit":
            inputs = x[:batch_size] if warm_up else x
            trainer.fit(inputs, inputs, batch_size=batch_size, epochs=n_epochs, verbose=0, shuffle=True, callbacks=[times])
        else:
            trainer.fit(training_dataset(batches, 0, n_epochs), steps_per_epoch=1 if warm_up else steps, epochs=n_epochs, verbose=0,
                        callbacks=[times])
        return times

    for name in trainers:
        fit(name, 1, warm_up=True)  # tracing and allocation
    results = {name: {"seconds": 0.0, "first_batch_s": [], "step_s": []} for name in trainers}
    for _ in range(rounds):
        for name in trainers:
            started = time.perf_counter()
            times = fit(name, epochs)
            results[name]["seconds"] += time.perf_counter() - started
            results[name]["first_batch_s"] += times.firsts
            results[name]["step_s"] += times.steps
    for result in results.values():
        result["samples_per_s"] = n_samples * epochs * rounds / result["seconds"]
        result["median_step_s"] = float(np.median(result["step_s"]))
        # how much longer an epoch's first batch takes than the others: the wait for a new iterator
        result["first_batch_wait_s"] = float(np.mean(result["first_batch_s"])) - result["median_step_s"]
    return results


def step_comparison(edge, batch_size, repeats):
    """Median seconds per training step (``train_on_batch``, alternated step by step) of ours, ours with
    Keras's Conv3D as the output layer, and ours under mixed bfloat16."""
    import keras

    trainers = {"ours": _trainer(edge), "keras_conv3d_output": _trainer(edge, keras.layers.Conv3D),
                "bfloat16": _trainer(edge, policy="mixed_bfloat16")}
    x = np.random.default_rng(0).normal(size=(batch_size, edge, edge, edge, 1)).astype(np.float32)
    for trainer in trainers.values():
        trainer.train_on_batch(x, x)
    times = {name: [] for name in trainers}
    for rep in range(repeats):
        order = list(trainers) if rep % 2 == 0 else list(trainers)[::-1]
        for name in order:
            started = time.perf_counter()
            trainers[name].train_on_batch(x, x)
            times[name].append(time.perf_counter() - started)
    return {name: {"median_s": float(np.median(t)), "all_s": t} for name, t in times.items()}


def conv_rate(edge, batch_size, repeats=3):
    """GFLOP/s of TensorFlow's Conv3D ops alone on the network's five convolutions (forward, input and
    filter gradients; the first layer has no input gradient), and seconds per batch of each part."""
    import tensorflow as tf

    from autoencoder3d.network.model import FILTERS, KERNEL

    n = edge
    layers = [(n, 1, FILTERS), (n // 2, FILTERS, FILTERS), (n // 2, FILTERS, FILTERS), (n, FILTERS, FILTERS), (n, FILTERS, 1)]
    rng = np.random.default_rng(0)
    ops, flops = [], 0
    for side, cin, cout in layers:
        x = tf.constant(rng.normal(size=(batch_size, side, side, side, cin)).astype(np.float32))
        w = tf.constant(rng.normal(size=(KERNEL,) * 3 + (cin, cout)).astype(np.float32))
        g = tf.constant(rng.normal(size=(batch_size, side, side, side, cout)).astype(np.float32))
        forward = 2 * batch_size * side**3 * KERNEL**3 * cin * cout
        strides = [1] * 5
        ops.append((f"{side}^3 {cin}->{cout} forward", forward, tf.function(lambda x=x, w=w, strides=strides: tf.nn.conv3d(x, w, strides, "SAME"))))
        ops.append((f"{side}^3 {cin}->{cout} filter gradient", forward, tf.function(lambda x=x, w=w, g=g, strides=strides: tf.raw_ops.Conv3DBackpropFilterV2(
            input=x, filter_sizes=tf.shape(w), out_backprop=g, strides=strides, padding="SAME"))))
        if cin > 1:
            ops.append((f"{side}^3 {cin}->{cout} input gradient", forward, tf.function(lambda x=x, w=w, g=g, strides=strides: tf.raw_ops.Conv3DBackpropInputV2(
                input_sizes=tf.shape(x), filter=w, out_backprop=g, strides=strides, padding="SAME"))))
    for _, _, op in ops:
        op().numpy()
    best = {name: math.inf for name, _, _ in ops}
    for _ in range(repeats):
        for name, _, op in ops:
            started = time.perf_counter()
            op().numpy()
            best[name] = min(best[name], time.perf_counter() - started)
    flops = sum(f for _, f, _ in ops)
    seconds = sum(best.values())
    gflops = {name: f / best[name] / 1e9 for name, f, _ in ops}
    return flops / seconds / 1e9, seconds, gflops


def output_layer_times(edge, batch_size, repeats=3):
    """Seconds per batch (forward + both gradients) of the output layer: Keras's Conv3D and ours."""
    import keras
    import tensorflow as tf

    from autoencoder3d.network.model import FILTERS, KERNEL, Conv3D

    x = tf.constant(np.random.default_rng(0).normal(size=(batch_size, edge, edge, edge, FILTERS)).astype(np.float32))
    steps = {}
    for name, cls in (("keras_conv3d", keras.layers.Conv3D), ("ours", Conv3D)):
        layer = cls(1, KERNEL, padding="same")
        layer.build(x.shape)

        @tf.function
        def step(layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x))
            return tape.gradient(loss, [x] + layer.trainable_weights)

        steps[name] = step
        step()
    best = {name: math.inf for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            [g.numpy() for g in step()]
            best[name] = min(best[name], time.perf_counter() - started)
    return best


ONEDNN_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import scripts.bench_train as bench
from autoencoder3d.util.cpu_kernels import onednn_active
edge, batch, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from autoencoder3d.network.batches import training_dataset
from autoencoder3d.network.train import ArrayBatches
trainer = bench._trainer(edge)
volumes = np.random.default_rng(0).normal(size=(batch * steps, edge, edge, edge)).astype(np.float32)
batches = ArrayBatches(volumes, np.arange(len(volumes)), batch, shuffle=True)
trainer.fit(training_dataset(batches, 0, 1), steps_per_epoch=1, epochs=1, verbose=0)
started = time.perf_counter()
trainer.fit(training_dataset(batches, 0, 1), steps_per_epoch=steps, epochs=1, verbose=0)
rate = batch * steps / (time.perf_counter() - started)
_, _, gflops = bench.conv_rate(edge, batch, repeats=1)
print("RESULT", json.dumps({"onednn": onednn_active(), "samples_per_s": rate, "conv_gflops": gflops}))
"""


def onednn_comparison(edge, batch_size, steps, rounds=2):
    """Training samples/s and Conv3D GFLOP/s with TF_ENABLE_ONEDNN_OPTS=1 and =0: child processes, alternated."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    results = {"1": [], "0": []}
    for _ in range(rounds):
        for value in results:
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value, TF_CPP_MIN_LOG_LEVEL="2")
            child = [sys.executable, "-c", ONEDNN_CHILD, root, str(edge), str(batch_size), str(steps)]
            out = subprocess.run(child, check=True, capture_output=True, text=True, env=env).stdout
            results[value].append(json.loads(out.split("RESULT", 1)[1]))
    return results


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

    from autoencoder3d.prep.pose import principal_axes
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

    from autoencoder3d.prep import pose

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
    from autoencoder3d.formats.mrc import write_mrc
    from autoencoder3d.formats.subvolume_pickle import save_subvolumes

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


def training_rows(quick, parts):
    """The training-speed measurements of one run; returns (rows, numbers)."""
    from autoencoder3d.network.model import count_flops

    edge, batch = 32, 128
    flops = 3 * count_flops((edge,) * 3)  # forward + backward as 3x the forward
    rows, numbers = [], {}
    if "fits" in parts:
        n, epochs, rounds = (384, 2, 1) if quick else (384, 3, 1)
        variants = numbers["variants"] = training_variants(n, edge, batch, epochs, rounds)
        ours = variants["pipeline"]["samples_per_s"]
        for name, label in (("pipeline", "ours (one pipeline per fit)"), ("keras_pydataset", "Keras on the PyDataset (before)"),
                            ("bare_keras_fit", "bare Keras fit (numpy x, x)")):
            v = variants[name]
            rows.append((f"training samples/s {edge}^3 batch {batch}: {label}", f"{v['samples_per_s']:.2f}",
                         f"x{v['samples_per_s'] / ours:.2f} of ours; step {v['median_step_s']:.1f} s (median), "
                         f"first batch of an epoch {v['first_batch_wait_s']:+.1f} s more"))
        rows.append(("ours / bare Keras fit", f"{ours / variants['bare_keras_fit']['samples_per_s']:.2f}",
                     "fraction of a bare Keras fit on numpy arrays"))
    if "steps" in parts:
        steps = numbers["steps"] = step_comparison(edge, batch, 4 if quick else 6)
        output = numbers["output_layer_seconds"] = output_layer_times(edge, batch)
        base = steps["ours"]["median_s"]
        for name, label in (("ours", "ours"), ("keras_conv3d_output", "ours with Keras's Conv3D output layer"),
                            ("bfloat16", "ours, mixed bfloat16")):
            rows.append((f"s per step {edge}^3 batch {batch}, alternated: {label}", f"{steps[name]['median_s']:.2f}",
                         f"speed x{base / steps[name]['median_s']:.2f} of ours"))
        keras_step = steps["keras_conv3d_output"]["median_s"]
        if "conv" in parts:
            conv_gflops, conv_seconds, per_op = conv_rate(edge, batch)
            numbers.update(conv_gflops=conv_gflops, conv_seconds_per_batch=conv_seconds, conv_op_gflops=per_op)
            rows.append(("training GFLOP/s / Conv3D-only GFLOP/s", f"{batch / base * flops / 1e9:.1f} / {conv_gflops:.1f}",
                         f"fraction {conv_seconds / base:.2f} of the rate of the network's Conv3D ops alone"))
        rows.append(("output layer 32->1, s per batch: Keras Conv3D / ours", f"{output['keras_conv3d']:.3f} / {output['ours']:.3f}",
                     f"x{output['keras_conv3d'] / output['ours']:.2f}; Keras's is {output['keras_conv3d'] / keras_step:.2f} of a step with it"))
    if "onednn" in parts:
        onednn = numbers["onednn"] = onednn_comparison(16 if quick else 32, batch, 2 if quick else 3, rounds=1 if quick else 2)
        on = np.mean([r["samples_per_s"] for r in onednn["1"]])
        off = np.mean([r["samples_per_s"] for r in onednn["0"]])
        name = f"{16 if quick else 32}^3 32->32 filter gradient"
        grad = lambda runs: np.mean([r["conv_gflops"][name] for r in runs])  # noqa: E731
        rows.append(("oneDNN on / off: training samples/s", f"{on:.2f} / {off:.2f}",
                     f"x{on / off:.1f}; Conv3D 32->32 filter gradient {grad(onednn['1']):.0f} / {grad(onednn['0']):.0f} GFLOP/s"))
    return rows, numbers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--parts", default="fits,steps,conv,onednn,command",
                        help="what to measure (default all): fits (pipeline, PyDataset, bare fit), steps (output layer, bfloat16), "
                        "conv (Conv3D-only rate, against the steps), onednn (on/off, child processes), command")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    rows, numbers = training_rows(args.quick, parts)
    if "command" in parts:
        more_rows, more_numbers = command_rows(args.quick)
        rows += more_rows
        numbers.update(more_numbers)
    width = max(len(r[0]) for r in rows)
    print(f"machine: {os.cpu_count()} cores; numbers from one run")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>22}  {note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=2, default=float)


def command_rows(quick):
    """The train command's overhead, pose normalization speed and peak memory; returns (rows, numbers)."""
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
    return rows, numbers


if __name__ == "__main__":
    main()
