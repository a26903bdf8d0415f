"""The training objectives (wedge loss, augmented views, self-labelling) measured against the default and PCA, on simulated data and on real crops.

Used by ``scripts/bench_science.py --objectives``. Two data sets, both
pose-normalized (each subvolume's rotation kept for the missing-wedge loss):

- ``simulated``: a simulation with a seed not used in development (held
  out), six classes, ground truth.
- ``real``: boxes on a regular grid in the two cylindra microtubule crops
  (shared/data/real-tomograms), each crop binned to the simulation's voxel size
  (about 20 A) and standardized on its own (mean 0, sd 1), so that an intensity
  offset between the crops cannot decide. Proxy labels, from geometry alone:
  which crop (13 or 14 protofilaments) x whether the box centre lies on the
  microtubule (within 10 nm of its axis, in the x-y plane) or in the background
  (more than 22 nm from it); boxes in between are dropped. The axis is a
  straight line in x-y fitted to the brightest x of each y-row of the crop
  smoothed with a 10 nm Gaussian (which merges the two walls of the
  25 nm tube into one ridge on its axis) and averaged over z.

Every (data set, method, seed) row is appended to the JSON file as soon as it
is measured; a rerun with the same file skips the rows already there.
"""

import json
import os
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
REAL_DIR = os.environ.get("AUTOENCODER3D_REAL_CROPS") or next(
    (d for d in (os.path.join(_HERE, "..", *p, "data", "real-tomograms") for p in (("shared",), ("..", "shared"))) if os.path.isdir(d)),
    "shared/data/real-tomograms")
REAL_CROPS = (("13pf", "cylindra_13pf_MT_10.52A.mrc"), ("14pf", "cylindra_14pf_MT_10.52A.mrc"))
ON_MT_NM, BACKGROUND_NM, AXIS_SMOOTH_NM = 10.0, 22.0, 10.0

NOTHING = {"loss": "mse", "augment": False, "self_label": 0}  # the reconstruction-only objective, whatever the default becomes
METHODS = {
    "default (MSE, no views, no self-labels)": NOTHING,
    "wedge loss": {**NOTHING, "loss": "wedge"},
    "augmented views": {**NOTHING, "augment": True},
    "self-labelling (3 rounds)": {**NOTHING, "self_label": 3},
}


def bin_volume(data, factor):
    """Mean over ``factor``^3 blocks (the edges that do not fill a block are dropped)."""
    if factor == 1:
        return np.asarray(data, dtype=np.float32)
    shape = [s // factor for s in data.shape]
    data = np.asarray(data, dtype=np.float64)[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    return data.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5)).astype(np.float32)


def microtubule_axis(volume, voxel_nm):
    """The axis in the x-y plane, ``x = slope * y + intercept`` (voxels), from the bright tube (protein bright).

    The crops are thin slabs (18 to 22 binned voxels in z) that the missing wedge
    smears along z, so the axis is located in x and y only: the slope from the
    brightest x of each y-row of the z-average smoothed by 10 nm, the intercept
    as the midpoint of the two walls (the offset across the tube, perpendicular
    to that slope, where the profile is brightest at +-h for a wall half-spacing
    h of 8 to 15 nm).
    """
    from scipy import ndimage

    image = volume.astype(np.float64).mean(axis=2)
    ridge = ndimage.gaussian_filter(image, AXIS_SMOOTH_NM / voxel_nm)
    ys = np.arange(image.shape[1])
    slope, _ = np.polyfit(ys, np.argmax(ridge, axis=0).astype(float), 1)
    x, y = np.indices(image.shape)
    across = np.rint(x - slope * y).astype(int)  # offset along x from the line x = slope * y
    offsets = np.arange(across.min(), across.max() + 1)
    profile = np.bincount((across - offsets[0]).ravel(), image.ravel()) / np.maximum(np.bincount((across - offsets[0]).ravel()), 1)
    best = (-np.inf, 0.0)
    for half in range(int(8 / voxel_nm * np.hypot(1, slope)), int(15 / voxel_nm * np.hypot(1, slope)) + 1):
        score = profile[: len(profile) - 2 * half] + profile[2 * half :]
        best = max(best, (float(score.max()), float(offsets[int(np.argmax(score)) + half])))
    return slope, best[1]


def distance_to_axis(centres, slope, intercept):
    """In-plane (x-y) distance of each centre from the line ``x = slope * y + intercept``, in voxels."""
    centres = np.asarray(centres, dtype=float)
    return np.abs(centres[:, 0] - slope * centres[:, 1] - intercept) / np.hypot(1.0, slope)


