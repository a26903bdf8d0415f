"""Cut subvolumes from a tomogram at coordinates you already have.

COORDS may be a STAR file of RELION 3/4 or WarpTools/M (rlnCoordinateX/Y/Z,
pixels from 0, scaled by the pixel size the file states or --coords-angpix) or
RELION 5 (rlnCenteredCoordinateX/Y/ZAngst, Angstrom from the tomogram centre at
size/2); refinement shifts (rlnOriginX/Y/ZAngst, rlnOriginX/Y/Z) are applied.
Rows are matched to the tomogram by name: rec_TS_01.mrc, TS_01_10.00Apx.mrc and
TS_01.tomostar all mean TS_01 (--tomo-name to say it). --tomograms reads RELION
5's tomograms.star for the pixel size, binning and size. --normalized-coords
reads WarpTools' [0, 1] template-matching coordinates. COORDS may also be a
CSV/TXT with columns x, y, z (voxels from 0, or --one-based), a binary IMOD
model (.mod) or a model2point list ([object] contour x y z; --imod for 3
columns): IMOD model coordinates, whose first voxel centre is (0.5, 0.5, 0).
Coordinates outside the tomogram, and boxes that would leave it, are dropped
and counted (--partial fill keeps the latter, padded with their mean).

Writes:
  OUT.pickle                         the subvolumes, published format

Example usage:
    autoencoder3d extract tomo.rec particles.star subvolumes.pickle --box 32
    autoencoder3d extract tomo_bin4.rec warp.star out.pickle --coords-angpix 2.7
    autoencoder3d extract rec_TS_01.mrc particles.star out.pickle --tomograms tomograms.star
"""

from __future__ import annotations

import argparse

from ..common import positive_float


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tomogram", metavar="TOMOGRAM", help="tomogram (MRC/REC), read memory-mapped")
    parser.add_argument("coords", metavar="COORDS", help="coordinates: .star, .csv/.txt, IMOD .mod or model2point list")
    parser.add_argument("out", metavar="OUT.pickle", help="output subvolume pickle")
    parser.add_argument("--box", type=int, default=32, help="subvolume side in voxels (default 32)")
    parser.add_argument("--coords-angpix", type=positive_float, default=None, help="pixel size (A) of the coordinates, when not the tomogram's")
    parser.add_argument("--tomo-name", default=None, help="the tomogram's name in the STAR file (default: from its file name)")
    parser.add_argument("--tomograms", default=None, help="RELION 5 tomograms.star: pixel size, binning and size of the tomogram")
    parser.add_argument("--normalized-coords", action="store_true", help="STAR coordinates normalized to [0, 1] (WarpTools template matching)")
    parser.add_argument("--imod", action="store_true", help="a 3-column text list holds IMOD model coordinates")
    parser.add_argument("--one-based", action="store_true", help="CSV/TXT coordinates count voxels from 1")
    parser.add_argument("--partial", choices=("drop", "fill"), default="drop", help="boxes that leave the tomogram: drop (default) or fill")


def main(args: argparse.Namespace) -> int:
    from ...box import check_box_option
    from ...formats.coords import read_coordinates
    from ...formats.mrc import read_tomogram
    from ...formats.subvolume_pickle import save_subvolumes
    from ...prep.pick import extract_boxes

    check_box_option(args.box)
    tomogram = read_tomogram(args.tomogram)
    xyz = read_coordinates(
        args.coords, tomogram.shape, tomogram.voxel_size, args.coords_angpix, tomogram.path, args.one_based,
        tomo_name=args.tomo_name, tomograms_star=args.tomograms, imod=args.imod,
        normalized=args.normalized_coords,
    )
    subvolumes, counts = extract_boxes(tomogram, xyz, args.box, partial=args.partial)
    save_subvolumes(args.out, subvolumes)
    note = f"; dropped {counts['outside']} outside the tomogram"
    if args.partial == "drop":
        note += f" and {counts['partial']} whose box leaves it"
    else:
        note += f"; padded {counts['partial']} boxes that leave it"
    print(f"extracted {len(subvolumes)} of {len(xyz)} subvolumes of {args.box}^3{note} -> {args.out}")
    tomogram.close()
    return 0
