"""A PNG beside the picks: slabs of the tomogram with the picked centres circled.

The image holds up to ``slabs`` panels side by side, each the mean of a slab of
``box`` z sections (the z extent of a box), chosen where the picks are: the
first holds the most picks' centres, the next (not overlapping it) the most of
the others, and so on; the panels are ordered by z. Each panel shows x to the right and y up (as
3dmod shows a tomogram), with the intensities as recorded (the caption says
whether dense matter is dark or bright there, the polarity the picks were made
with), stretched between the 0.5 and 99.5 percentiles. Every pick whose centre
lies in a panel's slab is marked there: a small cross at its centre and a
circle of half the box's side. A panel is binned by an integer factor when a
side would exceed ``max_side`` pixels, or enlarged by an integer factor up to
about 512 pixels when the tomogram is small. The caption below the panels
holds a scale bar in nm (from the header's voxel size; "voxel size unknown"
when the header has none), the slabs' z ranges and how many picks each shows.

Where a pick is drawn: with ``scale`` the panel's pixels per voxel (``1 / b``
when binned by ``b``), the pick at voxel (x, y) of panel ``k`` is at column
``offsets[k] + floor((x + 0.5) * scale)`` and row
``height - 1 - floor((y + 0.5) * scale)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..util.atomic import atomic_path

if TYPE_CHECKING:
    from ..volume import Tomogram

MARK = (255, 48, 48)  # the picks' crosses and circles
BAR = (255, 214, 0)  # the scale bar
GAP = 6  # black columns between panels
CAPTION = 44  # caption rows under the panels
SMALL = 512  # small tomograms are enlarged to about this many pixels


@dataclass
class PickPreview:
    """Where things are in a preview written by :func:`write_pick_preview`.

    Attributes:
        path: the PNG written.
        scale: pixels per voxel in every panel.
        slabs: (z0, z1) of each panel's slab (z1 excluded), by z.
        offsets: first column of each panel.
        width, height: the panels' size in pixels (height without the caption).
        shown: mask of the picks drawn in at least one panel.
        bar_nm, bar_px: the scale bar's length (0 when the voxel size is unknown).
    """

    path: str
    scale: float
    slabs: list[tuple[int, int]]
    offsets: list[int]
    width: int
    height: int
    shown: np.ndarray
    bar_nm: float = 0.0
    bar_px: int = 0
    counts: list[int] = field(default_factory=list)


def choose_slabs(z: ArrayLike, depth: int, thickness: int, count: int = 3) -> list[tuple[int, int]]:
    """Up to ``count`` slabs ``(z0, z0 + thickness)`` inside ``[0, depth)``, not overlapping, covering the most picks' z
    (greedily: the slab with the most, then the one with the most of the others, ...); ordered by z."""
    thickness = int(max(1, min(thickness, depth)))
    z = np.sort(np.asarray(z, dtype=np.int64).ravel())
    if z.size == 0:
        start = (depth - thickness) // 2
        return [(start, start + thickness)]
    left = np.ones(z.size, dtype=bool)
    slabs: list[tuple[int, int]] = []
    while left.any() and len(slabs) < count:
        starts = np.arange(depth - thickness + 1)
        for a, b in slabs:  # slabs do not overlap
            starts = starts[(starts + thickness <= a) | (starts >= b)]
        cum = np.concatenate([[0], np.cumsum(left)])
        inside = cum[np.searchsorted(z, starts + thickness)] - cum[np.searchsorted(z, starts)]
        if starts.size == 0 or inside.max() == 0:
            break
        tied = np.flatnonzero(inside == inside.max())
        run = tied[: int(np.argmax(np.diff(np.append(tied, tied[-1] + 2)) > 1)) + 1]  # the lowest run of tied starts
        start = int(starts[run[len(run) // 2]])  # its middle: the picks sit mid-slab
        slabs.append((start, start + thickness))
        left &= ~((z >= start) & (z < start + thickness))
    return sorted(slabs)


def _slab_mean(data: ArrayLike, z0: int, z1: int) -> NDArray[np.float64]:
    """Mean over z in [z0, z1) of a volume indexed [x, y, z], read one section at a time."""
    total = np.zeros(data.shape[:2], dtype=np.float64)
    for z in range(z0, z1):
        total += np.asarray(data[:, :, z], dtype=np.float64)
    return total / max(1, z1 - z0)


def _resample(image: NDArray[np.float64], factor: int, binned: bool) -> NDArray[np.float64]:
    """Bin by ``factor`` (partial blocks at the far edges averaged over what they hold) or enlarge by it."""
    if not binned:
        return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    rows, cols = (math.ceil(s / factor) * factor for s in image.shape)
    padded = np.full((rows, cols), np.nan)
    padded[: image.shape[0], : image.shape[1]] = image
    return np.nanmean(padded.reshape(rows // factor, factor, cols // factor, factor), axis=(1, 3))


def _nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target * (1 + 1e-9))


def _mark(rgb: NDArray[np.uint8], col: int, row: int, radius: float) -> None:
    """A cross of arm 2 at (col, row) and a circle of ``radius`` pixels around it, clipped to ``rgb``."""
    h, w = rgb.shape[:2]
    reach = int(math.ceil(radius + 1))
    r0, r1, c0, c1 = max(0, row - reach), min(h, row + reach + 1), max(0, col - reach), min(w, col + reach + 1)
    if r0 >= r1 or c0 >= c1:
        return
    rr, cc = np.mgrid[r0:r1, c0:c1]
    d = np.hypot(rr - row, cc - col)
    ring = np.abs(d - radius) <= 0.6
    cross = ((rr == row) & (np.abs(cc - col) <= 2)) | ((cc == col) & (np.abs(rr - row) <= 2))
    rgb[r0:r1, c0:c1][ring | cross] = MARK


def _caption(width: int, lines: Sequence[tuple[int, int, str]]) -> NDArray[np.uint8]:
    """A black strip of CAPTION rows with white text: (column, row of the text's middle, text) each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, CAPTION / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    for col, row, text in lines:
        fig.text(col / width, 1.0 - row / CAPTION, text, color="white", fontsize=8, va="center", ha="left")
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba())[:, :, :3]
    strip = np.zeros((CAPTION, width, 3), dtype=np.uint8)
    h, w = min(CAPTION, drawn.shape[0]), min(width, drawn.shape[1])
    strip[:h, :w] = drawn[:h, :w]
    return strip


