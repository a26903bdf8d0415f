"""Train the autoencoder, cluster the encodings and draw the cluster centres.

The published command: four positional arguments in the published order. If
model/ already holds a trained autoencoder, training is skipped and only the
clustering is redone (use --retrain to train again); a killed training resumes
from its last epoch when started again. At the start it says how long the
whole training will take at the measured speed of its first batches.

Writes, in --out RUN_DIR:
WRITTEN_FILES

Example:
  autoencoder3d train data.pickle tomo.rec True 100
  autoencoder3d train data.pickle None False 4 --out run1 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...network.objective_options import OBJECTIVE_DEFAULTS
from ...runs.folder import written_files
from ..common import (
    add_clustering_options,
    add_out,
    add_polarity,
    add_seed,
    boolean,
    fraction,
    non_negative_float,
    non_negative_int,
    optional_path,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from ...runs.options import TrainOptions


# the files a run folder holds are described by their owner, the run folder
__doc__ = __doc__.replace("WRITTEN_FILES", written_files(training=True))


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="subvolume pickle in the published format, or a data set folder made by 'autoencoder3d dataset build'")
    parser.add_argument("tomogram", metavar="TOMOGRAM", type=optional_path, help="MRC/REC tomogram the subvolumes were cut from, or None")
    parser.add_argument("pose", metavar="POSE", type=boolean, help="pose-normalize the subvolumes first: True or False")
    parser.add_argument("n_clusters", metavar="N_CLUSTERS", type=positive_int, help="number of k-means clusters, e.g. 100")
    add_out(parser)
    parser.add_argument("--epochs", type=positive_int, default=100, help="maximum training epochs (default 100)")
    parser.add_argument("--encoding-dim", type=positive_int, default=32, help="length of the code of each subvolume (default 32)")
    parser.add_argument("--l1", type=non_negative_float, default=1e-4,
                        help="L1 penalty on the code (default 1e-4 as published; averaged over the batch, or summed with --published)")
    parser.add_argument("--published", action="store_true",
                        help="train the literal published setting: raw intensities, L1 summed over the batch, plain Dense+ReLU code "
                             "(its codes collapse on many data sets; the default standardizes the input and normalizes the code layer)")
    add_objective_options(parser)
    parser.add_argument("--patience", type=non_negative_int, default=20, help="early stopping: epochs without validation improvement (default 20)")
    parser.add_argument("--learning-rate", type=positive_float, default=0.001, help="Adam learning rate, decayed per batch as published (default 0.001)")
    parser.add_argument("--validation-split", type=fraction, default=0.1, help="fraction of samples, from the end, held out for validation (default 0.1)")
    add_clustering_options(parser)
    add_polarity(parser, recorded=True)
    add_seed(parser)
    parser.add_argument("--retrain", action="store_true", help="ignore a saved model and checkpoints in model/ and train from scratch")
    parser.add_argument("--mixed-precision", choices=["bfloat16", "float16"], default=None, help="GPU speed-up: compute in bfloat16/float16, weights and "
                                                                                                 "code in float32")
    parser.add_argument(
        "--distribute", nargs="?", const="mirrored", choices=["mirrored", "multiworker"], default=None,
        help="mirrored (the default when given alone): train on all GPUs of this machine (tf.distribute.MirroredStrategy; "
             "under KERAS_BACKEND=jax, Keras's DataParallel); multiworker (TensorFlow backend only): on several machines "
             "(MultiWorkerMirroredStrategy), every worker running the same command, the cluster from TF_CONFIG or else from "
             "SLURM (one srun task per node); worker 0 writes RUN_DIR",
    )
    parser.add_argument("--port", type=positive_int, default=None,
                        help="--distribute multiworker under SLURM: the workers' port (default $AUTOENCODER3D_PORT, else 12345)")


def add_objective_options(parser: argparse.ArgumentParser) -> None:
    """The training objective's options (autoencoder3d/objective.py); all off by default."""
    parser.add_argument("--loss", choices=["mse", "wedge"], default=OBJECTIVE_DEFAULTS["loss"],
                        help="reconstruction error: mse over voxels (published), or wedge: only on the Fourier components the "
                             "tilt series measured, the missing wedge turned into each pose-normalized subvolume's frame (default %(default)s)")
    parser.add_argument("--wedge", type=tilt_angle, default=OBJECTIVE_DEFAULTS["wedge"], help="with --loss wedge: the largest tilt angle in degrees (default "
                                                                                              "%(default)g)")
    parser.add_argument("--augment", action="store_true",
                        help="train on two augmented views of each subvolume (proper sign flips of the pose axes, shifts of "
                             "a voxel or two, added noise): reconstruct the first without its noise, pull the two codes together")
    parser.add_argument("--self-label", type=non_negative_int, default=OBJECTIVE_DEFAULTS["self_label"], metavar="ROUNDS",
                        help="self-labelling rounds: k-means on the codes gives pseudo-labels that a classification head on the "
                             "code learns with the reconstruction (default 0: off)")
    parser.add_argument("--self-label-k", type=at_least_two, default=OBJECTIVE_DEFAULTS["self_label_k"], metavar="K", help="pseudo-classes of each "
                                                                                                                           "self-labelling round (default "
                                                                                                                           "%(default)s)")


