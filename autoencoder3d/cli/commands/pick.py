"""Pick particles in a tomogram by Difference of Gaussian and cut their subvolumes.

Defaults are the published ones: sigma1 = 7 nm (converted with the header's
voxel size, at least 2 voxels), sigma2 = 1.1 sigma1, dark particles,
threshold t = 3, peaks closer than 2 sigma1 merged, boxes that leave the
tomogram dropped. Whenever a value asked for is changed (a sigma1 below 2
voxels, a block below 8), one line says what was asked, what is used, why,
and how to ask for another.

Choosing sigma1: sigma1 is the standard deviation of the smaller Gaussian
(sigma2 = 1.1 sigma1), in nm ('7nm'), A ('70A') or voxels ('5' or '5vox').
The DoG responds most to a ball of radius r when sigma1 = r / sqrt(3 x 1.1),
about 0.55 r: the scale-space rule for a 3D blob (sigma = r / sqrt(3)) at
the geometric mean of the two sigmas. So for particles of radius r nm in a
tomogram of a nm per voxel: sigma1 = 0.55 r / a voxels, or 0.55 r in nm
(--sigma1 7nm for r = 12.7 nm). The published 7 nm suits particles about 25
nm across (ribosome-sized); for a layer of thickness w (a membrane, a
protein lattice) the same rule in one dimension gives sigma1 = 0.48 w. A
sigma1 given in nm or A below 2 voxels is raised to 2 (published); a sigma1
given in voxels is used as given.

When most picks fall on background: look at OUT.png; raise --threshold (t =
3 keeps every peak above 15% of the range of peak values, which can include
many noise peaks; try 5 or more) or keep the strongest with --max-particles;
match sigma1 to the particle (too small picks noise and fine texture, too
large merges neighbours); check --polarity (dark picks dark blobs: picks
between the particles mean the contrast is the other way round; --polarity
auto decides from the intensities).

Writes:
  OUT.pickle                         the subvolumes, published format (uuid keys, centres
                                     as x, y, z voxel indices counted from 0)
  OUT.star                           RELION 4 / Warp pixel coordinates with the tomogram name
  OUT.csv                            x, y, z, uuid, score
  OUT.png                            preview: up to 3 slabs (z means, a box thick) with the
                                     picks circled (box diameter) and a scale bar in nm

Example usage:
    autoencoder3d pick tomo.rec picks.pickle --box 32
    autoencoder3d pick tomo.rec picks.pickle --sigma1 5 --max-particles 2000 --workers 2
    autoencoder3d pick binned.rec picks.pickle --box 16 --sigma1 1.75vox --threshold 6
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from ..common import add_polarity, finite_float, positive_int


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tomogram", metavar="TOMOGRAM", help="tomogram (MRC/REC), read memory-mapped")
    parser.add_argument("out", metavar="OUT.pickle", help="output subvolume pickle; OUT.star, OUT.csv and OUT.png are written beside it")
    parser.add_argument("--sigma1", default="7nm",
                        help="sigma of the smaller Gaussian: '7nm', '70A' or voxels ('5', '5vox'); about 0.55 x the particle's radius "
                             "(see above); default 7nm, at least 2 voxels when given in nm or A")
    parser.add_argument("--threshold", type=finite_float, default=3.0, help="t in T = m + t (M - m) / 20 (default 3)")
    parser.add_argument("--box", type=int, default=32, help="subvolume side in voxels (default 32)")
    parser.add_argument("--max-particles", type=positive_int, default=None, help="keep at most N picks, strongest first")
    add_polarity(parser)
    parser.add_argument("--dark", dest="polarity", action="store_const", const="dark", help="same as --polarity dark")
    parser.add_argument("--bright", dest="polarity", action="store_const", const="bright", help="same as --polarity bright")
    parser.add_argument("--block", type=positive_int, default=128, help="side of the blocks processed at a time (default 128)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel blocks (default: all cores)")


def main(args: argparse.Namespace) -> int:
    from ...box import check_box_option
    from ...errors import InputError
    from ...formats.mrc import read_tomogram
    from ...formats.subvolume_pickle import save_subvolumes
    from ...prep.contrast import resolve_polarity
    from ...prep.pick import SIGMA_RATIO, dog_pick, extract_boxes, parse_sigma, sigma_in_voxels, write_pick_tables
    from ...prep.pick_preview import write_pick_preview

    check_box_option(args.box)
    value, unit = parse_sigma(args.sigma1)
    tomogram = read_tomogram(args.tomogram)
    sigma1 = sigma_in_voxels(value, unit, tomogram.voxel_size, tomogram.path, tomogram.shape)
    polarity, _ = resolve_polarity(args.polarity, tomogram.data, tomogram.path)
    logging.getLogger("autoencoder3d").info(
        "%s: %s voxels, voxel size %g A; sigma1 %.3g voxels, sigma2 %.3g, peaks closer than %.3g voxels merged, polarity %s",
        tomogram.path, tomogram.shape, tomogram.voxel_size[0], sigma1, SIGMA_RATIO * sigma1, 2 * sigma1, polarity)
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
    preview = write_pick_preview(os.path.splitext(args.out)[0] + ".png", tomogram, subvolumes.centers, args.box, polarity)
    seconds = time.perf_counter() - t0
    print(
        f"picked {len(subvolumes)} particles in {seconds:.1f} s ({picks.n_peaks} peaks, threshold {picks.threshold:.4g}, "
        f"{picks.n_border} dropped at the border) -> {args.out}, {star}, {csv}, {preview.path} "
        f"({int(preview.shown.sum())} of them in its slabs)"
    )
    tomogram.close()
    return 0
