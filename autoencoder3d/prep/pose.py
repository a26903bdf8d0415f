"""Pose normalization: centre of mass and PCA rotation (published section 3).

For each subvolume the inverted density (dense matter made bright) gives a
centre of mass ``c`` and principal axes ``rm``; a box around the particle is cut
from the Gaussian-smoothed tomogram, rotated so the major axis lies along x and
the centre of mass sits in the middle, and the central block is kept.

Deviations from the published program, all toward its intent:
- ``rm`` is made a proper rotation (determinant +1) so no particle is mirrored;
- box indices are integers, and a rotation box as large as the subvolume works;
- a subvolume with zero mass after inversion is skipped with a warning;
- the axes' signs are made canonical (third moment positive along the first
  two axes), so copies of a structure land in one orientation, not four;
- tomograms with dense matter bright are inverted the other way (``polarity``);
- the tomogram is smoothed only around each particle (with a margin of the
  Gaussian's reach, so the values equal those of whole-tomogram smoothing).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import InputError
from ..util.progress import progress_bar
from ..volume import SubvolumeSet, Tomogram
from .contrast import DEFAULT_POLARITY, polarity_sign

log = logging.getLogger(__name__)

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default reach, in sigmas


def principal_axes(mass: np.ndarray, canonical_signs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass and principal-axis rotation of a non-negative volume.

    Args:
        mass: 3D array of non-negative weights with a positive sum.
        canonical_signs: orient the first two axes so that the mass's third
            moment along each is positive (its heavier tail points to +), and
            the third as their cross product. Without it the signs are whatever
            the eigen-solver returns, so two copies of one structure can be
            normalized into four different orientations.

    Returns:
        (c, rm): ``c`` the centre of mass (3,), ``rm`` a 3x3 rotation whose columns
        are the eigenvectors of the weighted second-moment matrix, by decreasing
        |eigenvalue|, with determinant +1.
    """
    total = float(mass.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError("zero mass")
    grid = np.indices(mass.shape, dtype=np.float64).reshape(3, -1)
    weights = mass.reshape(-1).astype(np.float64)
    c = grid @ weights / total
    offsets = grid - c[:, None]
    moments = (offsets * weights) @ offsets.T
    eigenvalues, eigenvectors = np.linalg.eigh(moments)
    rm = eigenvectors[:, np.argsort(-np.abs(eigenvalues), kind="stable")]
    if canonical_signs:
        skew = ((rm[:, :2].T @ offsets) ** 3) @ weights
        rm[:, :2] *= np.where(skew < 0, -1.0, 1.0)
        rm[:, 2] = np.cross(rm[:, 0], rm[:, 1])
    elif np.linalg.det(rm) < 0:
        rm[:, 2] *= -1
    return c, rm


def smoothed_box(data: np.ndarray, start: ArrayLike, side: int, sigma: float, fill: float) -> NDArray[np.float32]:
    """The box ``[start, start + side)`` of ``gaussian_filter(data, sigma)``, outside filled.

    Only the box plus a margin of the Gaussian's reach is read and smoothed.
    Where the margin is clipped by the tomogram's border, the filter's own
    reflection at that border is the one whole-tomogram smoothing applies, so
    the values are the same as smoothing everything first.
    """
    start = np.asarray(start, dtype=np.int64)
    shape = np.asarray(data.shape)
    box = np.full((side,) * 3, fill, dtype=np.float32)
    lo, hi = np.maximum(start, 0), np.minimum(start + side, shape)
    if np.any(hi <= lo):
        return box
    if sigma > 0:
        reach = int(TRUNCATE * sigma + 0.5)
        read_lo, read_hi = np.maximum(lo - reach, 0), np.minimum(hi + reach, shape)
        region = np.asarray(data[tuple(slice(a, b) for a, b in zip(read_lo, read_hi))], dtype=np.float32)
        region = ndimage.gaussian_filter(region, sigma)
        inner = region[tuple(slice(a - r, b - r) for a, b, r in zip(lo, hi, read_lo))]
    else:
        inner = np.asarray(data[tuple(slice(a, b) for a, b in zip(lo, hi))], dtype=np.float32)
    box[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = inner
    return box


def inverted_mass(volume: np.ndarray, top: float, polarity: str = DEFAULT_POLARITY) -> np.ndarray:
    """Dense matter as non-negative mass (published: ``|max - v|`` with dense matter dark).

    ``top`` is the maximum of ``sign * v`` over all subvolumes, where sign is
    +1 for dark and -1 for bright contrast, so a bright tomogram gives the same
    mass as its negation with dark contrast.
    """
    return np.abs(top - polarity_sign(polarity) * volume)


def normalize_one(
    data: np.ndarray, center: ArrayLike, mass: np.ndarray, sigma: float, fill: float, canonical_signs: bool = True,
) -> tuple[NDArray[np.float32], np.ndarray, np.ndarray]:
    """Pose-normalize one particle.

    Args:
        data: the tomogram, indexed [x, y, z] (memory map or array), unsmoothed.
        center: the subvolume's centre in ``data`` (x, y, z).
        mass: the inverted subvolume (non-negative; dense matter bright).
        sigma: Gaussian smoothing of the tomogram, in voxels.
        fill: value for voxels outside the tomogram.

    Returns:
        (volume, rm, c): the normalized subvolume (float32, ``mass.shape``), the
        rotation and the centre of mass in subvolume coordinates.
    """
    shape = np.asarray(mass.shape)
    c, rm = principal_axes(mass, canonical_signs)
    loc_r = rm.T @ ((shape - 1) / 2.0 - c)
    side = int(math.ceil((shape.max() + 2 * np.abs(loc_r).max()) * np.abs(rm @ np.ones(3)).max()))
    start = np.rint(np.asarray(center, dtype=float)).astype(np.int64) - int(math.ceil(side / 2))
    box = smoothed_box(data, start, side, sigma, fill)
    c1 = np.full(3, (side - 1) / 2.0)
    c2 = c1 + loc_r
    # The published code rotates the whole box and then crops its central block;
    # resampling only the block's voxels (offset shifted by the crop's start) gives
    # the same values at a fraction of the cost.
    crop = np.array([side // 2 - int(math.ceil(n / 2)) for n in shape], dtype=float)
    offset = c1 - rm @ (c2 - crop)
    volume = ndimage.affine_transform(box, rm, offset=offset, output_shape=tuple(shape), cval=fill)
    return volume.astype(np.float32, copy=False), rm, c


def tomogram_mean(data: np.ndarray, slab: int = 16) -> float:
    """Mean of a (possibly memory-mapped) volume, read in slabs along the last axis.

    Gaussian smoothing with reflecting borders keeps the sum of a volume, so
    this equals the published ``default_val`` (the smoothed tomogram's mean).
    """
    total = 0.0
    for z in range(0, data.shape[2], slab):
        total += float(np.asarray(data[:, :, z : z + slab], dtype=np.float64).sum())
    return total / float(np.prod(data.shape))


def _check_centers(subvolumes, shape, path):
    if not np.all(np.isfinite(subvolumes.centers)):
        raise InputError(f"{path}: pose normalization needs a 'center' for every subvolume")
    inside = np.all((subvolumes.centers >= 0) & (subvolumes.centers < np.asarray(shape)), axis=1)
    if not inside.any():
        raise InputError(
            f"{path}: no subvolume centre lies inside the tomogram of shape {tuple(shape)} (x, y, z): "
            "wrong tomogram, or centres in another axis order or binning?"
        )
    if not inside.all():
        log.warning(
            "%d of %d subvolume centres lie outside the tomogram %s; their boxes are filled with its mean",
            int((~inside).sum()), len(inside), path,
        )


def _check_sigma(sigma, box, path):
    """A Gaussian wider than the box flattens it (and smoothing the tomogram that widely takes hours)."""
    if sigma > max(box):
        raise InputError(
            f"{path}: --smooth-sigma {sigma:g} is wider than the subvolumes ({max(box)} voxels), so smoothing would flatten "
            "them; use a few voxels (published: 2)"
        )


def pose_normalize(
    subvolumes: SubvolumeSet, tomogram: Tomogram | np.ndarray, *, sigma: float = 2.0, workers: int | None = None,
    progress: bool = False, polarity: str = DEFAULT_POLARITY, canonical_signs: bool = True,
) -> SubvolumeSet:
    """Pose-normalize every subvolume against its tomogram (published section 3).

    Args:
        subvolumes: :class:`SubvolumeSet` with centres in the tomogram.
        tomogram: :class:`~autoencoder3d.volume.Tomogram` (or a 3D array indexed [x, y, z]).
        sigma: Gaussian smoothing of the tomogram, in voxels (published: 2.0).
        workers: threads to use (default: all cores).
        progress: show a progress bar (only when standard error is a terminal).
        polarity: ``"dark"`` when dense matter is dark (published) or ``"bright"``;
            only the mass used for the centre and axes depends on it, the
            normalized subvolumes keep the tomogram's contrast.
        canonical_signs: orient the principal axes by the third moment (see
            :func:`principal_axes`).

    Returns:
        A new :class:`SubvolumeSet` with the same uuids and centres (subvolumes with
        zero mass are dropped with a warning); each entry's extras hold
        ``'rotation'`` (3x3) and ``'center_of_mass'`` (subvolume coordinates).
    """
    if isinstance(tomogram, Tomogram):
        data, path = tomogram.data, tomogram.path
    else:
        data, path = np.asarray(tomogram), "<tomogram>"
    _check_centers(subvolumes, data.shape, path)
    _check_sigma(sigma, subvolumes.volumes.shape[1:], path)
    fill = tomogram_mean(data)
    top = float((polarity_sign(polarity) * subvolumes.volumes).max())

    def work(i):
        mass = inverted_mass(subvolumes.volumes[i], top, polarity)
        try:
            return normalize_one(data, subvolumes.centers[i], mass, sigma, fill, canonical_signs)
        except ValueError:
            return None

    workers = workers or os.cpu_count() or 1
    volumes = np.empty_like(subvolumes.volumes)
    poses = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = progress_bar(pool.map(work, range(len(subvolumes))), total=len(subvolumes), desc="pose normalization", unit="subvolume", enabled=progress)
        for i, result in enumerate(results):  # stored as they arrive: one extra copy of the data at most
            if result is not None:
                volumes[i], poses[i] = result[0], result[1:]
    return _collect(subvolumes, volumes, poses, path)


def _collect(subvolumes, volumes, poses, path):
    """The normalized set: rows without a pose (zero mass) dropped with a warning, in place."""
    keep = sorted(poses)
    for i in range(len(subvolumes)):
        if i not in poses:
            log.warning("subvolume %s has no mass after inversion (constant); skipped", subvolumes.uuids[i])
    if not keep:
        raise InputError(f"{path}: every subvolume cut from it is constant, so none can be pose-normalized; "
                         "check the subvolumes' source, or train without pose normalization (POSE False)")
    for j, i in enumerate(keep):
        if i != j:
            volumes[j] = volumes[i]
    extras = {}
    for i in keep:
        uuid = subvolumes.uuids[i]
        rm, c = poses[i]
        extras[uuid] = dict(subvolumes.extras.get(uuid, {}), rotation=rm, center_of_mass=c)
    return SubvolumeSet(
        uuids=[subvolumes.uuids[i] for i in keep],
        volumes=volumes[: len(keep)],
        centers=subvolumes.centers[keep].copy(),
        extras=extras,
        voxel_size=subvolumes.voxel_size,
    )
