"""Pieces of the cluster report page: images, scale bars, cluster cards, the code-health banner, settings and loss.

Images are inline PNG data URIs. How their grey levels are chosen (one window
for the whole page by default, or each image its own) is in :mod:`.windows`.
Under every image a scale bar in nm, ``round(bar_nm * 10 / pixel_A)`` of the
image's pixels long, or "voxel size unknown".
"""

from __future__ import annotations

import base64
import html
import os
import shlex
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..network.codes import code_health
from ..runs.folder import RunFolder
from .figures import scale_bar
from .windows import contrast_filters, linear_map, own_member_window, shared_contrast, shared_map, to_uint8

__all__ = [  # shared_contrast, shared_map and contrast_filters are .windows's, named here too
    "card", "central_slices", "contrast_filters", "data_uri", "fmt", "health_banner", "loss_html", "montage_png", "montage_zoom",
    "png_bytes", "scalebar_html", "settings_groups", "settings_html", "shared_contrast", "shared_map", "to_uint8", "tomograms_line",
]

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .measures import ClusterMeasures
    from .page import RunOutputs

MONTAGE_TARGET_PX = 400  # montages are drawn at the integer zoom that makes them about this wide
ZOOMS = (1, 2, 3, 4, 6, 8)  # the page's montage-size choices


# ---------------------------------------------------------------- images


def png_bytes(image: ArrayLike, alpha: ArrayLike | None = None, palette: Sequence[tuple[int, int, int, int]] | None = None) -> bytes:
    """A 2D uint8 array as 8-bit PNG bytes: grayscale; with ``alpha`` (same shape), grey plus alpha; with
    ``palette`` (RGBA tuples), the values are indices into it.

    Every row has the same PNG filter (none, Sub or Up: whichever deflates smallest; none for a palette), deflated by zlib
    (numpy and the standard library only: fast at any size).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    if palette is not None:
        kind, pixels = 3, image
    elif alpha is not None:
        kind, pixels = 4, np.stack([image, np.asarray(alpha, dtype=np.uint8)], axis=-1).reshape(height, 2 * width)
    else:
        kind, pixels = 0, image
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, kind, 0, 0, 0))]
    if palette is not None:
        chunks.append((b"PLTE", bytes(v for rgba in palette for v in rgba[:3])))
        chunks.append((b"tRNS", bytes(rgba[3] for rgba in palette)))
    chunks += [(b"IDAT", _deflated(pixels, 2 if kind == 4 else 1, filters=(0,) if kind == 3 else (0, 1, 2))), (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data) & 0xFFFFFFFF) for name, data in chunks
    )


def _deflated(pixels, bpp, filters=(0, 1, 2)):
    """The zlib stream of PNG image data: each row behind its filter byte; the smallest of ``filters`` (0 none, 1 Sub, 2 Up)."""
    values = pixels.astype(np.int16)
    streams = []
    for kind in filters:
        rows = values.copy()
        if kind == 1:
            rows[:, bpp:] -= values[:, :-bpp]
        elif kind == 2:
            rows[1:] -= values[:-1]
        raw = np.concatenate([np.full((len(rows), 1), kind, dtype=np.uint8), (rows % 256).astype(np.uint8)], axis=1)
        streams.append(zlib.compress(raw.tobytes(), 6))
    return min(streams, key=len)


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def montage_png(volume: ArrayLike, contrast: tuple[float, float] | None = None) -> bytes:
    """The published montage (``fig/NNN--SIZE.png``) at 8 bits.

    With ``contrast=None`` the slices are scaled by the volume's own min and max
    (the published scaling); with ``(low, high)`` by that shared range. The
    gaps between slices are transparent (the page draws them black, whatever
    filter the contrast puts on the grey levels).
    """
    from .figures import montage

    image = montage(np.asarray(volume, dtype=np.float64))
    pixels = ~np.isnan(image)
    low, high = contrast if contrast is not None else (image[pixels].min(), image[pixels].max())
    out = np.zeros(image.shape, dtype=np.uint8)
    out[pixels] = to_uint8(image[pixels], low, high)
    return png_bytes(out, alpha=np.where(pixels, 255, 0))


def montage_zoom(v_siz: Sequence[int]) -> int:
    """The zoom of the page's choices (ZOOMS) at which a montage of a box of ``v_siz`` is about MONTAGE_TARGET_PX wide."""
    n1, _, n3 = (list(v_siz) + [1, 1, 1])[:3]
    width = int(np.ceil(np.sqrt(max(int(n3), 1)))) * (int(n1) + 1)
    wanted = round(MONTAGE_TARGET_PX / max(width, 1))
    return max([z for z in ZOOMS if z <= wanted] or [1])


