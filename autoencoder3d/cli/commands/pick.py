"""Pick particles in a tomogram by Difference of Gaussian and cut their subvolumes.

Defaults are the published ones: sigma1 = 7 nm (the particle radius, converted
with the header's voxel size, at least 2 voxels), sigma2 = 1.1 sigma1, dark
particles, threshold t = 3, peaks closer than 2 sigma1 merged, boxes that leave
the tomogram dropped.

Writes:
  OUT.pickle                         the subvolumes, published format (uuid keys, centres
                                     as x, y, z voxel indices counted from 0)
  OUT.star                           RELION 4 / Warp pixel coordinates with the tomogram name
  OUT.csv                            x, y, z, uuid, score

Example usage:
    autoencoder3d pick tomo.rec picks.pickle --box 32
    autoencoder3d pick tomo.rec picks.pickle --sigma1 5 --max-particles 2000 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from ..common import add_polarity


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tomogram", metavar="TOMOGRAM", help="tomogram (MRC/REC), read memory-mapped")
    parser.add_argument("out", metavar="OUT.pickle", help="output subvolume pickle; OUT.star and OUT.csv are written beside it")
    parser.add_argument("--sigma1", default="7nm", help="particle radius: '7nm', '70A' or voxels ('5'); default 7nm")
    parser.add_argument("--threshold", type=float, default=3.0, help="t in T = m + t (M - m) / 20 (default 3)")
    parser.add_argument("--box", type=int, default=32, help="subvolume side in voxels (default 32)")
    parser.add_argument("--max-particles", type=int, default=None, help="keep at most N picks, strongest first")
    add_polarity(parser)
    parser.add_argument("--dark", dest="polarity", action="store_const", const="dark", help="same as --polarity dark")
    parser.add_argument("--bright", dest="polarity", action="store_const", const="bright", help="same as --polarity bright")
    parser.add_argument("--block", type=int, default=128, help="side of the blocks processed at a time (default 128)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel blocks (default: all cores)")


def main(args: argparse.Namespace) -> int:
    from ...box import check_box_option
    from ...errors import InputError
    from ...formats.mrc import read_tomogram
    from ...formats.subvolume_pickle import save_subvolumes
    from ...prep.contrast import resolve_polarity
    from ...prep.pick import dog_pick, extract_boxes, parse_sigma, sigma_in_voxels, write_pick_tables

    check_box_option(args.box)
    if args.max_particles is not None and args.max_particles < 1:
        raise InputError(f"--max-particles {args.max_particles}: must be at least 1")
    value, unit = parse_sigma(args.sigma1)
    tomogram = read_tomogram(args.tomogram)
    sigma1 = sigma_in_voxels(value, unit, tomogram.voxel_size, tomogram.path)
    polarity, _ = resolve_polarity(args.polarity, tomogram.data, tomogram.path)
    logging.getLogger("autoencoder3d").info("%s: %s voxels, voxel size %g A; sigma1 %.2f voxels", tomogram.path, tomogram.shape, tomogram.voxel_size[0], sigma1)
    t0 = time.perf_counter()
    picks = dog_pick(
        tomogram.data, sigma1, threshold=args.threshold, dark=polarity == "dark", box=args.box,
        max_particles=args.max_particles, block=args.block, workers=args.workers, progress=not args.quiet,
    )
    if len(picks.centers) == 0:
        raise InputError(f"{tomogram.path}: no particles picked ({picks.n_peaks} peaks, {picks.n_border} too close to the border)")
    subvolumes, _ = extract_boxes(tomogram, picks.centers, args.box, extras=[{"score": float(s)} for s in picks.scores])
    subvolumes.prepared = {"polarity": polarity}  # later commands read it from the pickle
    save_subvolumes(args.out, subvolumes)
    star, csv = write_pick_tables(args.out, subvolumes, tomogram, picks.scores)
    seconds = time.perf_counter() - t0
    print(
        f"picked {len(subvolumes)} particles in {seconds:.1f} s ({picks.n_peaks} peaks, threshold {picks.threshold:.4g}, "
        f"{picks.n_border} dropped at the border) -> {args.out}, {star}, {csv}"
    )
    tomogram.close()
    return 0
