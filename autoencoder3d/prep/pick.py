"""Difference-of-Gaussian particle picking and box extraction from a tomogram.

The published defaults (Pei, Xu, Frazier & Alber 2016; see
``shared/spec/simulation-and-picking.md``):

1. Smooth the tomogram with Gaussians of ``sigma1`` (7 nm by default, converted
   with the header's voxel size and raised to 2 voxels when smaller; a sigma
   given in voxels is used as given) and ``sigma2 = 1.1 * sigma1``; the
   difference ``G1 - G2`` is the DoG map. Every change to what was asked is
   logged as one line (see :func:`sigma_in_voxels`).
2. Particles are dark, so peaks are local minima of the DoG; we negate it and
   look for local maxima (``dark=False`` picks bright particles instead). A
   peak is a voxel at least as large as its 26 neighbours and larger than one.
3. Keep peaks with value ``>= T = m + t (M - m) / 20`` (``M``, ``m`` the largest
   and smallest peak values in the whole tomogram, ``t = 3``).
4. Walking from the strongest peak down, drop every peak closer than
   ``2 * sigma1`` voxels to a stronger kept one.
5. Drop peaks whose box of ``box`` voxels would leave the tomogram, then stop at
   ``max_particles`` if given (so that many full boxes come out).

Large tomograms are processed in blocks read from the memory-mapped file, each
with a margin wide enough that every DoG value and every peak decision inside
the block's core is computed from exactly the same voxels as on the whole
volume; steps 3-5 then run once on all peaks. The result therefore does not
depend on the block size or the number of workers.

A box around centre ``c`` starts at ``c - box // 2`` (the centre voxel is at
index ``box // 2`` of the box).
"""

from __future__ import annotations

import logging
import math
import os
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ..volume import SubvolumeSet, Tomogram, cut_box

log = logging.getLogger(__name__)

DEFAULT_SIGMA1_NM = 7.0
MIN_SIGMA1 = 2.0  # voxels: the published floor of a sigma1 converted from nm
MIN_BLOCK = 8
SIGMA_RATIO = 1.1
GAUSS_TRUNCATE = 4.0
# uuids of picks are derived from the tomogram's name and the centre, so that
# picking twice gives the same keys.
_UUID_NAMESPACE = uuidlib.UUID("6f1c1f7e-3c1a-4c41-9a55-6d3e4b5a1f00")


@dataclass
class Picks:
    """Result of :func:`dog_pick`.

    Attributes:
        centers: int array (N, 3) of 0-based voxel indices (x, y, z), strongest first.
        scores: the DoG peak value of each (larger = stronger; sign-flipped for dark particles).
        sigma1: the sigma used, in voxels.
        threshold: the peak threshold ``T`` that was applied.
        n_peaks: local maxima found before thresholding.
        n_border: peaks dropped because their box leaves the tomogram.
    """

    centers: np.ndarray
    scores: np.ndarray
    sigma1: float
    threshold: float
    n_peaks: int
    n_border: int


def parse_sigma(text: str) -> tuple[float, str]:
    """Parse ``--sigma1``: ``'7nm'``, ``'70A'`` or ``'5'`` / ``'5vox'`` (voxels) -> (value, unit)."""
    raw = str(text).strip().lower().replace(" ", "")
    for suffix, unit in (("nm", "nm"), ("angstrom", "A"), ("å", "A"), ("a", "A"), ("voxels", "vox"), ("vox", "vox"), ("px", "vox")):
        if raw.endswith(suffix):
            raw, found = raw[: -len(suffix)], unit
            break
    else:
        found = "vox"
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"--sigma1 {text!r}: expected a number with an optional unit, e.g. 7nm, 70A or 5 (voxels)") from None
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"--sigma1 {text!r}: must be positive")
    return value, found


def sigma_in_voxels(
    value: float, unit: str, voxel_size: float | Sequence[float], path: str | os.PathLike[str] = "tomogram",
    shape: Sequence[int] | None = None,
) -> float:
    """Convert a sigma given in ``unit`` ('nm', 'A' or 'vox') to voxels.

    A sigma in voxels is used as given. A sigma in nm or A is divided by the
    header's voxel size (the mean of the three axes) and raised to
    :data:`MIN_SIGMA1` voxels when smaller, as the published default is. Each
    change to what was asked is logged as one warning line with the asked
    value, the value used, why, and how to ask for another.

    Raises:
        InputError: the voxel size is unknown (for nm or A), or the sigma is
            more than half the smallest side of a tomogram of ``shape`` (no
            particle that wide fits in it; its Gaussian would not either).
    """
    sigma = float(value) if unit == "vox" else _converted_sigma(value, unit, voxel_size, path)
    if shape is not None and sigma > min(shape) / 2:
        raise InputError(
            f"{path}: --sigma1 {value:g}{'' if unit == 'vox' else unit} is {sigma:.3g} voxels, more than half the tomogram's "
            f"smallest side ({min(shape)} voxels), so no particle that wide fits in it; give a sigma1 of about 0.55 x the "
            "particle's radius"
        )
    return sigma


