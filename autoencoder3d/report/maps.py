"""The report's 2D maps of the codes: PCA of all of them, t-SNE of a sample, drawn as PNG scatter plots."""

from __future__ import annotations

import html
import io
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .parts import data_uri

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .page import RunOutputs

log = logging.getLogger("autoencoder3d")

TSNE_MAX_POINTS = 1000  # a few seconds of single-threaded scikit-learn t-SNE
MAP_MAX_POINTS = 5000
MAP_SIZE_PX = 480


def cluster_colors(n: int) -> list[str]:
    """``n`` distinct-ish colours (hex), neighbours in id far apart in hue."""
    import colorsys

    colors = []
    for k in range(n):
        hue = (k * 0.618033988749895) % 1.0
        sat = (0.75, 0.55, 0.95)[k % 3]
        val = (0.85, 0.65)[(k // 3) % 2]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        colors.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return colors


def pca_2d(codes: ArrayLike, rows: ArrayLike | None = None, chunk: int = 65536) -> NDArray[np.float64]:
    """First two principal components of the rows of ``codes`` (N, d), projected for ``rows`` (all by default) -> (len(rows), 2).

    The axes come from all N codes (their mean and d x d scatter matrix, summed
    in chunks, so a million codes take a few tens of MB); only ``rows`` are projected.
    """
    codes = np.asarray(codes)
    rows = np.arange(len(codes)) if rows is None else np.asarray(rows)
    n, d = codes.shape
    mean = np.zeros(d)
    for lo in range(0, n, chunk):
        mean += codes[lo : lo + chunk].astype(np.float64).sum(axis=0)
    mean /= max(n, 1)
    scatter = np.zeros((d, d))
    for lo in range(0, n, chunk):
        centered = codes[lo : lo + chunk].astype(np.float64) - mean
        scatter += centered.T @ centered
    picked = codes[rows].astype(np.float64) - mean
    if n < 2 or not np.any(scatter):
        return np.zeros((len(rows), 2))
    values, vectors = np.linalg.eigh(scatter)
    axes = vectors[:, np.argsort(values)[::-1][:2]]
    out = picked @ axes
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def tsne_2d(codes: ArrayLike, seed: int | None = 0) -> np.ndarray:
    """t-SNE of the rows of ``codes`` (scikit-learn, PCA initialisation) -> (N, 2).

    Runs on one OpenMP thread: for the at most ``TSNE_MAX_POINTS`` points shown
    it is a few seconds, and several threads on a busy machine (a GPU server
    while training) are many times slower than one.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    codes = np.asarray(codes, dtype=np.float64)
    perplexity = float(min(30.0, max(2.0, (len(codes) - 1) / 3.0)))
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes)


def _scatter(points, labels, colors, title):
    """Scatter plot PNG bytes and the points' pixel positions in that PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(MAP_SIZE_PX / dpi, MAP_SIZE_PX / dpi), dpi=dpi)
    size = max(3.0, min(25.0, 4000.0 / max(len(points), 1)))
    ax.scatter(points[:, 0], points[:, 1], s=size, c=[colors[k] for k in labels], linewidths=0, alpha=0.85)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    pixels = ax.transData.transform(points)
    pixels[:, 1] = height - pixels[:, 1]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue(), pixels


def code_maps(run: RunOutputs, colors: Sequence[str], *, tsne: bool, tsne_max_points: int, map_max_points: int,
              seed: int | None) -> tuple[str, dict[str, list[float | int]], str]:
    """HTML of the 2D maps, the hover data per map, and a caption."""
    if run.codes is None or len(run.codes) == 0:
        return "<p class=\"note\">No encodings available for this run.</p>", {}, ""
    rng = np.random.default_rng(seed)
    n = len(run.codes)
    shown = np.sort(rng.choice(n, map_max_points, replace=False)) if n > map_max_points else np.arange(n)
    if len(shown) < n:
        note = f"The maps show a random sample of {len(shown):,} of the {n:,} subvolumes (the counts elsewhere on this page are exact)."
    else:
        note = f"All {n:,} subvolumes."
    projections = [("pca", "PCA of the encodings" + (f" ({len(shown):,} of {n:,} at random)" if len(shown) < n else ""), pca_2d(run.codes, shown), shown)]
    if tsne and len(shown) >= 5 and not np.ptp(run.codes[shown], axis=0).any():
        note += " All encodings are identical (the autoencoder collapsed; train longer): no t-SNE."
    elif tsne and len(shown) >= 5:
        subset = shown if len(shown) <= tsne_max_points else np.sort(rng.choice(shown, tsne_max_points, replace=False))
        started = time.perf_counter()
        points = tsne_2d(run.codes[subset], seed=seed)
        log.info("t-SNE of %d encodings took %.1f s", len(subset), time.perf_counter() - started)
        title = "t-SNE of the encodings" + (f" ({len(subset):,} of {n:,} at random)" if len(subset) < n else "")
        projections.append(("tsne", title, points, subset))
        if len(subset) < len(shown):
            note += f" t-SNE on {len(subset):,} of them at random."
    blocks, hover = [], {}
    for name, title, points, rows in projections:
        labels = run.labels[rows]
        png, pixels = _scatter(points, labels, colors, title)
        flat = np.column_stack([np.round(pixels, 1), labels]).ravel()
        hover[name] = [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(flat)]
        blocks.append(
            f'<div class="map" data-map="{name}"><img src="{data_uri(png)}" alt="{html.escape(title)}">'
            '<div class="tooltip"></div></div>'
        )
    return "\n".join(blocks), hover, note
