"""Write the cluster report clus-center/index.html of a finished run.

One self-contained page (opens from disk, no server, no network): a card per
cluster with its montage, central slices of the decoded centre and of real
members, sorted and filterable by size; a 2D map of the encodings (PCA and
t-SNE) coloured by cluster; the loss curve and the run's settings; and a
selection panel that builds the 'edss3d train ... --select 1=...' command and a
selection.json download. 'autoencoder3d train' writes it too. RUN_DIR's DATA may
be a pickle or a data set store; the maps draw a random sample of at most
--map-max-points subvolumes, all counts are exact, and with several tomograms
each card says how many of its members come from which.

Writes:
  RUN_DIR/clus-center/index.html     the page (or the file --out names)

Example:
  autoencoder3d report run1
  autoencoder3d report run1 --members 6 --no-tsne --out /tmp/run1.html
"""

from __future__ import annotations

import argparse

from ..common import add_out, add_seed, non_negative_int, positive_int


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output folder of 'autoencoder3d train' (holds run.json and clus-center/)")
    add_out(parser, metavar="PAGE.html", default=None, help="where to write the page (default: RUN_DIR/clus-center/index.html)")
    parser.add_argument("--members", type=non_negative_int, default=4, help="real member subvolumes shown per cluster (default 4)")
    parser.add_argument("--no-tsne", action="store_true", help="show only the PCA map")
    parser.add_argument("--tsne-max-points", type=positive_int, default=1000, help="t-SNE runs on at most this many encodings, drawn at random (default 1000)")
    parser.add_argument("--map-max-points", type=positive_int, default=5000,
                        help="the 2D maps draw at most this many subvolumes, at random; the page says how many of how many (default 5000)")
    add_seed(parser, default=0, purpose="of t-SNE and the random draws of points")


def main(args: argparse.Namespace) -> int:
    from ...clustering.stability import cluster_stability
    from ...report.page import write_report

    path = write_report(
        args.run_dir, args.out, n_members=args.members, tsne=not args.no_tsne,
        tsne_max_points=max(args.tsne_max_points, 5), map_max_points=max(args.map_max_points, 5), seed=args.seed,
        measure_stability=cluster_stability,  # for a run clustered before stability was recorded
    )
    print(f"wrote {path}")
    return 0
