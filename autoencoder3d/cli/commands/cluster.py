"""Redo only the clustering and figures with the autoencoder saved by 'train'.

Reads model/ in --out, encodes DATA (pose-normalized first when POSE is True),
runs k-means with N_CLUSTERS and rewrites the run's clustering. Takes the
published positional form of 'train' (DATA TOMOGRAM POSE N_CLUSTERS) or the
short one (DATA N_CLUSTERS, optionally with --tomogram and --pose).

Writes, in --out RUN_DIR:
WRITTEN_FILES

With --merge, each group of clusters becomes one cluster after k-means: the
group's lowest id keeps it, its other ids disappear (no members, centre or
files), every other cluster keeps its id, and the merged centre is decoded
from the mean code of its members. Give the same --seed as the run so that
k-means finds the same clusters (the report's selection panel composes the
command).

Example:
  autoencoder3d cluster data.pickle 50 --out run1
  autoencoder3d cluster data.pickle tomo.rec True 50 --out run1
  autoencoder3d cluster data.pickle 50 --out run1 --seed 1 --merge 3,7 --merge 12,15,40
"""

from __future__ import annotations

import argparse

from ...runs.folder import written_files
from ..common import add_clustering_options, add_out, add_polarity, add_seed, boolean, optional_path, positive_int

# the files a run folder holds are described by their owner, the run folder
__doc__ = __doc__.replace("WRITTEN_FILES", written_files(training=False))


class ClusterPositionals(argparse.Action):
    """``[TOMOGRAM POSE] N_CLUSTERS`` after DATA: the published form of 'train', or just the number."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) not in (1, 3):
            parser.error(f"expected DATA N_CLUSTERS or DATA TOMOGRAM POSE N_CLUSTERS, got {len(values) + 1} arguments")
        namespace.n_clusters = self._convert(parser, "N_CLUSTERS", positive_int, values[-1])
        if len(values) == 3:
            namespace.positional_tomogram = optional_path(values[0])
            namespace.positional_pose = self._convert(parser, "POSE", boolean, values[1])

    @staticmethod
    def _convert(parser, name, kind, text):
        try:
            return kind(text)
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument {name}: {err}")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [options] DATA [TOMOGRAM POSE] N_CLUSTERS"
    parser.add_argument("data", metavar="DATA", help="subvolume pickle in the published format, or a data set folder made by 'autoencoder3d dataset build'")
    parser.add_argument(
        "rest", nargs="+", metavar="[TOMOGRAM POSE] N_CLUSTERS", action=ClusterPositionals,
        help="number of k-means clusters, optionally after the tomogram (or None) and the pose flag as in 'train'",
    )
    add_out(parser)
    parser.add_argument("--pose", action="store_true", help="pose-normalize the subvolumes against --tomogram first (same as POSE True)")
    parser.add_argument("--tomogram", default=None, help="MRC/REC tomogram (needed with --pose; same as TOMOGRAM)")
    add_clustering_options(parser)
    parser.add_argument("--merge", action="append", default=None, metavar="IDS",
                        help="merge these clusters after k-means into one, e.g. --merge 1,3,5 (repeatable: --merge 1,3,5 --merge 2,7); "
                             "the lowest id keeps the merged cluster, the others disappear, every other id stays")
    add_polarity(parser, recorded=True)
    add_seed(parser)


def tomogram_and_pose(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The tomogram and pose flag, from the positional form or the options (not both)."""
    from ...errors import InputError

    if not hasattr(args, "positional_pose"):
        return args.tomogram, args.pose
    if args.tomogram is not None or args.pose:
        raise InputError("give the tomogram and pose flag either as TOMOGRAM POSE or as --tomogram/--pose, not both")
    return args.positional_tomogram, args.positional_pose


def main(args: argparse.Namespace) -> int:
    from ...workflows.train import run_train
    from .train import options_from_args, report

    tomogram, pose = tomogram_and_pose(args)
    options = options_from_args(args)
    record = run_train(args.data, tomogram, pose, args.n_clusters, args.out, options, command="cluster")
    report(record, args.out)
    return 0
