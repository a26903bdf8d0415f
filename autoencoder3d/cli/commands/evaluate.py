"""Score a clustering of simulated data against its ground truth.

CLUSTERING is a run folder of 'autoencoder3d train' (its clus-center/kmeans.pickle
is read), a clus-center folder, or a kmeans.pickle. TRUTH is the truth.json of
'autoencoder3d simulate'. Prints the adjusted Rand index, normalized mutual
information, homogeneity, completeness and purity. --baseline adds the same for
k-means with the same k on PCA of the raw voxels. The run's own PCA baseline
(clus-center/baseline-kmeans.pickle: PCA + k-means of the standardized
subvolumes its autoencoder read) is scored whenever the run saved it.

Writes, in --out DIR (default: clus-center/evaluation):
  evaluation.json                    the scores
  contingency.csv                    cluster x class table
  contingency.png                    the same, drawn
  baseline_contingency.csv           with --baseline: the table of the PCA baseline
  baseline_contingency.png           with --baseline: the same, drawn
  run_baseline_contingency.csv       the table of the run's own PCA baseline
  run_baseline_contingency.png       the same, drawn

Example:
  autoencoder3d evaluate example/run example/data/truth.json --baseline
"""

from __future__ import annotations

import argparse

from ..common import add_out, add_seed


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clustering", metavar="CLUSTERING", help="run folder, clus-center folder or kmeans.pickle")
    parser.add_argument("truth", metavar="TRUTH", help="truth.json written by 'autoencoder3d simulate'")
    parser.add_argument("--baseline", action="store_true", help="also score k-means (same k) on PCA of the raw voxels")
    parser.add_argument("--data", default=None,
                        help="the clustered subvolume pickle, for --baseline (default: the one truth.json names)")
    add_out(parser, metavar="DIR", default=None, help="output folder (default: clus-center/evaluation)")
    add_seed(parser, default=0, purpose="of the baseline")


def main(args: argparse.Namespace) -> int:
    from ...clustering.evaluate import evaluate_clustering, format_report

    result = evaluate_clustering(args.clustering, args.truth, out_dir=args.out, baseline=args.baseline,
                                 data=args.data, seed=args.seed)
    print(format_report(result))
    print(f"wrote evaluation.json and the contingency tables to {result['out_dir']}")
    return 0