def _converted_sigma(value, unit, voxel_size, path):
    vs = np.asarray(voxel_size, dtype=float).ravel()
    if vs.size == 0 or np.any(vs <= 0) or not np.all(np.isfinite(vs)):
        shown = ", ".join(f"{v:g}" for v in vs)
        raise InputError(
            f"{path}: the header's voxel size is ({shown}), so a sigma in {unit} cannot be converted to voxels; "
            "give --sigma1 in voxels (e.g. --sigma1 5) or fix the header (e.g. IMOD alterheader -del)"
        )
    asked = f"{value:g}{unit}"
    size = float(vs.mean())
    if float(vs.max() - vs.min()) > 1e-3 * size:
        log.warning("%s: sigma1 %s converted with the mean voxel size %.4g A (the header's is %s A per axis); "
                    "give --sigma1 in voxels to choose another", path, asked, size, ", ".join(f"{v:g}" for v in vs))
    exact = (value * 10.0 if unit == "nm" else value) / size
    if exact < MIN_SIGMA1:
        log.warning("%s: sigma1 %s is %.3g voxels at %.4g A per voxel; using %g voxels instead, the published minimum "
                    "for a sigma1 given in nm or A; to use %.3g voxels give it in voxels (--sigma1 %.3gvox), "
                    "which is used as given", path, asked, exact, size, MIN_SIGMA1, exact, exact)
        return MIN_SIGMA1
    return exact


def _margin(sigma1):
    # scipy's Gaussian reaches int(truncate * sigma + 0.5) voxels; +1 for the 26-neighbour peak test
    return int(GAUSS_TRUNCATE * SIGMA_RATIO * sigma1 + 0.5) + 1


def _block_peaks(data, lo, hi, sigma1, dark):
    """Local maxima of the (sign-adjusted) DoG inside the core ``[lo, hi)``: (coords, values)."""
    from scipy import ndimage

    shape = np.asarray(data.shape)
    margin = _margin(sigma1)
    plo = np.maximum(lo - margin, 0)
    phi = np.minimum(hi + margin, shape)
    block = np.asarray(data[tuple(slice(a, b) for a, b in zip(plo, phi))], dtype=np.float32)
    # Reflect at the true tomogram border exactly as the whole-volume filter does; elsewhere the
    # margin supplies the real neighbours, so the core values are the same.
    pad = [(int(margin if a == 0 else 0), int(margin if b == s else 0)) for a, b, s in zip(plo, phi, shape)]
    if any(p != (0, 0) for p in pad):
        block = np.pad(block, pad, mode="symmetric")
        plo = plo - np.array([p[0] for p in pad])
    g1 = ndimage.gaussian_filter(block, sigma1, mode="reflect", truncate=GAUSS_TRUNCATE)
    g2 = ndimage.gaussian_filter(block, SIGMA_RATIO * sigma1, mode="reflect", truncate=GAUSS_TRUNCATE)
    dog = g2 - g1 if dark else g1 - g2
    del g1, g2, block
    footprint = np.ones((3, 3, 3), dtype=bool)
    footprint[1, 1, 1] = False
    # Outside the tomogram nothing is a neighbour: compare against -inf / +inf there.
    outside = np.ones(dog.shape, dtype=bool)
    core_all = tuple(slice(int(max(0, -a)), int(s - a) if s - a < n else n) for a, s, n in zip(plo, shape, dog.shape))
    outside[core_all] = False
    hi_n = ndimage.maximum_filter(np.where(outside, -np.inf, dog), footprint=footprint, mode="constant", cval=-np.inf)
    lo_n = ndimage.minimum_filter(np.where(outside, np.inf, dog), footprint=footprint, mode="constant", cval=np.inf)
    core = tuple(slice(int(a - p), int(b - p)) for a, b, p in zip(lo, hi, plo))
    c_dog, c_hi, c_lo = dog[core], hi_n[core], lo_n[core]
    peak = (c_dog >= c_hi) & (c_dog > c_lo)
    idx = np.argwhere(peak)
    return idx + np.asarray(lo), c_dog[peak].astype(np.float64)


def _blocks(shape, block):
    edges = [list(range(0, s, block)) for s in shape]
    for x in edges[0]:
        for y in edges[1]:
            for z in edges[2]:
                lo = np.array([x, y, z])
                yield lo, np.minimum(lo + block, shape)