def write_pick_preview(
    path: str | os.PathLike[str], tomogram: Tomogram, centers: ArrayLike, box: int, polarity: str, *,
    slabs: int = 3, max_side: int = 1024,
) -> PickPreview:
    """Write the preview PNG of ``centers`` (x, y, z voxels) picked in ``tomogram`` (atomically).

    Args:
        path: the PNG to write.
        tomogram: :class:`~autoencoder3d.volume.Tomogram` (memory-mapped data indexed [x, y, z]).
        centers: (N, 3) pick centres.
        box: the box side in voxels: the slabs' thickness and the circles' diameter.
        polarity: ``"dark"`` or ``"bright"``, the contrast the picks were made with (named in the caption).
        slabs: the most panels.
        max_side: the largest panel side in pixels before binning.

    Returns:
        :class:`PickPreview`, where everything was drawn.
    """
    import png

    from .contrast import polarity_sign

    polarity_sign(polarity)
    xyz = np.rint(np.asarray(centers, dtype=float).reshape(-1, 3)).astype(np.int64)
    nx, ny, nz = (int(s) for s in tomogram.shape)
    chosen = choose_slabs(xyz[:, 2], nz, box, slabs)
    side = max(nx, ny)
    binned = side > max_side
    factor = math.ceil(side / max_side) if binned else max(1, SMALL // side)
    scale = 1.0 / factor if binned else float(factor)
    panels = [_resample(_slab_mean(tomogram.data, z0, z1).T, factor, binned)[::-1] for z0, z1 in chosen]
    height, width = panels[0].shape
    values = np.concatenate([p.ravel() for p in panels])
    low, high = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    spread = high - low if high > low else 1.0
    full_width = len(panels) * width + (len(panels) - 1) * GAP
    rgb = np.zeros((height + CAPTION, full_width, 3), dtype=np.uint8)
    offsets = [k * (width + GAP) for k in range(len(panels))]
    shown = np.zeros(len(xyz), dtype=bool)
    counts = []
    for (z0, z1), panel, offset in zip(chosen, panels, offsets):
        grey = np.clip((panel - low) / spread * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgb[:height, offset : offset + width] = grey[:, :, None]
        here = (xyz[:, 2] >= z0) & (xyz[:, 2] < z1)
        shown |= here
        counts.append(int(here.sum()))
        view = rgb[:height, offset : offset + width]
        for x, y, _ in xyz[here]:
            _mark(view, int(math.floor((x + 0.5) * scale)), height - 1 - int(math.floor((y + 0.5) * scale)), box / 2 * scale)
    size = float(np.mean(tomogram.voxel_size)) if tomogram.voxel_size is not None else 0.0
    known = math.isfinite(size) and size > 0
    dense = "dark" if polarity == "dark" else "bright"
    lines = []
    bar_nm, bar_px = 0.0, 0
    if known:
        bar_nm = _nice_length(nx * size / 10.0 / 5.0)
        bar_px = int(round(bar_nm * 10.0 / size * scale))
        rgb[height + 10 : height + 13, 8 : 8 + bar_px] = BAR
        lines.append((16 + bar_px, 12, f"{bar_nm:g} nm"))
        lines.append((80 + bar_px, 12, f"dense matter {dense}; circles: box of {box} voxels; {int(shown.sum())} of {len(xyz)} picks shown"))
    else:
        lines.append((8, 12, f"voxel size unknown; dense matter {dense}; circles: box of {box} voxels; {int(shown.sum())} of {len(xyz)} picks shown"))
    for (z0, z1), offset, n in zip(chosen, offsets, counts):
        lines.append((offset + 8, 32, f"mean of z {z0}-{z1 - 1}: {n} picks"))
    caption = _caption(full_width, lines)
    keep = np.all(rgb[height:] == 0, axis=2)  # the bar stays as drawn
    rgb[height:][keep] = caption[keep]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            png.Writer(width=full_width, height=rgb.shape[0], greyscale=False, bitdepth=8, compression=6).write(
                handle, rgb.reshape(rgb.shape[0], -1))
    return PickPreview(os.fspath(path), scale, chosen, offsets, width, height, shown, bar_nm, bar_px, counts)
