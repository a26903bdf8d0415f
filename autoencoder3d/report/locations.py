"""Where each cluster's members lie: a projection of their tomogram with the members' centres marked.

Each tomogram is drawn once (a CSS background, tens of KB) as the mean of up to
``SLAB_SLICES`` z slices spread evenly over the z range of its picks (5th to 95th
percentile of their z, widened by half a box), binned ``bin x bin`` voxels a
pixel so that the image is at most ``MAP_MAX_PX`` wide or high; grey levels are
the 1st-99th percentile of the projection, as the data record them (dense matter
dark or bright, as the run's polarity says). x runs to the right and y up, as in
IMOD's 3dmod. A card lays a transparent PNG of its members' marks over the
``MAPS_PER_CARD`` tomograms holding most of them (fewer beyond 200 clusters): a dot on the pixel holding each member's centre
and, for up to ``RINGS_UP_TO`` members, a ring around it. The tomogram is read
memory-mapped, slice by slice: a few slices per tomogram whatever its size.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..runs.folder import RunFolder
from .figures import scale_bar
from .parts import data_uri, png_bytes, scalebar_html, to_uint8

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ..volume import SubvolumeSet, Tomogram
    from .page import RunOutputs

MAP_MAX_PX = 256
SLAB_SLICES = 16
MAPS_PER_CARD = 3
MAX_CARD_MAPS = 600  # maps on all cards together: fewer per card beyond 200 clusters (at least one)
MAX_TOMOGRAMS = 12  # tomograms drawn at most (those with the most clustered subvolumes)
RINGS_UP_TO = 400   # members marked with a ring as well as a dot, per map
DOT, RING = 2, 1    # palette indices of the marks PNG (0: transparent)
_RING_OFFSETS = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if 1.5 < math.hypot(dr, dc) <= 2.5]


@dataclass
class TomogramMap:
    """One tomogram's projection: ``image`` (rows: y from the top down, columns: x), ``bin`` voxels a pixel."""

    name: str
    path: str
    image: np.ndarray
    bin: int
    z_range: tuple[int, int]
    slices: int
    voxel_angstrom: float | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def map_bin(shape_xy: Sequence[int], max_px: int = MAP_MAX_PX) -> int:
    """Voxels a pixel (each way) so that an x-y image of ``shape_xy`` is at most ``max_px`` pixels wide and high."""
    return max(1, math.ceil(max(int(s) for s in shape_xy) / max_px))