def central_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The three orthogonal central slices of a volume indexed [x, y, z].

    Returns:
        list of (name, 2D array): ``x = n1//2`` (rows y, columns z), ``y = n2//2``
        (rows x, columns z) and ``z = n3//2`` (rows x, columns y, as in the montage).
    """
    n1, n2, n3 = volume.shape
    return [
        (f"x={n1 // 2}", volume[n1 // 2, :, :]),
        (f"y={n2 // 2}", volume[:, n2 // 2, :]),
        (f"z={n3 // 2}", volume[:, :, n3 // 2]),
    ]


# ---------------------------------------------------------------- cluster cards


TOMOGRAMS_NAMED = 5  # a card names its cluster's top tomograms and sums the rest


def tomograms_line(counts: Sequence[tuple[str, int]] | None) -> str:
    """One line: the tomograms a cluster's members come from, most first, with exact counts (HTML, or '')."""
    if not counts:
        return ""
    named = ", ".join(f"{html.escape(name)} {n}" for name, n in counts[:TOMOGRAMS_NAMED])
    rest = counts[TOMOGRAMS_NAMED:]
    more = f"; {sum(n for _, n in rest)} more from {len(rest)} other tomogram{'s' if len(rest) > 1 else ''}" if rest else ""
    return f'<div class="tomograms note" title="members per tomogram">from {len(counts)} tomogram{"s" if len(counts) > 1 else ""}: {named}{more}</div>'


def scalebar_html(bar: tuple[float, int] | None, image_px: int) -> str:
    """A scale bar under an image ``image_px`` pixels wide: ``bar`` = (nm, pixels) from :func:`~.figures.scale_bar`, or None.

    The bar's width is its share of the image's width, so it scales with the image; without a voxel size the
    line says "voxel size unknown".
    """
    if bar is None:
        return '<div class="scalebar unknown">voxel size unknown</div>'
    nm, px = bar
    return (
        f'<div class="scalebar" data-bar-nm="{nm:g}" data-bar-px="{px}" data-image-px="{image_px}">'
        f'<i style="width:{100 * px / max(image_px, 1):.4f}%"></i><span>{nm:g} nm</span></div>'
    )


def _figure(img_tag, image_px, voxel_angstrom, caption):
    bar = scalebar_html(scale_bar(voxel_angstrom, image_px / 2), image_px)
    return f"<figure>{img_tag}{bar}<figcaption>{caption}</figcaption></figure>"


MEASURE_TITLES = {
    "spread": "mean distance of the members' codes to the cluster's centre, in code units (smaller: tighter)",
    "stability": "mean best Jaccard overlap with a cluster of the run's k-means (flip-aware under --flips match) rerun with other seeds "
                 "on the same codes (1: always found again)",
    "structure": "structure of the decoded centre in units of one member's noise (below 1: flat, no more structure than noise)",
}


def measures_html(measures: ClusterMeasures | None) -> tuple[str, str, str]:
    """(data attributes of the card, the line of measures, the 'flat centre' badge or '') of one cluster."""
    values = {name: getattr(measures, name, None) for name in MEASURE_TITLES}
    attrs = "".join(f' data-{name}="{"" if v is None else f"{v:.6g}"}"' for name, v in values.items())
    formats = {"spread": "{:.3g}", "stability": "{:.2f}", "structure": "{:.2g}"}
    line = " &middot; ".join(
        f'<span class="measure">{name} {"not measured" if v is None else formats[name].format(v)}</span>' for name, v in values.items()
    )
    flat = getattr(measures, "flat", None)
    badge = (
        f'<span class="flat-badge" title="{html.escape(MEASURE_TITLES["structure"])}">flat centre</span>' if flat else ""
    )
    return attrs + f' data-flat="{"" if flat is None else int(flat)}"', f'<div class="measures">{line}</div>', badge


