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

With a data set of many tomograms (a store from 'autoencoder3d dataset build')
as the run's DATA, every row carries its own tomogram: rlnTomoName and
rlnMicrographName per row, RELION 5 centres from that tomogram's size and
voxel size (--tomograms, else the tomograms.star the store was built from,
gives RELION's own), a tomogram column first in the CSV, and one IMOD model
per tomogram, particles/all_imod/TOMO.mod (object N+1 = cluster N in each).

--format copick writes, for each chosen cluster, one pick set per copick run
(the data set's tomogram names must be the project's run names) as object
cluster-NNN by --copick-user (default autoencoder3d) in --copick-session
(default: 1 + the largest number that user has used); objects the config
lacks are added to its pickable_objects. Locations in Angstrom (voxel x voxel
size); transforms hold the pose rotation when pose normalization ran. Two
exports into one project never run at once: the second stops with one line
(a lock in the project's overlay folder), as an export into a run folder that
another command is writing does.

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
    autoencoder3d export runs/k40 --format copick --copick-config copick.json --clusters 3,7
"""

from __future__ import annotations

import argparse

from ..common import positive_float


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder of a finished 'autoencoder3d train' run")
    parser.add_argument("--format", default="mrc,star,csv,imod",
                        help="comma-separated: mrc, star, csv, imod, copick (default mrc,star,csv,imod)")
    parser.add_argument("--clusters", default=None, help="export only these clusters, e.g. 3,5,17")
    parser.add_argument("--tomogram", default=None, help="the tomogram, when run.json names none or it has moved")
    parser.add_argument("--tomograms", default=None, help="RELION 5 tomograms.star: tomogram name, tilt-series pixel size and size")
    parser.add_argument("--ts-angpix", type=positive_float, default=None, help="tilt-series (unbinned) pixel size in A, for NNN.star")
    parser.add_argument("--tomo-name", default=None, help="rlnTomoName to write (default: from tomograms.star or the file name)")
    parser.add_argument("--series-name", default=None, help="WarpTools/M series name (default: TOMO_NAME.tomostar)")
    parser.add_argument("--copick-config", metavar="CONFIG", default=None, help="copick project config (JSON) for --format copick (default: the one the data "
                                                                                "set was built from)")
    parser.add_argument("--copick-user", metavar="USER", default=None, help="copick user id of the picks (default autoencoder3d)")
    parser.add_argument("--copick-session", metavar="ID", default=None,
                        help="copick session id (default: 1 + the largest number the user has used, 1 at first)")


def main(args: argparse.Namespace) -> int:
    from ...export import export_run

    written = export_run(
        args.run_dir, formats=args.format, clusters=args.clusters, tomogram=args.tomogram, tomo_name=args.tomo_name,
        series_name=args.series_name, ts_angpix=args.ts_angpix, tomograms_star=args.tomograms,
        copick_config=args.copick_config, copick_user=args.copick_user, copick_session=args.copick_session,
    )
    for kind in ("mrc", "star", "csv", "imod"):
        if written[kind]:
            print(f"wrote {len(written[kind])} {kind.upper()} files under {args.run_dir}/clus-center/")
    if written["copick"]:
        where = f" into the project of {args.copick_config}" if args.copick_config else ""
        print(f"wrote {len(written['copick'])} copick pick sets{where}")
    return 0
