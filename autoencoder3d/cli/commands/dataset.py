"""Build one data set (an on-disk store) from many tomograms; convert a pickle or an older store; describe a store.

  autoencoder3d dataset build OUT.zarr --table picks.csv [--tomogram-dir DIR]
  autoencoder3d dataset build OUT.zarr --relion tomograms.star particles.star
  autoencoder3d dataset build OUT.zarr --copick config.json --object ribosome --user alice --voxel-spacing 10 --tomo-type wbp
  autoencoder3d dataset build OUT.zarr --pick TOMO1.mrc TOMO2.mrc ...   (or --pick-list FILE)
  autoencoder3d dataset convert subvolumes.pickle OUT.zarr [--tomogram tomo.rec]
  autoencoder3d dataset convert OLD.zarr OUT.zarr          (an older store in the current layout)
  autoencoder3d dataset info OUT.zarr

Writes:
  OUT.zarr                           the store: one part per tomogram (subvolumes, uuid, centre, pose)

Every train/cluster/report/export/edss3d command takes the store as DATA. A
build that stops is resumed by the same command; finished tomograms are kept,
unless their tomogram or particles changed since (those are cut again). One
build or convert at a time writes a store; a second is refused.
"""

from __future__ import annotations

import argparse
import os

from ..common import add_polarity, finite_float, non_negative_float, positive_float, positive_int


def _add_build(sub):
    build = sub.add_parser("build", help="extract the subvolumes of many tomograms into a store",
                           description="Extract the subvolumes of many tomograms into one store, tomogram by tomogram.")
    build.add_argument("out", metavar="OUT.zarr", help="the store folder to write (or to finish)")
    source = build.add_argument_group("the particles (exactly one)").add_mutually_exclusive_group(required=True)
    source.add_argument("--table", metavar="CSV", help="CSV with the header tomogram,x,y,z (voxels from 0; optional uuid)")
    source.add_argument("--relion", nargs=2, metavar=("TOMOGRAMS_STAR", "PARTICLES_STAR"), help="RELION 5 tomograms.star and particles.star")
    source.add_argument("--copick", metavar="CONFIG", help="copick project config (JSON)")
    source.add_argument("--pick", nargs="+", metavar="TOMOGRAM", help="pick (DoG) each of these tomograms")
    source.add_argument("--pick-list", metavar="FILE", help="pick (DoG) each tomogram listed in FILE, one path a line")
    build.add_argument("--tomogram-dir", metavar="DIR", help="find tomograms by name in DIR (--table, --relion)")
    group = build.add_argument_group("copick")
    group.add_argument("--object", help="pickable object whose picks to use")
    group.add_argument("--user", help="user id of the picks")
    group.add_argument("--session", help="session id of the picks (default: the only one)")
    group.add_argument("--voxel-spacing", type=positive_float, help="voxel spacing (A) of the tomograms")
    group.add_argument("--tomo-type", help="tomogram type, e.g. wbp or denoised")
    group = build.add_argument_group("picking (--pick, --pick-list)")
    group.add_argument("--sigma1", default="7nm", help="sigma of the smaller Gaussian: '7nm', '70A' or voxels ('5'), about 0.55 x the particle's radius "
                       "(see 'autoencoder3d pick --help'); default 7nm, at least 2 voxels when given in nm or A")
    group.add_argument("--threshold", type=finite_float, default=3.0, help="t in T = m + t (M - m) / 20 (default 3)")
    group.add_argument("--max-particles", type=positive_int, default=None, help="keep at most N picks per tomogram")
    build.add_argument("--box", type=positive_int, default=32, help="subvolume side in voxels (default 32)")
    build.add_argument("--pose", action="store_true", help="pose-normalize each tomogram's subvolumes against it")
    add_polarity(build)
    build.add_argument("--smooth-sigma", type=non_negative_float, default=2.0, help="Gaussian smoothing for pose normalization, voxels (default 2.0)")
    build.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage type of the subvolumes (default float32)")
    build.add_argument("--partial", choices=("drop", "fill"), default="drop", help="boxes that leave the tomogram: drop (default) or fill")
    build.add_argument("--workers", type=positive_int, default=1,
                       help="tomograms extracted at once, one process each (default 1); SIGTERM or Ctrl-C stops them all at once")
    build.add_argument("--block", type=positive_int, default=256,
                       help="subvolumes cut and written at a time per worker (default 256, rounded down to whole chunks of the store)")
    return build


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(title="jobs", metavar="JOB", dest="job")
    sub.required = True
    parsers = [_add_build(sub)]
    convert = sub.add_parser("convert", help="write a subvolume pickle, or an older store, as a store (same order)",
                             description="Write the published subvolume pickle as a one-tomogram store, in its order; or rewrite "
                                         "a store (e.g. one of one subvolume per chunk) in the current layout, with the same subvolumes.")
    convert.add_argument("pickle", metavar="PICKLE|STORE", help="subvolume pickle (published format), or a store to rewrite")
    convert.add_argument("out", metavar="OUT.zarr", help="the store folder to write (must not exist)")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace OUT.zarr if it is a store (the new store takes its place only when complete)")
    convert.add_argument("--tomogram", metavar="TOMOGRAM", help="the tomogram the subvolumes come from (name, voxel size); a pickle only")
    convert.add_argument("--dtype", choices=("float32", "float16"), default=None,
                         help="storage type of a pickle's subvolumes (default float32); a store keeps its own")
    info = sub.add_parser("info", help="one line per tomogram of a store, and the totals",
                          description="Print one line per tomogram of a store (name, subvolumes, voxel size) and the totals.")
    info.add_argument("store", metavar="STORE", help="a store made by 'autoencoder3d dataset build'")
    for job in parsers + [convert, info]:
        job.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                         help="print only warnings, errors and the final result line")


