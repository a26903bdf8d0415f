"""Export a finished run's clusters for ChimeraX, IMOD, RELION, Warp and copick.

Writes, under RUN_DIR/clus-center/: mrc/NNN.mrc (decoded cluster centres with
the tomogram's voxel size) and particles/NNN.star, NNN_relion5.star, NNN.csv per
cluster plus all.* (or selected.* with --clusters). STAR: RELION 4 / Warp pixel
coordinates from 0 with rlnTomoName, RELION 5 centred Angstrom, rlnClassNumber
= cluster + 1, and rlnAngleRot/Tilt/Psi (ZYZ) when pose normalization ran.

Example usage:
    autoencoder3d export runs/k40
    autoencoder3d export runs/k40 --clusters 3,5,17 --format star,csv
"""


def add_args(parser):
    parser.add_argument("run_dir", help="folder of a finished 'autoencoder3d train' run")
    parser.add_argument("--format", default="mrc,star,csv", help="comma-separated: mrc, star, csv (default all)")
    parser.add_argument("--clusters", default=None, help="export only these clusters, e.g. 3,5,17")
    parser.add_argument("--tomogram", default=None, help="the tomogram, when run.json names none or it has moved")
    parser.add_argument("--tomo-name", default=None, help="name written as rlnTomoName (default: the tomogram's file name)")


def main(args):
    from ...export import export_run

    written = export_run(
        args.run_dir, formats=args.format, clusters=args.clusters, tomogram=args.tomogram, tomo_name=args.tomo_name
    )
    for kind in ("mrc", "star", "csv"):
        if written[kind]:
            print(f"wrote {len(written[kind])} {kind.upper()} files under {args.run_dir}/clus-center/")
    return 0