def remove_redundant(centers: np.ndarray, scores: np.ndarray, min_distance: float, max_count: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept peaks, strongest first.

    Ties in score are broken by position (x, then y, then z), so the result is
    independent of the input order.
    """
    from scipy.spatial import cKDTree

    if len(centers) == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((centers[:, 2], centers[:, 1], centers[:, 0], -scores))
    tree = cKDTree(centers)
    suppressed = np.zeros(len(centers), dtype=bool)
    kept = []
    for i in order:
        if suppressed[i]:
            continue
        kept.append(i)
        if max_count is not None and len(kept) >= max_count:
            break
        for j in tree.query_ball_point(centers[i], r=min_distance - 1e-9):
            suppressed[j] = True
    return np.asarray(kept, dtype=int)


def center_voxels(xyz: ArrayLike, shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """The voxel ``(n, 3)`` int64 nearest each centre; centres far outside ``shape`` are moved to just outside it.

    So a coordinate too large for an integer (1e300) is an outside centre, as it is, not a cast error.
    """
    limit = np.asarray(shape, dtype=float)
    return np.rint(np.clip(np.asarray(xyz, dtype=float).reshape(-1, 3), -1.0, limit)).astype(np.int64)


def box_fits(centers: ArrayLike, shape: Sequence[int] | np.ndarray, box: int) -> np.ndarray:
    """Mask of centres whose box (start ``c - box // 2``) lies wholly inside ``shape``."""
    start = np.asarray(centers) - box // 2
    return np.all((start >= 0) & (start + box <= np.asarray(shape)), axis=1)


def dog_pick(
    data: np.ndarray, sigma1: float, *, threshold: float = 3.0, dark: bool = True, box: int = 32,
    max_particles: int | None = None, block: int = 128, workers: int = 1, progress: bool = False,
) -> Picks:
    """Pick particles in a tomogram with the published Difference-of-Gaussian method.

    Args:
        data: 3D array indexed [x, y, z] (a memory map is read block by block).
        sigma1: the smaller Gaussian's sigma in voxels, used as given (see :func:`sigma_in_voxels`).
        threshold: ``t`` in ``T = m + t (M - m) / 20``.
        dark: particles darker than the background (cryo-ET contrast).
        box: box side; peaks whose box leaves the tomogram are dropped.
        max_particles: keep at most this many (strongest first).
        block: core side of the blocks processed at a time.
        workers: threads (scipy's filters release the GIL).
        progress: show a progress bar (only when standard error is a terminal).

    Returns:
        :class:`Picks`.
    """
    shape = np.asarray(data.shape)
    sigma1 = float(sigma1)
    if int(block) < MIN_BLOCK:
        log.warning("block side %d: using %d voxels, the smallest block processed (the picks do not depend on it); "
                    "give --block %d or more to silence this", int(block), MIN_BLOCK, MIN_BLOCK)
    block = max(int(block), MIN_BLOCK)
    blocks = list(_blocks(shape, block))

    def work(lo_hi):
        return _block_peaks(data, lo_hi[0], lo_hi[1], sigma1, dark)

    from ..util.progress import progress_bar

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        results = list(progress_bar(pool.map(work, blocks), total=len(blocks), desc="DoG blocks", unit="block", enabled=progress))
    centers = np.concatenate([r[0] for r in results]) if results else np.zeros((0, 3), int)
    scores = np.concatenate([r[1] for r in results]) if results else np.zeros(0)
    n_peaks = len(scores)
    if n_peaks == 0:
        return Picks(np.zeros((0, 3), int), np.zeros(0), sigma1, float("nan"), 0, 0)
    big, small = scores.max(), scores.min()
    cut = small + threshold * (big - small) / 20.0
    keep = scores >= cut
    centers, scores = centers[keep], scores[keep]
    kept = remove_redundant(centers, scores, 2.0 * sigma1)
    centers, scores = centers[kept], scores[kept]
    fits = box_fits(centers, shape, box)
    n_border = int(np.count_nonzero(~fits))
    centers, scores = centers[fits], scores[fits]
    if max_particles is not None:
        centers, scores = centers[:max_particles], scores[:max_particles]
    return Picks(centers.astype(np.int64), scores, sigma1, float(cut), n_peaks, n_border)


def make_uuids(tomogram_path: str | os.PathLike[str] | None, centers: ArrayLike) -> list[str]:
    """Deterministic uuid strings from the tomogram's file name, the order and the centres."""
    name = os.path.basename(os.fspath(tomogram_path or "array"))
    return [
        str(uuidlib.uuid5(_UUID_NAMESPACE, f"{name}:{i}:{int(c[0])},{int(c[1])},{int(c[2])}"))
        for i, c in enumerate(np.asarray(centers))
    ]


def extract_boxes(
    tomogram: Tomogram, centers: ArrayLike, box: int, *, partial: str = "drop", uuids: Sequence[str] | None = None,
    extras: Sequence[Mapping[str, Any] | None] | None = None,
) -> tuple[SubvolumeSet, dict[str, int]]:
    """Cut cubic boxes around integer centres from a (memory-mapped) tomogram.

    Args:
        tomogram: :class:`~autoencoder3d.volume.Tomogram`.
        centers: (N, 3) voxel coordinates (x, y, z), rounded to the nearest voxel.
        box: box side in voxels.
        partial: ``'drop'`` boxes that leave the tomogram, or ``'fill'`` their
            outside part with the mean of their inside part.
        uuids: keys to use (default: :func:`make_uuids`).
        extras: optional list of per-box dicts of extra pickle keys.

    Returns:
        (SubvolumeSet, counts) where counts is a dict with ``'outside'`` (centre
        outside the tomogram) and ``'partial'`` (box leaves it, dropped) numbers.

    Raises:
        InputError: when no box is left, or a box holds NaN or infinite voxels
            (which every reader of subvolumes refuses).
    """
    from ..formats.coords import inside

    shape = np.asarray(tomogram.shape)
    xyz = np.asarray(centers, dtype=float).reshape(-1, 3)
    idx = center_voxels(xyz, shape)
    in_tomo = inside(xyz, shape)
    fits = box_fits(idx, shape, box)
    keep = in_tomo & fits if partial == "drop" else in_tomo
    counts = {"outside": int(np.count_nonzero(~in_tomo)), "partial": int(np.count_nonzero(in_tomo & ~fits))}
    if not keep.any():
        raise InputError(
            f"{tomogram.path}: none of the {len(xyz)} coordinates gives a box of {box} inside the tomogram "
            f"of size {tuple(int(s) for s in shape)} ({counts['outside']} outside it, {counts['partial']} too close "
            "to its border); check the coordinate convention and --coords-angpix"
        )
    sel = np.flatnonzero(keep)
    if uuids is None:
        uuids = make_uuids(tomogram.path, idx)
    volumes = np.empty((len(sel), box, box, box), dtype=np.float32)
    for k, i in enumerate(sel):
        start = idx[i] - box // 2
        if fits[i]:
            volumes[k] = cut_box(tomogram.data, start, box, 0.0)
        else:
            lo = np.maximum(start, 0)
            hi = np.minimum(start + box, shape)
            part = np.asarray(tomogram.data[tuple(slice(a, b) for a, b in zip(lo, hi))], dtype=np.float64)
            volumes[k] = cut_box(tomogram.data, start, box, float(part.mean()))
    _refuse_non_finite(tomogram.path, volumes, idx[sel])
    if partial == "drop":
        counts["dropped"] = counts["outside"] + counts["partial"]
    else:
        counts["dropped"] = counts["outside"]
    chosen = [uuids[i] for i in sel]
    more = {}
    if extras is not None:
        more = {chosen[k]: dict(extras[i]) for k, i in enumerate(sel) if extras[i]}
    subvolumes = SubvolumeSet(
        uuids=chosen,
        volumes=volumes,
        centers=idx[sel].astype(float),
        extras=more,
        voxel_size=tuple(tomogram.voxel_size) if tomogram.voxel_size is not None else None,
    )
    return subvolumes, counts


def _refuse_non_finite(path, volumes, centers):
    """Every reader refuses a subvolume with NaN or infinite voxels, so none is written."""
    bad = ~np.isfinite(volumes.reshape(len(volumes), -1)).all(axis=1)
    if bad.any():
        first = ", ".join(str(int(c)) for c in centers[np.flatnonzero(bad)[0]])
        raise InputError(
            f"{path}: {int(bad.sum())} of the {len(volumes)} boxes hold NaN or infinite voxels (the first at x, y, z = {first}); "
            "replace the tomogram's non-finite values (e.g. by its mean) or leave those coordinates out"
        )


def write_pick_tables(
    out_pickle: str | os.PathLike[str], subvolumes: SubvolumeSet, tomogram: Tomogram, scores: ArrayLike | None = None,
) -> tuple[str, str]:
    """Write ``OUT.star`` (RELION 4 / Warp pixels) and ``OUT.csv`` beside the pickle.

    Returns:
        the two paths written.
    """
    from ..formats.coords import particle_tables, write_csv, write_star

    stem = os.path.splitext(os.fspath(out_pickle))[0]
    extra = {"uuid": list(subvolumes.uuids)}
    if scores is not None:
        extra["score"] = np.asarray(scores, dtype=float)
    tables = particle_tables(subvolumes.centers, tomogram.path, tomogram.shape, tomogram.voxel_size, extra)
    write_star(stem + ".star", tables["relion4"])
    write_csv(stem + ".csv", tables["csv"])
    return stem + ".star", stem + ".csv"
