"""Export a finished run's clusters for RELION, WarpTools/M, IMOD and ChimeraX.

Every particle list carries rlnClassNumber = cluster + 1 and, when pose
normalization ran, rlnAngleRot/Tilt/Psi (RELION ZYZ) at the position of the
pose-normalized subvolume's box centre. NNN.star holds rlnCoordinateX/Y/Z in
tilt-series pixels from 0 (rlnPixelSize; --ts-angpix or --tomograms, else
pixels of this tomogram) for RELION 4, RELION 5's import, WarpTools
(--coords_angpix) and M (--angpix_coords). Names: --tomo-name, else
tomograms.star's, else the tomogram's file name without rec_, _N.NNApx and
extensions (rec_TS_01.mrc gives TS_01); series name NAME.tomostar. With
--clusters, selected.* replaces all.*.

Writes, in RUN_DIR/clus-center:
  mrc/NNN.mrc                        decoded cluster centres, the tomogram's voxel size
  particles/NNN.star                 RELION 4 / WarpTools / M pixel list per cluster
  particles/NNN_relion5.star         RELION 5 list (centred Angstrom) per cluster
  particles/NNN.csv                  x, y, z voxels of the tomogram, uuid, cluster per cluster
  particles/NNN.mod                  IMOD model per cluster
  particles/all.star                 every cluster in one list (also all_relion5.star, all.csv, all.mod)

Example usage:
    autoencoder3d export runs/k40 --tomograms Tomograms/job006/tomograms.star
    autoencoder3d export runs/k40 --clusters 3,5,17 --format star,csv --ts-angpix 1.35
"""


def add_args(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder of a finished 'autoencoder3d train' run")
    parser.add_argument("--format", default="mrc,star,csv,imod", help="comma-separated: mrc, star, csv, imod (default all)")
    parser.add_argument("--clusters", default=None, help="export only these clusters, e.g. 3,5,17")
    parser.add_argument("--tomogram", default=None, help="the tomogram, when run.json names none or it has moved")
    parser.add_argument("--tomograms", default=None, help="RELION 5 tomograms.star: tomogram name, tilt-series pixel size and size")
    parser.add_argument("--ts-angpix", type=float, default=None, help="tilt-series (unbinned) pixel size in A, for NNN.star")
    parser.add_argument("--tomo-name", default=None, help="rlnTomoName to write (default: from tomograms.star or the file name)")
    parser.add_argument("--series-name", default=None, help="WarpTools/M series name (default: TOMO_NAME.tomostar)")


def main(args):
    from ...errors import InputError
    from ...export import export_run

    if args.ts_angpix is not None and not args.ts_angpix > 0:
        raise InputError(f"--ts-angpix {args.ts_angpix}: must be positive")
    written = export_run(
        args.run_dir, formats=args.format, clusters=args.clusters, tomogram=args.tomogram, tomo_name=args.tomo_name,
        series_name=args.series_name, ts_angpix=args.ts_angpix, tomograms_star=args.tomograms,
    )
    for kind in ("mrc", "star", "csv", "imod"):
        if written[kind]:
            print(f"wrote {len(written[kind])} {kind.upper()} files under {args.run_dir}/clus-center/")
    return 0