def grid_centres(shape, box, stride):
    axes = [np.arange(box // 2, n - box + box // 2 + 1, stride) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def real_subvolumes(box, voxel_a):
    """The pose-normalized real-crop boxes and their proxy labels (0..3: crop x on/off the microtubule)."""
    from autoencoder3d.formats.mrc import read_tomogram
    from autoencoder3d.prep.pose import pose_normalize
    from autoencoder3d.volume import SubvolumeSet, cut_box

    volumes, rotations, labels, raw = [], [], [], []
    for crop_index, (name, filename) in enumerate(REAL_CROPS):
        tomogram = read_tomogram(os.path.join(REAL_DIR, filename))
        factor = max(1, int(round(voxel_a / tomogram.voxel_size[0])))
        data = bin_volume(tomogram.data, factor)
        data = (data - data.mean()) / data.std()  # per crop: the crops' offsets cannot decide
        voxel_nm = tomogram.voxel_size[0] * factor / 10.0
        centres = grid_centres(data.shape, box, max(2, box // 4))
        distance = distance_to_axis(centres, *microtubule_axis(data, voxel_nm)) * voxel_nm
        keep = (distance <= ON_MT_NM) | (distance >= BACKGROUND_NM)
        centres, on_tube = centres[keep], distance[keep] <= ON_MT_NM
        boxes = np.stack([cut_box(data, c - box // 2, box, 0.0) for c in centres])
        subvolumes = SubvolumeSet(uuids=[f"{name}-{i}" for i in range(len(centres))], volumes=boxes,
                                  centers=centres.astype(float), voxel_size=(voxel_nm * 10,) * 3)
        posed = pose_normalize(subvolumes, data, polarity="bright")
        kept = {u: i for i, u in enumerate(subvolumes.uuids)}
        volumes.append(posed.volumes)
        raw.append(boxes[[kept[u] for u in posed.uuids]])
        rotations += [posed.extras[u]["rotation"] for u in posed.uuids]
        labels += [2 * crop_index + int(not on_tube[kept[u]]) for u in posed.uuids]
    return np.concatenate(volumes), np.asarray(rotations), np.asarray(labels), np.concatenate(raw)


def simulated_subvolumes(sim_dir, snr, box, copies, seed):
    """The pose-normalized simulated subvolumes, their rotations and true classes."""
    from bench_science import simulate

    from autoencoder3d.clustering.evaluate import true_classes
    from autoencoder3d.formats.mrc import read_tomogram
    from autoencoder3d.formats.subvolume_pickle import load_subvolumes
    from autoencoder3d.prep.pose import pose_normalize

    simulate(sim_dir, snr, box, copies, seed)
    subvolumes = load_subvolumes(os.path.join(sim_dir, "subvolumes_example_1.pickle"))
    tomogram = np.asarray(read_tomogram(os.path.join(sim_dir, "tomogram.rec")).data, dtype=np.float32)
    posed = pose_normalize(subvolumes, tomogram)
    truth = json.load(open(os.path.join(sim_dir, "truth.json")))
    _, classes = np.unique(np.asarray(true_classes(truth, posed.uuids)), return_inverse=True)
    rotations = np.asarray([posed.extras[u]["rotation"] for u in posed.uuids])
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    raw = subvolumes.volumes[[index[u] for u in posed.uuids]]
    return posed.volumes, rotations, np.asarray(classes), raw


def evaluation_datasets(args, work):
    """The data sets named by ``args.datasets`` as {name: (volumes, rotations, labels, raw, ks)} and {name: (k, many)}.

    ``simulated``: ``args.sim_tomograms`` (default 1) held-out simulations (seeds sim_seed, sim_seed + 100, ...)
    pooled; ``real``: the real crops with their proxy labels. Each in a fixed random order.
    """
    datasets, ks_of = {}, {}
    names = args.datasets.split(",")
    unknown = set(names) - {"simulated", "real"}
    if unknown:
        raise SystemExit(f"--datasets {args.datasets}: name simulated, real or simulated,real (not {', '.join(sorted(unknown))})")
    if "simulated" in names:
        parts = [simulated_subvolumes(os.path.join(work, f"sim{i}"), args.snrs[0], args.box, args.copies, args.sim_seed + 100 * i)
                 for i in range(getattr(args, "sim_tomograms", 1))]
        datasets["simulated"] = shuffled(tuple(np.concatenate(arrays) for arrays in zip(*parts))) + (args.ks,)
        ks_of["simulated"] = tuple(args.ks)
    if "real" in names:
        data = shuffled(real_subvolumes(args.box, 10.0 * 32 / args.box))
        ks_of["real"] = (len(set(data[2].tolist())), 20)
        datasets["real"] = data + (list(ks_of["real"]),)
    for name, data in datasets.items():
        print(f"{name}: {len(data[0])} subvolumes of {data[0].shape[1:]}, labels {np.bincount(data[2]).tolist()}", flush=True)
    return datasets, ks_of


def shuffled(data, seed=0):
    """The same samples in a fixed random order (so the last 10 % held out for validation mixes all labels)."""
    order = np.random.default_rng(seed).permutation(len(data[0]))
    return tuple(part[order] for part in data)


def scores_at(features, labels, ks, seed):
    from bench_science import kmeans_scores

    return {str(k): v for k, v in kmeans_scores(features, list(labels), ks, seed).items()}


def autoencoder_codes(volumes, rotations, fields, args, seed):
    import shutil
    import tempfile

    import keras

    from autoencoder3d.network.objective import Objective
    from autoencoder3d.network.train import encode, train_autoencoder

    keras.utils.set_random_seed(seed)
    model_dir = tempfile.mkdtemp(prefix="bench-objectives-")
    try:
        (_, encoder, _), info = train_autoencoder(volumes, model_dir, epochs=args.epochs, batch_size=args.batch_size,
                                                  seed=seed, verbose=0, objective=Objective(**{**NOTHING, **fields}),
                                                  rotations=rotations)
        return encode(encoder, volumes), len(info["history"])
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


class RowLog:
    """The rows of a bench run, kept in ``args.json`` as they come, so that a rerun skips those already measured."""

    def __init__(self, args):
        self.path = args.json
        self.rows = []
        if self.path and os.path.isfile(self.path):
            with open(self.path) as handle:
                self.rows = json.load(handle).get("rows", [])
        self.done = {(r["dataset"], r["method"], r["seed"]) for r in self.rows}
        self.meta = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, bool, type(None)))}

    def add(self, row):
        """Keep ``row``, rewrite the JSON file atomically and print the row."""
        self.rows.append(row)
        if self.path:
            with open(self.path + ".tmp", "w") as handle:
                json.dump({"meta": self.meta, "rows": self.rows}, handle, indent=1)
            os.replace(self.path + ".tmp", self.path)
        print(json.dumps(row), flush=True)


def measure(datasets, methods, args):
    """Every (data set, method, seed) row, skipping those already in ``args.json``."""
    from bench_science import pca_features

    from autoencoder3d.network.codes import code_statistics

    log = RowLog(args)
    for seed in args.seeds:
        for name, (volumes, rotations, labels, raw, ks) in datasets.items():
            for method, fields in [("PCA raw", None), ("PCA pose", None)] + list(methods.items()):
                if (name, method, seed) in log.done:
                    continue
                started = time.perf_counter()
                if method == "PCA raw":
                    features, epochs = pca_features(raw, seed), None
                elif method == "PCA pose":
                    features, epochs = pca_features(volumes, seed), None
                else:
                    features, epochs = autoencoder_codes(volumes, rotations, fields, args, seed)
                row = dict(dataset=name, method=method, seed=seed, epochs=epochs, scores=scores_at(features, labels, ks, seed),
                           seconds=round(time.perf_counter() - started, 1))
                if epochs is not None:  # the autoencoder's codes: active units and distinct codes, as run.json has them
                    row["codes"] = code_statistics(features)
                log.add(row)
    return log.rows


def table(rows, ks_of):
    """Markdown: mean +- sd over seeds per (data set, method)."""
    lines = ["| data | method | seeds | k: ARI | k: NMI | k: purity | many: purity | active units (min) | distinct codes (min) | s per run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    for (dataset, method), group in groups.items():
        k, many = ks_of[dataset]

        def cell(metric, kk, group=group):
            values = np.array([g["scores"][str(kk)][metric] for g in group])
            return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"

        seconds = np.mean([g["seconds"] for g in group])
        codes = [g["codes"] for g in group if "codes" in g]
        units = min(c["active_code_units"] for c in codes) if codes else "-"
        distinct = min(c["distinct_codes"] for c in codes) if codes else "-"
        lines.append(f"| {dataset} (k={k}, many={many}) | {method} | {len(group)} | {cell('ari', k)} | {cell('nmi', k)} | "
                     f"{cell('purity', k)} | {cell('purity', many)} | {units} | {distinct} | {seconds:.0f} |")
    return "\n".join(lines)
