"""Where a training step's time goes, under Keras's JAX backend, on whatever device JAX has (CPU or GPU).

Used by ``scripts/bench_gpu.py --profile``. Three measurements, each in one run:

- ``layer_times``: every layer of the network alone, forward and backward
  (the gradients of its weights and of its input, as in training; the first
  convolution needs none for its input), jitted, median of a few calls, and
  its share of their sum;
- ``step_cost``: XLA's cost analysis of the compiled training step (FLOPs and
  bytes its operations read and write, per subvolume) and the step's measured
  time, so achieved TFLOP/s and GB/s;
- ``output_variants``: whole training steps, alternated, with the output
  layer computed as autoencoder3d does (taps, in float32), as taps in the
  policy's precision (bfloat16 under mixed precision) handing float32 to the
  loss, and as Keras's own Conv3D (float32).
"""

import time

import numpy as np


def _require_jax():
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"--profile needs KERAS_BACKEND=jax (the backend is {keras.backend.backend()})")


def _trainer(box, policy, output_layer="ours"):
    import keras
    from bench_train import _trainer as trainer_with

    from autoencoder3d.network.model import Conv3D as ours

    class HalfPrecisionOutput(ours):  # computes in the policy's precision, hands float32 to the loss
        def call(self, inputs):
            return keras.ops.cast(super().call(inputs), "float32")

        def compute_output_spec(self, inputs):
            return keras.KerasTensor(super().compute_output_spec(inputs).shape, dtype="float32")

    choices = {
        "ours": None,
        "ours, in the policy's precision": lambda *a, dtype=None, **k: HalfPrecisionOutput(*a, **k),
        "Keras Conv3D": keras.layers.Conv3D,
    }
    return trainer_with(box, choices[output_layer], policy)


def _median_seconds(call, repeats):
    import jax

    jax.block_until_ready(call())  # compile
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def layer_times(box, batch, policy, repeats=3):
    """Per layer: name, input shape, compute dtype, forward+backward seconds and share of the sum."""
    import jax
    import jax.numpy as jnp
    import keras

    _require_jax()
    trainer = _trainer(box, policy)
    rows = []
    for layer in (inner for part in trainer.layers[1:] for inner in part.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = (batch,) + tuple(layer.input.shape[1:])
        x = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype=layer.compute_dtype)
        weights = [v.value for v in layer.trainable_variables]
        fixed = [v.value for v in layer.non_trainable_variables]
        training = {"training": True} if "training" in layer._call_signature.parameters else {}

        def loss(weights, x, layer=layer, fixed=fixed, training=training):
            y, _ = layer.stateless_call(weights, fixed, x, **training)
            return jnp.sum(jnp.square(y.astype(jnp.float32)))

        wrt = (0,) if layer is trainer.layers[1].layers[1] else (0, 1)  # the first layer's input needs no gradient
        grad = jax.jit(jax.value_and_grad(loss, argnums=wrt))
        rows.append({"layer": layer.name, "input": "x".join(map(str, shape[1:])), "dtype": str(layer.compute_dtype),
                     "seconds": _median_seconds(lambda grad=grad, weights=weights, x=x: grad(weights, x), repeats)})
    total = sum(row["seconds"] for row in rows)
    for row in rows:
        row["share"] = row["seconds"] / total
    return rows


def _compiled_step(trainer, x):
    import jax

    state = ([v.value for v in trainer.trainable_variables], [v.value for v in trainer.non_trainable_variables],
             [v.value for v in trainer.optimizer.variables], [v.value for v in trainer.metrics_variables])
    compiled = jax.jit(trainer.train_step).lower(state, (x, x)).compile()
    return compiled, state


def step_cost(box, batch, policy, repeats=5):
    """XLA's FLOPs and bytes per subvolume of one compiled training step, its time, and the rates achieved."""
    _require_jax()
    trainer = _trainer(box, policy)
    x = np.random.default_rng(0).normal(size=(batch, box, box, box, 1)).astype(np.float32)
    trainer.fit(x, x, batch_size=batch, epochs=1, verbose=0)  # builds the optimizer's variables
    compiled, state = _compiled_step(trainer, x)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    seconds = _median_seconds(lambda: compiled(state, (x, x)), repeats)
    flops, moved = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    return {"box": box, "batch": batch, "policy": policy, "step_s": seconds, "samples_per_s": batch / seconds,
            "gflop_per_sample": flops / batch / 1e9, "mb_per_sample": moved / batch / 1e6,
            "tflops": flops / seconds / 1e12, "gb_per_s": moved / seconds / 1e9}


def output_variants(box, batch, policy, repeats=5):
    """Median seconds of whole training steps (alternated) for each way of computing the output layer."""
    _require_jax()
    x = np.random.default_rng(0).normal(size=(batch, box, box, box, 1)).astype(np.float32)
    trainers = {name: _trainer(box, policy, name) for name in ("ours", "ours, in the policy's precision", "Keras Conv3D")}
    for trainer in trainers.values():
        trainer.train_on_batch(x, x)
    times = {name: [] for name in trainers}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.train_on_batch(x, x)
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def print_profile(box, batch, policy):
    """Print the three measurements for one box, batch size and policy."""
    print(f"\n### {box}^3, batch {batch}, {policy}\n\n| layer | input | computes in | ms (fwd+bwd) | share |\n|---|---|---|---|---|")
    layers = layer_times(box, batch, policy)
    for row in layers:
        print(f"| {row['layer']} | {row['input']} | {row['dtype']} | {1e3 * row['seconds']:.1f} | {100 * row['share']:.1f} % |")
    cost = step_cost(box, batch, policy)
    print(f"\nwhole step: {cost['step_s']:.3f} s, {cost['samples_per_s']:.1f} samples/s; XLA counts "
          f"{cost['gflop_per_sample']:.2f} GFLOP and {cost['mb_per_sample']:.0f} MB read+written per subvolume: "
          f"{cost['tflops']:.3f} TFLOP/s, {cost['gb_per_s']:.1f} GB/s achieved")
    variants = output_variants(box, batch, policy)
    base = variants["ours"]
    print("\n| output layer | s per step (median, alternated) | speed of ours over it |\n|---|---|---|")
    for name, seconds in variants.items():
        print(f"| {name} | {seconds:.3f} | x{seconds / base:.2f} |")
    return {"box": box, "batch": batch, "policy": policy, "layers": layers, "cost": cost, "output_variants": variants}
