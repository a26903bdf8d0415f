"""Time one training as one process and as two local workers (--distribute multiworker), on this machine.

    python scripts/bench_distribute.py [--n 320] [--edge 16] [--epochs 3] [--batch-size 32]

Both runs train the same simulated subvolumes with the same seed; it prints each
run's training time (run.json's training.train_seconds, first-epoch compilation
included), the wall time of the whole command and the final losses. Both workers
run on this machine, so on a CPU they share its cores: this measures the cost of
the multi-worker machinery, not the speed-up of several GPU nodes.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from autoencoder3d.network.distribute import free_local_ports  # noqa: E402


def simulated(n, edge, seed=0):
    """Noise plus a dark block whose position depends on one of three classes (the published pickle format)."""
    rng = np.random.default_rng(seed)
    vs = {}
    for i in range(n):
        v = rng.normal(scale=0.3, size=(edge, edge, edge)).astype(np.float32)
        k, a = i % 3, edge // 4
        v[a + 2 * k : 2 * a + 2 * k, a : 3 * a, a + k : 2 * a + k] -= 2.0
        vs[f"uuid-{i:05d}"] = {"center": [0, 0, 0], "id": f"uuid-{i:05d}", "v": v}
    return {"v_siz": np.array([edge] * 3), "vs": vs}


def command(data, out, args, *extra):
    return [sys.executable, "-m", "autoencoder3d", "train", data, "None", "False", "3", "--out", out, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--n-init", "2", "--seed", "1", "-q", *extra]


def result(out, wall):
    record = json.load(open(os.path.join(out, "run.json")))
    history = record["training"]
    return {"train_s": history["train_seconds"], "wall_s": wall, "best_val_loss": history["best_val_loss"]}


def one_process(data, folder, args):
    out = os.path.join(folder, "single")
    started = time.perf_counter()
    subprocess.run(command(data, out, args), check=True, capture_output=True)
    return result(out, time.perf_counter() - started)


def two_workers(data, folder, args):
    out = os.path.join(folder, "multi")
    workers = [f"localhost:{port}" for port in free_local_ports(2)]
    started = time.perf_counter()
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_NUM_INTRAOP_THREADS=str(args.threads_per_worker))
        procs.append(subprocess.Popen(command(data, out, args, "--distribute", "multiworker"), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            sys.exit(err.decode()[-2000:])
    return result(out, time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=320)
    parser.add_argument("--edge", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads-per-worker", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "data.pickle")
        with open(data, "wb") as handle:
            pickle.dump(simulated(args.n, args.edge), handle, protocol=4)
        rows = {"one process": one_process(data, folder, args), "two local workers": two_workers(data, folder, args)}
    print(f"{args.n} subvolumes of {args.edge}^3, {args.epochs} epochs, global batch {args.batch_size}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, row in rows.items():
        print(f"{name:>18}: training {row['train_s']:6.1f} s, whole command {row['wall_s']:6.1f} s, best val_loss {row['best_val_loss']:.4f}")


if __name__ == "__main__":
    main()
