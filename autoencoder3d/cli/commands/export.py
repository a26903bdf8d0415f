"""Export a finished run's clusters for ChimeraX, IMOD, RELION and Warp.

STAR: RELION 4 / Warp pixel coordinates from 0 with rlnTomoName, RELION 5
centred Angstrom (needs the tomogram's size and voxel size), rlnClassNumber =
cluster + 1, and rlnAngleRot/Tilt/Psi (ZYZ) when pose normalization ran. With
--clusters, selected.* replaces all.*.

Writes, in RUN_DIR/clus-center:
  mrc/NNN.mrc                        decoded cluster centres, the tomogram's voxel size
  particles/NNN.star                 RELION 4 / Warp particle list per cluster
  particles/NNN_relion5.star         RELION 5 particle list per cluster
  particles/NNN.csv                  x, y, z, uuid, cluster per cluster
  particles/all.star                 every cluster in one list (also all_relion5.star, all.csv)

Example usage:
    autoencoder3d export runs/k40
    autoencoder3d export runs/k40 --clusters 3,5,17 --format star,csv
"""


def add_args(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder of a finished 'autoencoder3d train' run")
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