def tilt_angle(text: str) -> float:
    value = positive_float(text)
    if value > 90:
        raise argparse.ArgumentTypeError(f"expected the largest tilt angle in (0, 90] degrees, got {text!r}")
    return value


def at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def options_from_args(args: argparse.Namespace, **overrides: Any) -> TrainOptions:
    from ...runs.options import TrainOptions

    values = dict(
        epochs=getattr(args, "epochs", 100), batch_size=args.batch_size, encoding_dim=getattr(args, "encoding_dim", 32),
        l1=getattr(args, "l1", 1e-4), published=getattr(args, "published", False), polarity=getattr(args, "polarity", None),
        patience=getattr(args, "patience", 20), learning_rate=getattr(args, "learning_rate", 0.001),
        validation_split=getattr(args, "validation_split", 0.1), n_init=args.n_init, kmeans=args.kmeans, flips=args.flips, smooth_sigma=args.smooth_sigma,
        seed=args.seed, deterministic=args.seed is not None, retrain=getattr(args, "retrain", False),
        mixed_precision=getattr(args, "mixed_precision", None), distribute=getattr(args, "distribute", None),
        port=getattr(args, "port", None), workers=args.workers, verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
        **{key: getattr(args, key, default) for key, default in OBJECTIVE_DEFAULTS.items()},
        baseline=getattr(args, "baseline", True), merge=_merge_groups(args),
    )
    values.update(overrides)
    return TrainOptions(**values)


def _merge_groups(args):
    from ...clustering.merge import parse_merge

    return parse_merge(getattr(args, "merge", None)) or None


def report(record: Mapping[str, Any], out_dir: str | os.PathLike) -> None:
    """The last line: what happened, in the tool's words, and where the report is."""
    from ...network.codes import code_health

    n_clusters = record["inputs"]["n_clusters"]
    filled = sum(1 for size in record["cluster_sizes"].values() if size > 0)
    from ...runs.folder import RunFolder

    page = RunFolder(out_dir).report_page
    where = f"report: {page}" if os.path.isfile(page) else "no report page (see the warning above)"
    codes = record.get("codes") or {}
    health = code_health(codes, n_clusters)
    units = f"{codes.get('active_code_units')} of {record['options'].get('encoding_dim')} code units active, {codes.get('distinct_codes')} distinct codes"
    if health == "dead":
        print(
            f"the codes collapsed ({units}): {record['n_subvolumes']} subvolumes fill only {filled} of {n_clusters} clusters, "
            f"which is not a clustering (the warning above says what to change); {where}"
        )
        return
    note = f"; the codes are nearly dead ({units})" if health == "nearly dead" else ""
    print(
        f"clustered {record['n_subvolumes']} subvolumes into {n_clusters} clusters ({filled} non-empty) "
        f"in {record['timings']['total_s']:.1f} s{note}; {where}"
    )


def main(args: argparse.Namespace) -> int:
    from ...workflows.train import run_train

    record = run_train(args.data, args.tomogram, args.pose, args.n_clusters, args.out, options_from_args(args))
    if "worker" in record:  # another worker of --distribute multiworker: the chief writes and reports
        print(f"{record['worker']}: trained alongside the chief, which writes {os.path.abspath(args.out)}")
        return 0
    report(record, args.out)
    return 0
