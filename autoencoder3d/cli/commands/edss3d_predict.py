"""Segment every subvolume of a pickle with a trained EDSS3D model.

Writes prediction/vs_p.pickle in the published layout (uuid -> (n, n, n,
n_class): the winning class keeps its probability, the others are 0) and
prediction/labels.pickle (uuid -> uint8 label map). DATA may come from another
tomogram, as long as its subvolumes have the model's box size.

Example:
  edss3d predict other.pickle --out run1
  edss3d predict other.pickle --model run1/model-seg/model-seg.keras --out other-pred
"""

from ..common import positive_int, setup_logging


def add_args(parser):
    parser.add_argument("data", metavar="DATA", help="subvolume pickle (published format)")
    parser.add_argument("--model", default=None, help="EDSS3D model (default: OUT/model-seg/model-seg.keras)")
    parser.add_argument("--out", default=".", help="folder for prediction/ (default: current folder)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="subvolumes predicted together (default 32)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")


def main(args):
    setup_logging(args.quiet)
    from ...seg import run_seg_predict

    result = run_seg_predict(args.data, args.model, args.out, batch_size=args.batch_size)
    print(f"segmented {result['n_subvolumes']} subvolumes in {result['seconds']:.1f} s; voxels per class {result['voxels_per_class']}; wrote {result['vs_p']}")
    return 0
