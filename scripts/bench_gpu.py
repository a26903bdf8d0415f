#!/usr/bin/env python
"""Training speed of the autoencoder on a GPU (or any device), under the Keras backend in use.

Measured in one run, for each setting: the default network (``Models.trainer``,
the published optimizer and MSE loss) trained with ``fit`` on random
standardized volumes for a fixed number of steps after a warm-up epoch, fed
either

- from memory as one array (Keras's own input pipeline), or
- by ``ArrayBatches``, the batches ``autoencoder3d train`` really uses (the
  shuffled order per epoch, cut from a numpy array and standardized),

in float32 and in mixed bfloat16. It prints samples/s, achieved TFLOP/s
(forward + backward counted as 3x the forward FLOPs) and the ratio of the
``ArrayBatches`` feed to the in-memory feed (below 1: the input pipeline, not
the GPU, sets the pace).

``--feed`` (any machine) measures instead how fast the CPU prepares ``train``'s
standardized batches: in one thread as before (through whole float64 arrays)
and now, and through the threads that feed ``fit``.

``--profile`` (Keras's JAX backend, any device) prints instead where a step's
time goes: per layer, XLA's FLOPs and bytes per subvolume, and the output
layer's variants (``scripts/gpu_profile.py``).

Usage:
  KERAS_BACKEND=tensorflow python scripts/bench_gpu.py [--boxes 32,64] [--batches 128,512] [--json OUT]
  KERAS_BACKEND=jax python scripts/bench_gpu.py ...
  python scripts/bench_gpu.py --feed --boxes 32 --batches 128
  KERAS_BACKEND=jax python scripts/bench_gpu.py --profile --boxes 32 --batches 128 [--precisions mixed_bfloat16]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def device_name():
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return str(jax.devices()[0].device_kind)
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"
    except Exception as err:  # noqa: BLE001 - only a label
        return f"unknown ({err})"


def measure(box, batch_size, policy, feed, n_samples, epochs):
    import keras

    from autoencoder3d.network.model import build_autoencoder, count_flops
    from autoencoder3d.network.train import ArrayBatches, published_optimizer

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    volumes = np.random.default_rng(0).normal(size=(n_samples, box, box, box)).astype(np.float32)
    trainer = build_autoencoder((box,) * 3).trainer
    trainer.compile(optimizer=published_optimizer(), loss="mse")
    if feed == "ArrayBatches":
        # standardized, as train's batches are (the network's input is (v - mean) / std of the training set)
        data = ArrayBatches(volumes, np.arange(n_samples), batch_size, shuffle=True, mean=0.1, std=1.1)
        run = lambda n: trainer.fit(data, epochs=n, verbose=0)  # noqa: E731
    else:
        x = volumes[..., None]
        run = lambda n: trainer.fit(x, x, batch_size=batch_size, epochs=n, shuffle=True, verbose=0)  # noqa: E731
    run(1)  # warm-up: compilation and allocation
    started = time.perf_counter()
    history = run(epochs)
    seconds = time.perf_counter() - started
    rate = n_samples * epochs / seconds
    keras.mixed_precision.set_global_policy("float32")
    return {
        "box": box, "batch_size": batch_size, "policy": policy, "feed": feed, "samples_per_s": round(rate, 1),
        "tflops": round(3 * count_flops((box,) * 3) * rate / 1e12, 2), "seconds": round(seconds, 2),
        "final_loss": float(history.history["loss"][-1]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", default="32,64", help="subvolume edges (default 32,64)")
    parser.add_argument("--batches", default="128,512", help="batch sizes (default 128,512)")
    parser.add_argument("--samples", type=int, default=4096, help="subvolumes per epoch (default 4096)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    parser.add_argument("--json", help="write the rows here (after every row)")
    parser.add_argument("--feed", action="store_true", help="how fast the CPU prepares the batches (no model)")
    parser.add_argument("--profile", action="store_true", help="where a step's time goes (KERAS_BACKEND=jax)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="Keras policies (default float32,mixed_bfloat16)")
    args = parser.parse_args(argv)
    import keras

    header = {"backend": keras.backend.backend(), "keras": keras.__version__, "device": device_name()}
    print(f"backend {header['backend']} (Keras {header['keras']}) on {header['device']}", flush=True)
    if args.profile:
        return profile(args, header)
    if args.feed:
        return feed_table(args, header)
    print("| box | batch | precision | feed | samples/s | TFLOP/s | ArrayBatches / in-memory |\n|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for box in (int(b) for b in args.boxes.split(",")):
        n_samples = max(512, args.samples * (32 // box) ** 3 if box <= 32 else args.samples // (box // 32) ** 3)
        for batch_size in (int(b) for b in args.batches.split(",")):
            for policy in args.precisions.split(","):
                pair = {}
                for feed in ("in-memory", "ArrayBatches"):
                    row = measure(box, batch_size, policy, feed, n_samples, args.epochs)
                    pair[feed] = row
                    rows.append(row)
                    if args.json:
                        with open(args.json, "w") as handle:
                            json.dump({**header, "rows": rows}, handle, indent=1)
                    ratio = f"{row['samples_per_s'] / pair['in-memory']['samples_per_s']:.2f}" if feed == "ArrayBatches" else ""
                    print(f"| {box} | {batch_size} | {policy} | {feed} | {row['samples_per_s']} | {row['tflops']} | {ratio} |", flush=True)


def feed_rates(box, batch_size, n_samples, rounds=3, mean=0.3, std=2.0):
    """Samples/s of train's standardized batches from memory, ways interleaved over ``rounds``; no model."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from autoencoder3d.network.batches import READ_AHEAD, READ_THREADS, batch_rows
    from autoencoder3d.network.train import ArrayBatches

    volumes = np.random.default_rng(0).normal(size=(n_samples, box, box, box)).astype(np.float32)
    batches = ArrayBatches(volumes, np.arange(n_samples), batch_size, shuffle=True, mean=mean, std=std)

    def before():  # the standardization of earlier versions, on the same rows
        for i in range(len(batches)):
            rows = volumes[batch_rows(batches._order, i, batch_size)][..., None]
            ((rows.astype(np.float64) - mean) / std).astype(np.float32)

    def one_thread():
        for i in range(len(batches)):
            batches[i]

    def fit_threads(batches=batches):  # as fit takes a PyDataset under JAX (with workers: Keras's ordered enqueuer)
        adapter = PyDatasetAdapter(batches, shuffle=False)
        adapter.on_epoch_begin()
        for _ in adapter.get_numpy_iterator():
            pass
        adapter.on_epoch_end()

    ways = {"before: one thread, whole float64 arrays": before, "now: one thread": one_thread,
            "now: as fit takes them from memory (no threads)": fit_threads,
            "now: as fit with Keras's threads (as from a store)": lambda: fit_threads(threaded)}
    threaded = ArrayBatches(volumes, np.arange(n_samples), batch_size, shuffle=True, mean=mean, std=std)
    threaded.workers, threaded.max_queue_size = READ_THREADS, READ_AHEAD
    seconds = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            seconds[name] += time.perf_counter() - started
    return {name: n_samples * rounds / s for name, s in seconds.items()}


def feed_table(args, header):
    rows = []
    print("| box | batch | way | samples/s | x before |\n|---|---|---|---|---|")
    for box in (int(b) for b in args.boxes.split(",")):
        for batch_size in (int(b) for b in args.batches.split(",")):
            rates = feed_rates(box, batch_size, max(8 * batch_size, args.samples * (32 // box) ** 3 if box <= 32 else args.samples))
            base = next(iter(rates.values()))
            for name, rate in rates.items():
                rows.append({"box": box, "batch_size": batch_size, "way": name, "samples_per_s": round(rate, 1)})
                print(f"| {box} | {batch_size} | {name} | {rate:,.0f} | x{rate / base:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({**header, "feed": rows}, handle, indent=1)


def profile(args, header):
    from gpu_profile import print_profile

    results = []
    for box in (int(b) for b in args.boxes.split(",")):
        for batch_size in (int(b) for b in args.batches.split(",")):
            for policy in args.precisions.split(","):
                results.append(print_profile(box, batch_size, policy))
                if args.json:
                    with open(args.json, "w") as handle:
                        json.dump({**header, "profiles": results}, handle, indent=1)


if __name__ == "__main__":
    main()