def project_slab(tomogram: Tomogram, z_lo: int, z_hi: int, *, max_px: int = MAP_MAX_PX, slices: int = SLAB_SLICES,
                 ) -> tuple[NDArray[np.float64], int, int]:
    """The mean of up to ``slices`` z slices evenly spread over ``z_lo..z_hi``, in ``bin x bin`` voxel blocks.

    Returns:
        (projection indexed [x // bin, y // bin], bin, number of slices read); edge voxels that do not fill a block are left out.
    """
    nx, ny, nz = tomogram.shape
    z_lo, z_hi = max(0, int(z_lo)), min(nz - 1, int(z_hi))
    z_hi = max(z_hi, z_lo)
    bin_ = min(map_bin((nx, ny), max_px), nx, ny)
    wx, wy = max(nx // bin_, 1), max(ny // bin_, 1)
    zs = np.unique(np.rint(np.linspace(z_lo, z_hi, min(slices, z_hi - z_lo + 1))).astype(np.int64))
    total = np.zeros((wx, wy))
    for z in zs:
        plane = np.asarray(tomogram.data[: wx * bin_, : wy * bin_, int(z)], dtype=np.float64)
        total += plane.reshape(wx, bin_, wy, bin_).mean(axis=(1, 3))
    return total / len(zs), bin_, len(zs)


def mark_pixels(centers: ArrayLike, bin_: int, size: tuple[int, int]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(rows, columns) in a map of ``size`` = (width, height) of the pixels holding tomogram positions ``centers`` (M, 3+) [x, y, ...].

    Pixel column j holds x voxels ``j*bin .. j*bin + bin - 1`` (positions ``j*bin - 0.5 .. j*bin + bin - 0.5``);
    rows count y from the top (y up). Positions past the edge go to the edge pixel.
    """
    centers = np.atleast_2d(np.asarray(centers, dtype=np.float64))
    width, height = size
    cols = np.clip(np.floor((centers[:, 0] + 0.5) / bin_), 0, width - 1).astype(np.int64)
    rows = height - 1 - np.clip(np.floor((centers[:, 1] + 0.5) / bin_), 0, height - 1).astype(np.int64)
    return rows, cols


def marks_png(rows: ArrayLike, cols: ArrayLike, size: tuple[int, int], color: str) -> bytes:
    """A transparent palette PNG of ``size`` (width, height): a dot (index DOT) on each (row, col), rings (index RING) around up to RINGS_UP_TO."""
    width, height = size
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    image = np.zeros((height, width), dtype=np.uint8)
    if len(rows) <= RINGS_UP_TO:
        for dr, dc in _RING_OFFSETS:
            r, c = rows + dr, cols + dc
            keep = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            image[r[keep], c[keep]] = RING
    image[rows, cols] = DOT
    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    return png_bytes(image, palette=[(0, 0, 0, 0), rgb + (255,), rgb + (255,)])


# ---------------------------------------------------------------- the run's tomograms


def _tomogram_paths(run, subvolumes):
    """(each subvolume's tomogram name (N,), name -> recorded path or None)."""
    if subvolumes.tomograms is not None:
        names = np.asarray(subvolumes.tomograms, dtype=object).astype(str)
        table = subvolumes.tomogram_table or {}
        return names, {str(n): (table.get(str(n)) or {}).get("path") for n in np.unique(names)}
    recorded = (run.record.get("inputs") or {}).get("tomogram")
    path = RunFolder(run.run_dir).resolve(recorded) if recorded and recorded != "None" else None
    name = os.path.basename(path) if path else "the tomogram"
    return np.full(len(subvolumes), name, dtype=object).astype(str), {name: path}


def _draw(name, path, z, box, run_voxel):
    from ..formats.mrc import read_tomogram

    tomogram = read_tomogram(path)
    try:
        lo, hi = np.percentile(z, [5, 95]) if len(z) else (0, tomogram.shape[2] - 1)
        z_lo, z_hi = int(math.floor(lo - box / 2)), int(math.ceil(hi + box / 2))
        projection, bin_, n_slices = project_slab(tomogram, z_lo, z_hi, max_px=MAP_MAX_PX, slices=SLAB_SLICES)
        header = float(tomogram.voxel_size[0]) if tomogram.voxel_size else 0.0
        z_range = (max(0, z_lo), min(tomogram.shape[2] - 1, max(z_hi, z_lo)))
    finally:
        tomogram.close()
    image = projection.T[::-1]
    low, high = np.percentile(image, [1, 99])
    voxel = header if math.isfinite(header) and header > 0 else run_voxel
    return TomogramMap(name, path, to_uint8(image, low, high), bin_, z_range, n_slices, voxel)


@dataclass
class Locations:
    """What the page shows of where the members lie: the CSS of the projections, each card's maps, and a note."""

    style: str = ""
    cards: dict = None
    note: str = ""
    maps: dict = None


def location_maps(run: RunOutputs, subvolumes: SubvolumeSet | None, colors: Sequence[str], voxel_angstrom: float | None = None) -> Locations:
    """The projections of the tomograms holding most of each cluster's members, with the members marked.

    ``voxel_angstrom``: the run's voxel size, for the scale bar of a tomogram whose header has none.
    """
    if subvolumes is None:
        return Locations(cards={}, maps={}, note="No location maps: the subvolumes are not available.")
    names, paths = _tomogram_paths(run, subvolumes)
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    clustered = np.array(sorted(index[u] for v in run.members.values() for u in v if u in index), dtype=np.int64)
    centers = np.asarray(subvolumes.centers, dtype=np.float64)
    placed = clustered[np.all(np.isfinite(centers[clustered, :2]), axis=1)] if len(clustered) else clustered
    if not len(placed):
        return Locations(cards={}, maps={}, note="No location maps: the subvolumes record no positions in their tomogram.")
    totals = {n: int(c) for n, c in zip(*np.unique(names[placed], return_counts=True))}
    wanted = sorted(totals, key=lambda n: (-totals[n], n))
    missing = [n for n in wanted if not paths.get(n) or not os.path.isfile(paths[n])]
    drawable = [n for n in wanted if n not in missing][:MAX_TOMOGRAMS]
    box = int((run.record.get("v_siz") or [0])[0] or 0)
    maps, unreadable = {}, []
    for name in drawable:
        rows = placed[names[placed] == name]
        try:
            maps[name] = _draw(name, paths[name], centers[rows, 2][np.isfinite(centers[rows, 2])], box, voxel_angstrom)
        except (InputError, OSError, ValueError) as err:
            unreadable.append((name, str(err)))
    note = _note(paths, missing, unreadable, len(wanted), len(drawable))
    style = "".join(f".tomo-{i}{{background-image:url({data_uri(png_bytes(m.image))})}}" for i, m in enumerate(maps.values()))
    css_class = {name: f"tomo-{i}" for i, name in enumerate(maps)}
    cards = {}
    per_card = max(1, min(MAPS_PER_CARD, MAX_CARD_MAPS // max(1, sum(1 for v in run.members.values() if v))))
    for k, uuids in run.members.items():
        rows = np.array([index[u] for u in uuids if u in index], dtype=np.int64)
        rows = rows[np.all(np.isfinite(centers[rows, :2]), axis=1)] if len(rows) else rows
        counts = {n: int(c) for n, c in zip(*np.unique(names[rows], return_counts=True))} if len(rows) else {}
        shown = sorted((n for n in counts if n in maps), key=lambda n: (-counts[n], n))[:per_card]
        cards[k] = "".join(
            _card_map(k, maps[n], css_class[n], centers[rows[names[rows] == n]], len(uuids), colors[k]) for n in shown
        )
    return Locations(style=style, cards=cards, note=note, maps=maps)


def _note(paths, missing, unreadable, n_wanted, n_drawable):
    parts = []
    if missing:
        if len(paths) == 1 and not next(iter(paths.values())):
            return "No location maps: the run names no tomogram for these subvolumes."
        if len(paths) == 1:
            return f"No location map: tomogram {next(iter(paths.values()))} not found."
        named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        parts.append(f"no location map for {len(missing)} of {n_wanted} tomograms (no file recorded, or not found): {named}")
    if unreadable:
        parts.append("could not read " + "; ".join(f"{n} ({why})" for n, why in unreadable[:3]))
    if n_wanted - len(missing) > n_drawable:
        parts.append(f"maps drawn for the {n_drawable} tomograms with the most subvolumes")
    return (parts[0][0].upper() + "; ".join(parts)[1:] + ".") if parts else ""


def _card_map(k, tmap, css_class, centers, size, color):
    rows, cols = mark_pixels(centers, tmap.bin, tmap.size)
    width, height = tmap.size
    bar = scale_bar(tmap.voxel_angstrom * tmap.bin if tmap.voxel_angstrom else None, width / 4)
    label = (
        f"tomogram {html.escape(tmap.name)}: {len(centers)} of {size} members marked; mean of {tmap.slices} z slices "
        f"in z {tmap.z_range[0]}-{tmap.z_range[1]}, {tmap.bin} x {tmap.bin} voxels a pixel, x to the right, y up"
    )
    return (
        f'<div class="strip-label">{label}</div>'
        f'<div class="locbox"><div class="locmap {css_class}" data-tomogram="{html.escape(tmap.name)}" style="aspect-ratio:{width} / {height}">'
        f'<img class="marks" src="{data_uri(marks_png(rows, cols, tmap.size, color))}" alt="where the members of cluster {k} lie in '
        f'{html.escape(tmap.name)}" data-bin="{tmap.bin}"></div>{scalebar_html(bar, width)}</div>'
    )


def location_summary(maps: Mapping[str, TomogramMap], polarity: str | None = None) -> str:
    """One sentence on how the maps were drawn (for the section's text), or ''.

    ``polarity``: the run's recorded contrast polarity (``"dark"`` or ``"bright"``), said as the maps show it.
    """
    if not maps:
        return ""
    dense = {"dark": " (dense matter dark, as recorded)", "bright": " (dense matter bright, as recorded)"}.get(polarity or "", "")
    return (
        f"Location maps of {len(maps)} tomogram{'s' if len(maps) > 1 else ''}: each is the mean of up to {SLAB_SLICES} z slices "
        f"spread over the z range of its picks{dense}, binned to at most "
        f"{MAP_MAX_PX} pixels; a dot marks the pixel holding each member's centre (with a ring when there are few)."
    )
