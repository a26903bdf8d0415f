"""Simulate a crowded cellular tomogram with ground truth (the example data).

Six particle classes (7-30 nm), membranes, missing wedge, CTF and noise. The
same --seed gives byte-identical files.

Writes, in OUT_DIR:
  tomogram.rec                       the noisy tomogram
  subvolumes_example_1.pickle        a box around every particle, picked with a few voxels of error
  subvolumes_example_2.pickle        already pose-normalized subvolumes of four classes
  truth.json                         class, true centre and rotation of every subvolume; the SNR reached
  density.mrc                        with --density: the noise-free density
  labels.mrc                         with --density: the class of every voxel

Example:
  autoencoder3d simulate example/data
  autoencoder3d simulate big --shape 400,400,150 --copies 150 --snr 0.1
"""

from __future__ import annotations

import argparse

from ...simulate.dataset import DEFAULTS
from ..common import add_seed


def shape_triple(text: str) -> tuple[int, int, int]:
    """Three positive integers, '200,200,120' or '200x200x120'."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers like 200,200,120, got {text!r}")
    return values


def add_args(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if needed)")
    add_seed(parser, default=d["seed"], purpose="of the simulation")
    parser.add_argument("--snr", type=float, default=d["snr"], help=f"signal-to-noise variance ratio (default {d['snr']})")
    parser.add_argument("--shape", type=shape_triple, default=d["shape"],
                        help=f"tomogram size x,y,z in voxels, z = beam (default {','.join(map(str, d['shape']))})")
    parser.add_argument("--voxel-size", type=float, default=d["voxel_size"], help=f"Angstrom per voxel (default {d['voxel_size']})")
    parser.add_argument("--copies", type=int, default=d["copies"], help=f"particles per class (default {d['copies']})")
    parser.add_argument("--box", type=int, default=d["box"], help=f"subvolume side in voxels, a multiple of 4 (default {d['box']})")
    parser.add_argument("--wedge", type=float, default=d["wedge"], help=f"largest tilt angle in degrees (default {d['wedge']:g}: +-60)")
    parser.add_argument("--defocus", type=float, default=d["defocus"], help=f"defocus in um, negative = underfocus (default {d['defocus']:g})")
    parser.add_argument("--jitter", type=float, default=d["jitter"], help=f"picking error, sd in voxels (default {d['jitter']:g})")
    parser.add_argument("--example-2-copies", type=int, default=d["example_2_copies"],
                        help=f"particles per class in subvolumes_example_2.pickle (default {d['example_2_copies']})")
    parser.add_argument("--no-membranes", action="store_true", help="leave out the membrane sheet and vesicles")
    parser.add_argument("--density", action="store_true", help="also write density.mrc and labels.mrc (noise-free)")


def main(args: argparse.Namespace) -> int:
    from ...simulate.dataset import simulate_dataset

    summary = simulate_dataset(
        args.out_dir, seed=args.seed, snr=args.snr, shape=args.shape, voxel_size=args.voxel_size,
        copies=args.copies, box=args.box, wedge=args.wedge, defocus=args.defocus, jitter=args.jitter,
        example_2_copies=args.example_2_copies, membranes=not args.no_membranes, write_density=args.density,
        progress=not args.quiet,
    )
    snr = summary["snr"]
    counts = summary["subvolumes"]
    print(f"wrote {', '.join(summary['files'])} to {summary['out_dir']} in {summary['seconds']:.1f} s")
    print(f"subvolumes: {counts['example_1']} in example 1, {counts['example_2']} in example 2")
    print(f"SNR asked {snr['asked']:g}, reached {snr['reached']:.3f} "
          f"(correlation of two noise realizations rho = {snr['rho']:.3f}; 2 rho / (1 - rho) = {snr['two_rho']:.3f})")
    return 0