def card(k: int, size: int, color: str, center: np.ndarray, members: Sequence[tuple[str, int, np.ndarray]], fig_name: str,
         tomograms: Sequence[tuple[str, int]] | None = None, *, member_window: tuple[float, float] | None = None,
         voxel_angstrom: float | None = None, measures: ClusterMeasures | None = None, location: str = "") -> str:
    """The card of one cluster; an empty cluster gets a card that says so, without images.

    Args:
        tomograms: [(tomogram, members from it), ...] most first, for a data set of several tomograms.
        member_window: the page's shared window of member slices; their PNGs are drawn on it (each image's own
            window is the ``data-own`` linear map). None: each on its own window.
        voxel_angstrom: the voxel size for the scale bars (None: "voxel size unknown").
        measures: the cluster's spread, stability and structure.
        location: HTML of the maps of where the members lie.
    """
    attrs, measures_line, badge = measures_html(measures)
    head = (
        f'<div class="card-head"><span class="swatch" style="background:{color}"></span>'
        f'<span class="card-title">cluster {k}</span><span class="card-size">{size} members</span>{badge}'
    )
    if size == 0:
        return (
            f'<div class="card empty" id="cluster-{k}" data-cluster="{k}" data-size="0"{attrs}>{head}</div>'
            '<p class="empty-note">empty: k-means gave this cluster no subvolume, so there is nothing to show or select.</p></div>'
        )
    own = (float(center.min()), float(center.max()))
    slices = "".join(
        _figure(f'<img class="pix contrast" src="{data_uri(png_bytes(to_uint8(img, *own)))}" data-filter="shared-{k}" '
                f'style="filter:url(#shared-{k})" alt="cluster {k} centre {name}" title="decoded centre, slice {name}">',
                img.shape[1], voxel_angstrom, name)
        for name, img in central_slices(center)
    )
    member_figs = []
    for uuid, rank, volume in members:
        img = volume[:, :, volume.shape[2] // 2]
        own_window = own_member_window(img)
        window = member_window or own_window
        own_map = " ".join(f"{v:.6g}" for v in linear_map(window, own_window))
        member_figs.append(_figure(
            f'<img class="pix member" src="{data_uri(png_bytes(to_uint8(img, *window)))}" data-own="{own_map}" '
            f'alt="member {html.escape(uuid)}" title="{html.escape(uuid)}: rank {rank + 1} of {size} by distance to the centre">',
            img.shape[1], voxel_angstrom, f"#{rank + 1}",
        ))
    members_html = (
        f'<div class="strip-label">members, central z slice (rank by distance to the centre)</div><div class="strip">{"".join(member_figs)}</div>'
        if member_figs else ""
    )
    montage = montage_png(center)
    width = _png_width(montage)
    bar = scalebar_html(scale_bar(voxel_angstrom, 0.6 * center.shape[1]), width)
    return (
        f'<div class="card" id="cluster-{k}" data-cluster="{k}" data-size="{size}"{attrs}>{head}'
        f'<button type="button" class="assign">assign</button></div>{measures_line}'
        f'<div class="montage-box"><div class="montage-frame"><img class="pix montage contrast" src="{data_uri(montage)}" '
        f'data-filter="shared-{k}" style="filter:url(#shared-{k})" alt="montage of cluster {k}" title="{html.escape(fig_name)}"></div>'
        f"{bar}</div>"
        f'<div class="strip-label">decoded centre, central slices</div><div class="strip">{slices}</div>'
        f"{members_html}{location}{tomograms_line(tomograms)}</div>"
    )


def _png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk's width


# ---------------------------------------------------------------- what the reader must know first


def health_banner(record: dict, sizes: Mapping[int, int]) -> str:
    """Warnings for the top of the page: dead or nearly dead codes, empty clusters (HTML, or '')."""
    n_clusters = int((record.get("inputs") or {}).get("n_clusters") or len(sizes))
    codes = record.get("codes") or {}
    health = code_health(codes, n_clusters)
    dim = (record.get("options") or {}).get("encoding_dim", "?")
    empty = sorted(k for k, s in sizes.items() if s == 0)
    lines = []
    if health in ("dead", "nearly dead"):
        facts = (
            f"{codes['active_code_units']} of {dim} code units are ever active and the {record.get('n_subvolumes', '?')} "
            f"subvolumes have {codes['distinct_codes']} distinct codes for {n_clusters} clusters"
        )
        if health == "dead":
            lines.append(f"The codes are dead: {facts}. These clusters do not sort the subvolumes by structure; "
                         "retrain before choosing clusters (see the warning 'autoencoder3d train' printed).")
        else:
            lines.append(f"The codes are nearly dead: {facts}. The clusters rest on very little information; "
                         "compare them with the members' slices before trusting them.")
    if empty:
        lines.append(f"{len(empty)} of {len(sizes)} clusters are empty (k-means gave them no subvolume): {', '.join(map(str, empty))}.")
    if not lines:
        return ""
    kind = "dead" if health == "dead" else "warn"
    return f'<div class="health {kind}" id="health">' + "".join(f"<p>{html.escape(line)}</p>" for line in lines) + "</div>"


# ---------------------------------------------------------------- training and settings


def loss_html(run: RunOutputs) -> str:
    model_dir = RunFolder(run.run_dir).model_dir
    training = run.record.get("training") or {}
    facts = ", ".join(f"{k.replace('_', ' ')}: {fmt(v)}" for k, v in training.items() if not isinstance(v, (dict, list)))
    parts = [f'<p class="note">{html.escape(facts)}</p>'] if facts else []
    loss_png = os.path.join(model_dir, "loss.png")
    history_csv = os.path.join(model_dir, "history.csv")
    png = None
    if os.path.isfile(loss_png):
        with open(loss_png, "rb") as handle:
            png = handle.read()
    elif os.path.isfile(history_csv):
        png = _history_png(history_csv)
    if png:
        parts.append(f'<img src="{data_uri(png)}" alt="training loss per epoch" style="max-width:100%">')
    else:
        parts.append('<p class="note">No training history in model/ (the model was reused without training).</p>')
    return "\n".join(parts)


def _history_png(path):
    import csv
    import tempfile

    from .figures import plot_history

    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    if not rows:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "loss.png")
        plot_history(out, rows)
        with open(out, "rb") as handle:
            return handle.read()


def fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


# Where each run.json entry is shown: (group, section of run.json, key, label). Options that are not
# listed (added by later versions) appear under "other options", so nothing recorded is hidden.
SETTINGS_LAYOUT = [
    ("data", "inputs", "data", "subvolumes"),
    ("data", "inputs", "tomogram", "tomogram"),
    ("data", "inputs", "pose", "pose-normalized"),
    ("data", None, "n_subvolumes", "number of subvolumes"),
    ("data", None, "v_siz", "box (voxels)"),
    ("data", None, "voxel_size", "voxel size (A)"),
    ("data", "options", "smooth_sigma", "smoothing for pose normalization (voxels)"),
    ("model", "options", "encoding_dim", "code length"),
    ("model", "options", "l1", "L1 penalty on the code"),
    ("model", "options", "mixed_precision", "mixed precision"),
    ("training", "options", "epochs", "epochs (maximum)"),
    ("training", "options", "batch_size", "batch size"),
    ("training", "options", "learning_rate", "learning rate"),
    ("training", "options", "patience", "early-stopping patience"),
    ("training", "options", "validation_split", "validation fraction"),
    ("training", "options", "retrain", "retrained"),
    ("training", "options", "distribute", "distributed training"),
    ("training", "options", "deterministic", "deterministic"),
    ("training", "cpu_kernels", "onednn", "oneDNN CPU kernels"),
    ("training", "options", "verbose", "verbosity"),
    ("training", "options", "workers", "workers"),
    ("clustering", "inputs", "n_clusters", "clusters"),
    ("clustering", "options", "n_init", "k-means restarts"),
    ("clustering", None, "kmeans_method", "k-means algorithm"),
    ("clustering", "options", "flips", "pose flips (off, average, match)"),
    ("clustering", None, "seed", "seed"),
    ("clustering", None, "inertia", "k-means inertia"),
    ("clustering", "codes", "active_code_units", "active code units"),
    ("clustering", "codes", "distinct_codes", "distinct codes"),
]
GROUPS = ["run", "data", "model", "training", "clustering", "other options", "timings", "versions"]


def settings_groups(record: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """run.json as ordered groups of (label, value) rows; every recorded option appears once."""
    groups = {name: [] for name in GROUPS}
    if record.get("argv"):
        groups["run"].append(("command line", " ".join(shlex.quote(str(a)) for a in record["argv"])))
    for key in ("command", "started"):
        if key in record:
            groups["run"].append((key, record[key]))
    shown = set()
    for group, section, key, label in SETTINGS_LAYOUT:
        source = record if section is None else (record.get(section) or {})
        if key in source:
            groups[group].append((label, source[key]))
            shown.add((section, key))
    for key, value in (record.get("options") or {}).items():
        if ("options", key) not in shown:
            groups["other options"].append((key.replace("_", " "), value))
    for key, value in (record.get("training") or {}).items():
        if not isinstance(value, (dict, list)):
            groups["training"].append((key.replace("_", " "), value))
    for key, value in (record.get("timings") or {}).items():
        groups["timings"].append((key.removesuffix("_s").replace("_", " ") + (" (s)" if key.endswith("_s") else ""), value))
    groups["versions"] = list((record.get("versions") or {}).items())
    return [(name, rows) for name, rows in groups.items() if rows]


def settings_html(record: dict) -> str:
    """The grouped settings tables: run, data, model, training, clustering, timings, versions."""
    blocks = []
    for name, rows in settings_groups(record):
        cells = "".join(f"<tr><td>{html.escape(str(label))}</td><td>{html.escape(fmt(value))}</td></tr>" for label, value in rows)
        blocks.append(f'<div class="settings-group"><h3>{html.escape(name)}</h3><table class="settings">{cells}</table></div>')
    return f'<div class="settings-groups">{"".join(blocks)}</div>'
