"""Density models for the simulator: macromolecule-like particles and membranes.

Every particle class is a signed distance function in nanometres, in the
class's own (canonical) frame: positive inside, negative outside. A particle
is rendered by evaluating it on the voxels around its centre, rotated into
that frame, and smoothing the edge over about one voxel. Membranes are a
bilayer profile (two dense leaflets about 4 nm apart and a lighter core)
along the distance to a plane or a sphere.

Densities are positive here (protein = 1); the simulator makes them dark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ParticleClass:
    """A macromolecule-like class.

    Attributes:
        name: short identifier used in truth.json and in the label map.
        description: what it is meant to look like.
        radius_nm: radius of a sphere about the canonical origin that holds it.
        sdf: function (x, y, z in nm, canonical frame) -> signed distance in nm.
    """

    name: str
    description: str
    radius_nm: float
    sdf: object


def _sphere(x, y, z, r, c=(0.0, 0.0, 0.0)):
    return r - np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)


def _ellipsoid(x, y, z, axes, c=(0.0, 0.0, 0.0)):
    """Approximate signed distance of an ellipsoid (exact on the axes)."""
    k = np.sqrt(((x - c[0]) / axes[0]) ** 2 + ((y - c[1]) / axes[1]) ** 2 + ((z - c[2]) / axes[2]) ** 2)
    return (1.0 - k) * min(axes)


def _ribosome(x, y, z):
    """Two lobes: a large subunit and a flatter small subunit beside it."""
    large = _ellipsoid(x, y, z, (10.0, 9.0, 8.0), c=(0.0, 0.0, -3.5))
    small = _ellipsoid(x, y, z, (8.5, 6.0, 4.0), c=(1.5, 0.0, 7.5))
    return np.maximum(large, small)


def _barrel(x, y, z):
    """A hollow cylinder (proteasome-like), 16 nm long, open along z."""
    rho = np.sqrt(x**2 + y**2)
    outer = 5.5 + 0.6 * np.cos(2 * np.pi * z / 8.0)
    return np.minimum(np.minimum(outer - rho, rho - 2.0), 8.0 - np.abs(z))


def _double_ring(x, y, z):
    """Two stacked tori (chaperonin-like), 16 nm across, 11 nm high."""
    rho = np.sqrt(x**2 + y**2)
    tube = 2.6
    rings = [tube - np.sqrt((rho - 5.4) ** 2 + (z - dz) ** 2) for dz in (-2.9, 2.9)]
    return np.maximum(rings[0], rings[1])


def _globule(x, y, z):
    """A small compact protein, 7 nm across, slightly elongated."""
    return _ellipsoid(x, y, z, (3.6, 3.2, 2.8))


def _filament(x, y, z):
    """A 28 nm segment of a two-start helical filament (actin-like)."""
    dist = np.full(np.shape(x), -np.inf)
    for i in range(11):
        zc = -13.75 + 2.75 * i
        phi = np.deg2rad(166.0) * i
        c = (2.2 * np.cos(phi), 2.2 * np.sin(phi), zc)
        dist = np.maximum(dist, _sphere(x, y, z, 2.8, c))
    return np.minimum(dist, 14.0 - np.abs(z))


def _tetramer(x, y, z):
    """Four subunits on the corners of a tetrahedron, 19 nm across."""
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) * (6.2 / np.sqrt(3))
    dist = np.full(np.shape(x), -np.inf)
    for c in corners:
        dist = np.maximum(dist, _sphere(x, y, z, 3.3, c))
    return dist


CLASSES = (
    ParticleClass("ribosome", "two-lobed, ribosome-like, 25 nm", 14.0, _ribosome),
    ParticleClass("barrel", "hollow barrel, proteasome-like, 16 x 13 nm", 10.5, _barrel),
    ParticleClass("double_ring", "two stacked rings, chaperonin-like, 16 x 11 nm", 10.0, _double_ring),
    ParticleClass("globule", "small compact globule, 7 nm", 4.5, _globule),
    ParticleClass("filament", "helical filament segment, 28 x 9 nm", 15.0, _filament),
    ParticleClass("tetramer", "four subunits on a tetrahedron, 19 nm", 10.0, _tetramer),
)
"""The default classes, in label order (label 1 is the first)."""


def class_by_name(name: str) -> ParticleClass:
    """The class called ``name`` (KeyError if none)."""
    for cls in CLASSES:
        if cls.name == name:
            return cls
    raise KeyError(name)


def soft_edge(sd_nm: np.ndarray, voxel_nm: float) -> np.ndarray:
    """Density in [0, 1] from a signed distance: a linear ramp one voxel wide."""
    return np.clip(0.5 + sd_nm / voxel_nm, 0.0, 1.0)


def local_grid(radius_vox: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer voxel offsets -r..r along each axis, as three broadcastable arrays."""
    r = np.arange(-radius_vox, radius_vox + 1, dtype=float)
    return r[:, None, None], r[None, :, None], r[None, None, :]


def render_particle(
    cls: ParticleClass, rotation: np.ndarray, voxel_nm: float, shift_nm: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
) -> tuple[NDArray[np.float32], int]:
    """Render one particle on a cubic grid centred on its centre voxel.

    Args:
        cls: a :class:`ParticleClass`.
        rotation: 3x3 matrix taking canonical coordinates to tomogram ones.
        voxel_nm: voxel size in nm.
        shift_nm: canonical position that lands on the centre voxel (e.g. the
            class's centre of mass).

    Returns:
        (density, radius): float32 density of side ``2 * radius + 1`` voxels.
    """
    radius = int(np.ceil(cls.radius_nm / voxel_nm)) + 1
    gx, gy, gz = local_grid(radius)
    d = [gx * voxel_nm, gy * voxel_nm, gz * voxel_nm]
    # canonical q = R^T d + shift: row i of R^T is column i of R
    q = [sum(rotation[j, i] * d[j] for j in range(3)) + shift_nm[i] for i in range(3)]
    sd = cls.sdf(*q)
    return soft_edge(sd, voxel_nm).astype(np.float32), radius


def principal_frame(cls: ParticleClass, voxel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (nm) and principal axes of a class in its canonical frame.

    Returns:
        (com, axes): ``axes`` has the eigenvectors of the density's second-moment
        matrix as columns, by decreasing eigenvalue, forming a proper rotation.
    """
    density, radius = render_particle(cls, np.eye(3), voxel_nm)
    grid = [g * voxel_nm for g in np.meshgrid(*(np.arange(-radius, radius + 1.0),) * 3, indexing="ij")]
    total = density.sum()
    com = np.array([(density * g).sum() / total for g in grid])
    centred = [g - c for g, c in zip(grid, com)]
    moments = np.array([[(density * a * b).sum() for b in centred] for a in centred])
    values, vectors = np.linalg.eigh(moments)
    axes = vectors[:, np.argsort(-np.abs(values))]
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    return com, axes


def bilayer(t_nm: np.ndarray) -> np.ndarray:
    """Bilayer density across a membrane at signed distance ``t_nm`` from its mid-plane.

    Two dense head-group leaflets 4 nm apart and a lighter hydrophobic core:
    about 5 nm thick in all.
    """
    heads = np.exp(-((t_nm - 2.0) ** 2) / (2 * 0.7**2)) + np.exp(-((t_nm + 2.0) ** 2) / (2 * 0.7**2))
    core = 0.3 * np.exp(-(t_nm**2) / (2 * 1.0**2))
    return heads + core


MEMBRANE_HALF_WIDTH_NM = 3.5
"""Distance from the mid-plane within which a membrane blocks particles."""
