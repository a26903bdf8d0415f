#!/usr/bin/env python
"""Do the autoencoder's clusters separate structures? One table, measured in one run.

For each simulated tomogram (ground truth known; two SNRs), with and without
pose normalization, and for the first SNR at several intensity scales (the
same tomogram multiplied by 0.01, 1 and 100), this trains the autoencoder with the defaults, encodes,
k-means the codes at k = 6 (the number of classes) and k = 100 (the published
way: many clusters, merged by eye), and scores the clusters against the truth
(ARI, NMI, purity). In the same run it scores the bar every learned feature
must clear: k-means on PCA (32 components) of the raw voxels and of the
pose-normalized voxels. It also trains the literal published setting
(``--published``) and the intermediate candidates on one data set, to show
what each change does.

Usage:
  python scripts/bench_science.py                  # 16^3 boxes, about an hour on 2 CPU cores
  python scripts/bench_science.py --box 32         # the published box size (slower)
  python scripts/bench_science.py --quick          # a few minutes: one SNR, fewer epochs
  python scripts/bench_science.py --json out.json  # also write the rows
  python scripts/bench_science.py --objectives --json rows.json   # the training objectives, 3 seeds,
                                                   # simulated and real crops (scripts/science_candidates.py)
  python scripts/bench_science.py --flips --json rows.json   # flip-invariant clustering vs plain, PCA and the
                                                   # autoencoder, 3 seeds, simulated and real crops (scripts/science_flips.py)
  python scripts/bench_science.py --precisions float32,bfloat16 --seeds 0,1,2
                                                   # codes and clusters per precision, interleaved

The table is printed as Markdown (the README's table comes from it).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CANDIDATES = {
    "published": dict(l1_reduction="sum", code_norm=False, standardize=False),
    "standardized": dict(l1_reduction="sum", code_norm=False, standardize=True),
    "standardized + mean L1": dict(l1_reduction="mean", code_norm=False, standardize=True),
    "default (+ normalized code layer)": dict(l1_reduction="mean", code_norm=True, standardize=True),
}


def simulate(out_dir, snr, box, copies, seed):
    from autoencoder3d.simulate.dataset import simulate_dataset

    voxel = 10.0 * 32 / box  # the same physical box (32 nm) at every box size
    shape = tuple(int(round(s * 32 / box)) for s in (200, 200, 120))
    shape = tuple(max(s, 3 * box) for s in shape)
    simulate_dataset(out_dir, seed=seed, snr=snr, box=box, voxel_size=voxel, copies=copies, shape=shape)
    return out_dir


def load(sim_dir, scale):
    from autoencoder3d.clustering.evaluate import true_classes
    from autoencoder3d.formats.mrc import read_tomogram
    from autoencoder3d.formats.subvolume_pickle import load_subvolumes

    subvolumes = load_subvolumes(os.path.join(sim_dir, "subvolumes_example_1.pickle"))
    tomogram = np.asarray(read_tomogram(os.path.join(sim_dir, "tomogram.rec")).data, dtype=np.float32)
    subvolumes.volumes = (subvolumes.volumes * np.float32(scale)).astype(np.float32)
    truth = json.load(open(os.path.join(sim_dir, "truth.json")))
    return subvolumes, tomogram * np.float32(scale), truth, true_classes


def prepared(sim_dir, scale, pose):
    from autoencoder3d.prep.pose import pose_normalize

    subvolumes, tomogram, truth, true_classes = load(sim_dir, scale)
    if pose:
        subvolumes = pose_normalize(subvolumes, tomogram)
    return subvolumes, true_classes(truth, subvolumes.uuids)


def score(classes, labels):
    from autoencoder3d.clustering.evaluate import scores

    s = scores(classes, [int(x) for x in labels])
    return {m: round(s[m], 3) for m in ("ari", "nmi", "purity")}


def kmeans_scores(features, classes, ks, seed):
    from sklearn.cluster import KMeans

    out = {}
    for k in ks:
        labels = KMeans(n_clusters=k, n_init=100 if k <= 10 else 10, random_state=seed).fit_predict(features)
        out[k] = dict(score(classes, labels), nonempty=int(len(set(labels.tolist()))))
    return out


def pca_features(volumes, seed, components=32):
    from sklearn.decomposition import PCA

    flat = np.asarray(volumes, dtype=np.float64).reshape(len(volumes), -1)
    return PCA(n_components=min(components, len(flat) - 1), random_state=seed).fit_transform(flat)


def autoencoder_row(subvolumes, classes, settings, args, precision="float32"):
    import keras

    from autoencoder3d.network.codes import CodesCollapsed, code_statistics
    from autoencoder3d.network.train import encode, train_autoencoder

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
    model_dir = tempfile.mkdtemp(prefix="bench-science-")
    started = time.perf_counter()
    try:
        (_, encoder, _), info = train_autoencoder(
            subvolumes.volumes, model_dir, epochs=args.epochs, batch_size=args.batch_size, settings=settings,
            seed=args.seed, verbose=0,
        )
        codes = encode(encoder, subvolumes.volumes)
        row = dict(code_statistics(codes), epochs=len(info["history"]), scores=kmeans_scores(codes, classes, args.ks, args.seed),
                   best_val_loss=round(info["best_val_loss"], 5), train_only_s=round(info["train_seconds"], 1))
    except CodesCollapsed as err:
        row = {"collapsed": str(err).split(":")[0], "active_code_units": 0, "distinct_codes": 1}
    finally:
        keras.mixed_precision.set_global_policy("float32")
        shutil.rmtree(model_dir, ignore_errors=True)
    row["train_s"] = round(time.perf_counter() - started, 1)
    return row


def fmt(scores):
    return " / ".join(f"{scores[m]:.3f}" for m in ("ari", "nmi", "purity"))


def markdown_main(rows, ks):
    head = "| SNR | input | scale | active units | distinct codes | " + " | ".join(
        f"k={k}: autoencoder | k={k}: PCA raw | k={k}: PCA pose" for k in ks
    ) + " |"
    lines = [head, "|" + "---|" * (5 + 3 * len(ks))]
    for r in rows:
        cells = [str(r["snr"]), r["input"], f"x{r['scale']:g}"]
        ae = r["autoencoder"]
        if "collapsed" in ae:
            cells += ["0/32", "1"]
            cells += sum((["collapsed: one cluster", fmt(r["pca_raw"][k]), fmt(r["pca_pose"][k])] for k in ks), [])
        else:
            cells += [f"{ae['active_code_units']}/32", str(ae["distinct_codes"])]
            cells += sum(([fmt(ae["scores"][k]), fmt(r["pca_raw"][k]), fmt(r["pca_pose"][k])] for k in ks), [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_candidates(rows, ks):
    lines = ["| setting | active units | distinct codes | " + " | ".join(f"k={k} ARI / NMI / purity" for k in ks) + " |",
             "|" + "---|" * (3 + len(ks))]
    for name, ae in rows:
        if "collapsed" in ae:
            lines.append(f"| {name} | 0/32 | 1 | " + " | ".join(ae["collapsed"] for _ in ks) + " |")
        else:
            lines.append(f"| {name} | {ae['active_code_units']}/32 | {ae['distinct_codes']} | "
                         + " | ".join(fmt(ae["scores"][k]) for k in ks) + " |")
    return "\n".join(lines)


def precision_main(args):
    """Each seed trains once per precision, the precisions interleaved, on one pose-normalized data set."""
    from autoencoder3d.network.model import CodeSettings

    work = tempfile.mkdtemp(prefix="bench-science-data-")
    sim_dir = simulate(os.path.join(work, "sim"), args.snrs[0], args.box, args.copies, 0)
    posed, classes = prepared(sim_dir, 1.0, pose=True)
    rows = []
    for seed in args.seeds:
        for precision in args.precisions:
            args.seed = seed
            row = dict(seed=seed, precision=precision, **autoencoder_row(posed, classes, CodeSettings(), args, precision))
            rows.append(row)
            print(json.dumps(row), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nSNR {args.snrs[0]:g}, pose-normalized, {args.box}^3, {args.copies} per class, {args.epochs} epochs, "
          f"batch {args.batch_size}. Cells: ARI / NMI / purity.\n")
    print("| seed | precision | active units | distinct codes | best val loss | " + " | ".join(f"k={k}" for k in args.ks)
          + " | training s |")
    print("|" + "---|" * (6 + len(args.ks)))
    for r in rows:
        cells = [str(r["seed"]), r["precision"]]
        if "collapsed" in r:
            cells += ["0/32", "1", "-"] + ["collapsed"] * len(args.ks) + [str(r["train_s"])]
        else:
            cells += [f"{r['active_code_units']}/32", str(r["distinct_codes"]), f"{r['best_val_loss']:.4f}"]
            cells += [fmt(r["scores"][k]) for k in args.ks] + [str(r["train_only_s"])]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"precision_rows": rows, "args": vars(args)}, handle, indent=1, default=str)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--box", type=int, default=16, help="subvolume edge (16 or 32; default 16)")
    parser.add_argument("--snrs", default="0.5,0.1", help="SNRs to simulate (default 0.5,0.1)")
    parser.add_argument("--scales", default="0.01,1,100", help="intensity scales (default 0.01,1,100)")
    parser.add_argument("--copies", type=int, default=50, help="particles per class (default 50: 300 subvolumes)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--ks", default="6,100", help="cluster counts (default 6,100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one SNR, one scale besides 1, 5 epochs")
    parser.add_argument("--no-candidates", action="store_true", help="skip the table of candidate settings")
    parser.add_argument("--json", help="also write the rows as JSON")
    parser.add_argument("--objectives", action="store_true",
                        help="the training objectives: the default, each training candidate (wedge loss, augmented views, self-labelling) and "
                             "their combination, for each of --seeds, on a held-out simulation (--snrs' first SNR) and the real "
                             "crops, with PCA raw / PCA pose; rows appended to --json as they come (a rerun skips them)")
    parser.add_argument("--flips", action="store_true",
                        help="clustering invariant to pose normalization's four proper sign flips (canonical flips, flip-aware "
                             "k-means, codes averaged over flips) against plain clustering, for PCA and the autoencoder, for each "
                             "of --seeds, on the held-out simulation and the real crops (scripts/science_flips.py); rows appended "
                             "to --json as they come (a rerun skips them)")
    parser.add_argument("--seeds", default="0,1,2", help="--objectives, --flips and --precisions: training seeds (default 0,1,2)")
    parser.add_argument("--sim-seed", type=int, default=1, help="--objectives, --flips: the held-out simulation's seed (default 1)")
    parser.add_argument("--combo", default="loss=wedge,augment=1",
                        help="--objectives: the combination to measure (default wedge loss + augmented views, the two that "
                             "helped in a 10-epoch development run on another simulation seed)")
    parser.add_argument("--sim-tomograms", type=int, default=1,
                        help="--flips: simulate this many tomograms (seeds sim-seed, sim-seed+100, ...) and pool their "
                             "subvolumes, for a data set larger than one tomogram holds (default 1)")
    parser.add_argument("--datasets", default="simulated,real", help="--objectives, --flips: simulated, real or simulated,real (default both)")
    parser.add_argument("--methods", default=None,
                        help="--objectives, --flips: only these methods, in this order (comma-separated words each method's name starts "
                             "with, e.g. 'default,augmented,combination'; default all)")
    parser.add_argument("--precisions", help="compare these precisions instead (e.g. float32,bfloat16): "
                        "first SNR, pose-normalized, one training per seed and precision, interleaved")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.precisions = args.precisions.split(",") if args.precisions else None
    args.snrs = [float(s) for s in args.snrs.split(",")]
    args.scales = [float(s) for s in args.scales.split(",")]
    args.ks = [int(k) for k in args.ks.split(",")]
    if args.quick:
        args.snrs, args.scales, args.epochs = args.snrs[:1], [1.0, 100.0], 5
    return args


def combo_fields(text):
    fields = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        fields[key] = {"loss": str, "augment": lambda v: bool(int(v)), "self_label": int}[key](value)
    return fields


def objectives(args):
    """The training objectives table: candidates vs default vs PCA, mean +- sd over seeds, simulated and real."""
    import science_candidates as sc

    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="bench-objectives-data-")
    datasets, ks_of = sc.evaluation_datasets(args, work)
    methods = dict(sc.METHODS)
    methods["combination: " + args.combo] = combo_fields(args.combo)
    if args.methods:
        methods = {name: methods[name] for word in args.methods.split(",") for name in methods if name.startswith(word)}
    rows = sc.measure(datasets, methods, args)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.box}^3 boxes (32 nm), {args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, "
          f"simulation seed {args.sim_seed} at SNR {args.snrs[0]:g}; {time.perf_counter() - started:.0f} s this run. "
          "Cells: mean ± sd over seeds.\n")
    print(sc.table(rows, ks_of))


def main(argv=None):
    from autoencoder3d.network.model import CodeSettings

    args = parse_args(argv)
    if args.objectives:
        return objectives(args)
    if args.flips:
        from science_flips import flips

        return flips(args)
    if args.precisions:
        return precision_main(args)
    work = tempfile.mkdtemp(prefix="bench-science-data-")
    rows, candidate_rows = [], []
    started = time.perf_counter()
    for i, snr in enumerate(args.snrs):
        sim_dir = simulate(os.path.join(work, f"snr{snr:g}"), snr, args.box, args.copies, args.seed)
        for scale in (args.scales if i == 0 else [1.0]):  # unit invariance is shown on the first SNR
            raw, classes_raw = prepared(sim_dir, scale, pose=False)
            posed, classes_pose = prepared(sim_dir, scale, pose=True)
            base = {"pca_raw": kmeans_scores(pca_features(raw.volumes, args.seed), classes_raw, args.ks, args.seed),
                    "pca_pose": kmeans_scores(pca_features(posed.volumes, args.seed), classes_pose, args.ks, args.seed)}
            for name, subvolumes, classes in (("pose", posed, classes_pose), ("raw", raw, classes_raw)):
                if name == "raw" and scale != 1.0:
                    continue  # unit invariance is shown on the pose-normalized input
                row = dict(snr=snr, input=name, scale=scale, **base,
                           autoencoder=autoencoder_row(subvolumes, classes, CodeSettings(), args))
                rows.append(row)
                print(json.dumps(row), flush=True)
            if i == 0 and scale == 1.0 and not args.no_candidates:
                for name, fields in CANDIDATES.items():
                    if fields == {k: v for k, v in CodeSettings().to_dict().items() if k in fields}:
                        result = next(r["autoencoder"] for r in rows if r["snr"] == snr and r["scale"] == 1.0 and r["input"] == "pose")
                    else:
                        result = autoencoder_row(posed, classes_pose, CodeSettings(**fields), args)
                    candidate_rows.append((name, result))
                    print(json.dumps({"candidate": name, "result": result}), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.box}^3 boxes, {args.copies} particles per class, {args.epochs} epochs, batch {args.batch_size}, "
          f"seed {args.seed}; {time.perf_counter() - started:.0f} s. Cells: ARI / NMI / purity.\n")
    print(markdown_main(rows, args.ks))
    if candidate_rows:
        print(f"\nCandidates (SNR {args.snrs[0]:g}, pose-normalized, scale 1):\n")
        print(markdown_candidates(candidate_rows, args.ks))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "candidates": candidate_rows, "args": vars(args)}, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
