"""Exports of a finished ``autoencoder3d train`` run for RELION, WarpTools/M, IMOD and ChimeraX.

:func:`export_run` reads only the run folder (``run.json``, ``clus-center/*.pickle``,
``pose-normalized.pickle`` when pose normalization ran) and the inputs that
``run.json`` names, and writes under ``clus-center/``:

- ``mrc/NNN.mrc``: each decoded cluster centre with the tomogram's voxel size
  (overlays in ChimeraX/IMOD) — :func:`.run._write_centres`;
- ``particles/NNN.star``: pixel coordinates for RELION 4, RELION 5's import,
  WarpTools and M (:mod:`.warp`);
- ``particles/NNN_relion5.star``: RELION 5 centred Angstrom (:mod:`.relion5`);
- ``particles/NNN.csv``: voxel coordinates of the tomogram, uuid and cluster;
- ``particles/NNN.mod``: an IMOD model, one object per cluster (:mod:`.imod_model`);

for every cluster and ``all.*`` (or the chosen clusters and ``selected.*``).
Every list carries ``rlnClassNumber`` = cluster + 1 and, when pose
normalization ran, ``rlnAngleRot/Tilt/Psi``: RELION's ZYZ angles of the pose
rotation ``rm`` (:mod:`.angles`). RELION's angles rotate the reference into the
particle: the normalized volume's voxel ``n // 2 + u`` is the tomogram point
``position + A u`` with ``A`` = :func:`relion_matrix` of the angles = ``rm``;
the position is that of voxel ``n // 2`` (:mod:`.geometry`), so the normalized
volume rotated by the angles about its box centre reproduces the particle.
"""

from .angles import relion_angles, relion_matrix
from .run import FORMATS, export_run

__all__ = ["FORMATS", "export_run", "relion_angles", "relion_matrix"]
