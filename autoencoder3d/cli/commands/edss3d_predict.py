"""Segment every subvolume of a pickle with a trained EDSS3D model.

DATA may come from another tomogram, as long as its subvolumes have the
model's box size.

Writes, in --out RUN_DIR:
  prediction/vs_p.pickle             published layout: uuid -> (n, n, n, n_class),
                                     the winning class keeps its probability, the others 0
  prediction/labels.pickle           uuid -> uint8 label map

Example:
  edss3d predict other.pickle --out run1
  edss3d predict other.pickle --model run1/model-seg/model-seg.keras --out other-pred
"""

from __future__ import annotations

import argparse

from ..common import add_out, positive_int


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="subvolume pickle (published format) or data set store (read a block at a time)")
    parser.add_argument("--model", metavar="MODEL.keras", default=None, help="EDSS3D model (default: RUN_DIR/model-seg/model-seg.keras)")
    add_out(parser, help="folder for prediction/, usually the run folder (default: current folder)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="subvolumes predicted together (default 32)")


def main(args: argparse.Namespace) -> int:
    from ...edss3d.jobs import run_seg_predict

    result = run_seg_predict(args.data, args.model, args.out, batch_size=args.batch_size)
    print(f"segmented {result['n_subvolumes']} subvolumes in {result['seconds']:.1f} s; voxels per class {result['voxels_per_class']}; wrote {result['vs_p']}")
    return 0
