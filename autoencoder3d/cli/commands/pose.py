"""Pose-normalize subvolumes against their tomogram and write them as a pickle.

Centre of mass to the middle, major axis along x (published section 3; the
rotation is kept proper, so nothing is mirrored). The output has the input's
format, uuids and centres, plus each entry's 'rotation' (3x3) and
'center_of_mass'. 'train ... True' normalizes in exactly the same way.

Writes:
  OUT.pickle                         the normalized subvolumes, published format

Example:
  autoencoder3d pose data.pickle tomo.rec data-pose.pickle
"""

from __future__ import annotations

import argparse

from ..common import add_polarity, non_negative_float, positive_int


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="subvolume pickle in the published format")
    parser.add_argument("tomogram", metavar="TOMOGRAM", help="MRC/REC tomogram the subvolumes were cut from")
    parser.add_argument("output", metavar="OUT.pickle", help="where to write the normalized subvolumes")
    parser.add_argument("--smooth-sigma", type=non_negative_float, default=2.0, help="Gaussian smoothing of the tomogram, in voxels (default 2.0)")
    parser.add_argument("--workers", type=positive_int, default=None, help="threads to use (default: all cores)")
    add_polarity(parser, recorded=True)


def main(args: argparse.Namespace) -> int:
    from ...workflows.train import run_pose

    result = run_pose(args.data, args.tomogram, args.output, sigma=args.smooth_sigma, workers=args.workers, progress=not args.quiet,
                      polarity=args.polarity)
    print(f"wrote {len(result)} pose-normalized subvolumes to {args.output}")
    return 0
