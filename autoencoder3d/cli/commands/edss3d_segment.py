"""Segment a whole tomogram with a trained EDSS3D model (sliding, blended boxes).

The network slides over the tomogram in boxes of its training size, half
overlapping by default (--step), and the class probabilities of overlapping
boxes are blended with weights that favour box centres. The tomogram is
memory-mapped and the output written plane by plane, so tomograms larger than
memory work.

Writes:
  SEG.mrc                            8-bit label map with the tomogram's voxel size and
                                     axis order (overlays in IMOD/ChimeraX); --out names it
  SEG-class1.mrc                     with --probabilities: float32 probability map per class

Example:
  edss3d segment tomo.rec --model run1/model-seg/model-seg.keras --out tomo-seg.mrc
"""

from __future__ import annotations

import argparse

from ..common import add_out, non_negative_float, positive_int


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tomogram", metavar="TOMOGRAM", help="MRC/REC tomogram")
    parser.add_argument("--model", metavar="MODEL.keras", default="model-seg/model-seg.keras", help="EDSS3D model (default: model-seg/model-seg.keras)")
    add_out(parser, metavar="SEG.mrc", default="seg.mrc", help="label map to write (default: seg.mrc)")
    parser.add_argument("--step", type=positive_int, default=None, help="voxels between box starts (default: half the box; the box size gives no overlap)")
    parser.add_argument("--probabilities", action="store_true", help="also write a float32 probability map per class: SEG-class1.mrc, ...")
    parser.add_argument("--smooth-sigma", type=non_negative_float, default=0.0, help="smooth the tomogram on the fly (voxels); use 2.0 for a network trained "
                                                                                     "on pose-normalized subvolumes, which were cut from the smoothed "
                                                                                     "tomogram (default 0: as given)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="boxes predicted together (default 16)")


def main(args: argparse.Namespace) -> int:
    from ...edss3d.tomogram import segment_tomogram

    result = segment_tomogram(
        args.tomogram, args.model, args.out, step=args.step, batch_size=args.batch_size,
        probabilities=args.probabilities, progress=not args.quiet, smooth_sigma=args.smooth_sigma,
    )
    shape = "x".join(map(str, result["shape"]))
    print(
        f"segmented {shape} voxels in {result['seconds']:.1f} s ({result['voxels_per_second']:.3g} voxels/s); "
        f"voxels per class {result['voxels_per_class']}; wrote {', '.join(result['outputs'])}"
    )
    return 0
