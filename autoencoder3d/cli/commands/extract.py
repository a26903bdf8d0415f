"""Cut subvolumes from a tomogram at coordinates you already have.

COORDS may be a RELION 4 / Warp STAR file (rlnCoordinateX/Y/Z, pixels counted
from 0; --coords-angpix when they were picked on another binning), a RELION 5
STAR file (rlnCenteredCoordinateX/Y/ZAngst, Angstrom from the tomogram centre
at size/2), a CSV/TXT with columns x, y, z (voxels from 0, or --one-based), or
an IMOD model2point list ([object] [contour] x y z, IMOD model coordinates from 0).
Coordinates outside the tomogram, and boxes that would leave it, are dropped
and counted (--partial fill keeps the latter, padded with their mean).

Example usage:
    autoencoder3d extract tomo.rec particles.star subvolumes.pickle --box 32
    autoencoder3d extract tomo_bin4.rec warp.star out.pickle --coords-angpix 2.7
"""


def add_args(parser):
    parser.add_argument("tomogram", help="tomogram (MRC/REC), read memory-mapped")
    parser.add_argument("coords", help="coordinates: .star, .csv/.txt, or an IMOD model2point list")
    parser.add_argument("out", help="output subvolume pickle")
    parser.add_argument("--box", type=int, default=32, help="subvolume side in voxels (default 32)")
    parser.add_argument("--coords-angpix", type=float, default=None, help="pixel size (A) of the coordinates, when not the tomogram's")
    parser.add_argument("--one-based", action="store_true", help="CSV/TXT coordinates count voxels from 1")
    parser.add_argument("--partial", choices=("drop", "fill"), default="drop", help="boxes that leave the tomogram: drop (default) or fill")


def main(args):
    from ...coords import read_coordinates
    from ...errors import InputError
    from ...io import read_tomogram, save_subvolumes
    from ...pick import extract_boxes

    if args.box < 4:
        raise InputError(f"--box {args.box}: must be at least 4")
    if args.coords_angpix is not None and not args.coords_angpix > 0:
        raise InputError(f"--coords-angpix {args.coords_angpix}: must be positive")
    tomogram = read_tomogram(args.tomogram)
    xyz = read_coordinates(
        args.coords, tomogram.shape, tomogram.voxel_size, args.coords_angpix, tomogram.path, args.one_based
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