def _jobs(args):
    from ...data.sources.jobs import jobs_from_table, jobs_to_pick, read_pick_list
    from ...errors import InputError

    if args.copick is None and any(v is not None for v in (args.object, args.user, args.session, args.voxel_spacing, args.tomo_type)):
        raise InputError("--object, --user, --session, --voxel-spacing and --tomo-type go with --copick")
    if args.table:
        return jobs_from_table(args.table, args.tomogram_dir), {"kind": "table", "table": os.path.abspath(args.table)}
    if args.relion:
        from ...data.sources.relion import jobs_from_relion

        return jobs_from_relion(*args.relion, args.tomogram_dir), {"kind": "relion", "star": [os.path.abspath(p) for p in args.relion]}
    if args.copick:
        from ...data.sources.copick import jobs_from_copick

        missing = [f"--{n.replace('_', '-')}" for n in ("object", "user", "voxel_spacing", "tomo_type") if getattr(args, n) is None]
        if missing:
            raise InputError(f"--copick {args.copick}: also give {', '.join(missing)}")
        source = {"kind": "copick", "config": os.path.abspath(args.copick), "object": args.object, "user": args.user,
                  "session": args.session, "voxel_spacing": args.voxel_spacing, "tomo_type": args.tomo_type}
        return jobs_from_copick(args.copick, args.object, args.user, args.voxel_spacing, args.tomo_type, args.session), source
    tomograms = args.pick if args.pick else read_pick_list(args.pick_list)
    return jobs_to_pick(tomograms, "--pick" if args.pick else args.pick_list), {"kind": "pick", "tomograms": [os.path.abspath(t) for t in tomograms]}


def _build(args):
    from ...data.store.build import BuildOptions, build_dataset
    from ...prep.pick import parse_sigma

    jobs, source = _jobs(args)
    pick = None
    if source["kind"] == "pick":
        pick = {"sigma1": list(parse_sigma(args.sigma1)), "threshold": args.threshold, "max_particles": args.max_particles}
    options = BuildOptions(box=args.box, pose=args.pose, polarity=args.polarity, smooth_sigma=args.smooth_sigma,
                           dtype=args.dtype, partial=args.partial, workers=args.workers, block=args.block, pick=pick)
    manifest = build_dataset(args.out, jobs, options, source=source)
    print(f"built {args.out}: {manifest['n_subvolumes']} subvolumes of {args.box}^3 from {len(jobs)} tomograms "
          f"in {manifest['build_seconds']:.1f} s")


def _convert(args):
    from ...data.store.convert import convert_pickle, convert_store
    from ...data.store.store import is_store
    from ...errors import InputError

    if is_store(args.pickle):
        given = [name for name, value in (("--tomogram", args.tomogram), ("--dtype", args.dtype)) if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)}: for a pickle; a store keeps its tomograms and storage type")
        manifest = convert_store(args.pickle, args.out, overwrite=args.overwrite)
        print(f"wrote {args.out}: {manifest['n_subvolumes']} subvolumes from {args.pickle}, "
              f"{manifest['chunk_subvolumes']} per chunk")
        return
    manifest = convert_pickle(args.pickle, args.out, args.tomogram, args.dtype or "float32", overwrite=args.overwrite)
    print(f"wrote {args.out}: {manifest['n_subvolumes']} subvolumes from {args.pickle}")


def main(args: argparse.Namespace) -> int:
    if args.job == "build":
        _build(args)
    elif args.job == "convert":
        _convert(args)
    else:
        from ...data.store.convert import describe_store

        print("\n".join(describe_store(args.store)))
    return 0
