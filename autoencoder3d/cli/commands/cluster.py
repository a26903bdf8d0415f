"""Redo only the clustering and figures with the autoencoder saved by 'train'.

Reads model/ in --out, encodes DATA (pose-normalized first with --pose and
--tomogram), runs k-means with N_CLUSTERS and rewrites clus-center/ and run.json.

Example:
  autoencoder3d cluster data.pickle 50 --out run1
"""

from ..common import add_clustering_options, add_out, add_seed, positive_int, setup_logging


def add_args(parser):
    parser.add_argument("data", metavar="DATA", help="subvolume pickle in the published format")
    parser.add_argument("n_clusters", metavar="N_CLUSTERS", type=positive_int, help="number of k-means clusters")
    add_out(parser)
    parser.add_argument("--pose", action="store_true", help="pose-normalize the subvolumes against --tomogram first")
    parser.add_argument("--tomogram", default=None, help="MRC/REC tomogram (needed with --pose)")
    add_clustering_options(parser)
    add_seed(parser)


def main(args):
    setup_logging(args.quiet)
    from ...pipeline import run_train
    from .train import options_from_args, report

    options = options_from_args(args)
    record = run_train(args.data, args.tomogram, args.pose, args.n_clusters, args.out, options, command="cluster")
    report(record)
    return 0
