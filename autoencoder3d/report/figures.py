"""Figures for the manual selection step (section 7) and the training curve."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..util.atomic import atomic_directory, atomic_path

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

PNG_MAX = 65534  # the published scaling: ceil(m * 65534) for m in [0, 1]


def montage(volume: np.ndarray) -> NDArray[np.float64]:
    """Slices ``volume[:, :, k]`` tiled row by row on a square grid, with one-pixel gaps.

    Each cell is (n1 + 1) x (n2 + 1) pixels: the slice, then an empty row and
    column. Unused cells and gaps are NaN.

    Returns:
        float array of shape (g * (n1 + 1), g * (n2 + 1)), g = ceil(sqrt(n3)).
    """
    n1, n2, n3 = volume.shape
    grid = int(math.ceil(math.sqrt(n3)))
    image = np.full((grid * (n1 + 1), grid * (n2 + 1)), np.nan)
    for k in range(n3):
        row, col = divmod(k, grid)
        image[row * (n1 + 1) : row * (n1 + 1) + n1, col * (n2 + 1) : col * (n2 + 1) + n2] = volume[:, :, k]
    return image


NICE_STEPS = (1, 2, 5)  # scale bars are 1, 2 or 5 times a power of ten nanometres


def scale_bar(pixel_angstrom: float | None, max_px: float) -> tuple[float, int] | None:
    """The longest round scale bar (1, 2 or 5 x 10^n nm) at most ``max_px`` pixels long, for pixels of ``pixel_angstrom``.

    Returns:
        ``(bar_nm, bar_px)`` with ``bar_px = round(bar_nm * 10 / pixel_angstrom)`` (at least 1), or None when
        the pixel size is unknown (None, zero, negative or not finite).
    """
    if pixel_angstrom is None or not math.isfinite(pixel_angstrom) or pixel_angstrom <= 0:
        return None
    best = None
    for exponent in range(-3, 8):
        for step in NICE_STEPS:
            nm = step * 10.0**exponent
            px = round(nm * 10 / pixel_angstrom)
            if 1 <= px <= max(max_px, 1):
                best = (float(f"{nm:.6g}"), int(px))
    return best


def montage_uint16(volume: ArrayLike) -> NDArray[np.uint16]:
    """The published 16-bit montage: slices scaled to [0, 1] by their min and max, ``ceil(m * 65534)``."""
    image = montage(np.asarray(volume, dtype=np.float64))
    pixels = ~np.isnan(image)
    low, high = image[pixels].min(), image[pixels].max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    out = np.zeros(image.shape, dtype=np.uint16)
    out[pixels] = np.ceil(scaled[pixels] * PNG_MAX).astype(np.uint16)
    return out


def write_png16(path: str | os.PathLike, image: ArrayLike) -> None:
    """Write a 2D uint16 array as a 16-bit grayscale PNG (pypng), atomically."""
    import png

    image = np.asarray(image, dtype=np.uint16)
    writer = png.Writer(width=image.shape[1], height=image.shape[0], greyscale=True, bitdepth=16)
    with atomic_path(path, suffix=".png") as tmp:
        with open(tmp, "wb") as handle:
            writer.write(handle, image.tolist())


def montage_name(cluster: int, size: int) -> str:
    """The published file name, e.g. ``035--47.png`` for cluster 35 with 47 members."""
    return f"{cluster:03d}--{size}.png"


def write_montages(fig_dir: str | os.PathLike, decoded_centers: np.ndarray | Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> list[str]:
    """Replace ``fig_dir`` with one montage per cluster centre.

    Args:
        fig_dir: the ``clus-center/fig`` folder (rebuilt as a whole, atomically).
        decoded_centers: (k, n1, n2, n3) decoded centres (cluster id = index), or cluster id -> centre.
        sizes: cluster id -> number of members.

    Returns:
        The file names written, in cluster order.
    """
    names = []
    items = sorted(decoded_centers.items()) if isinstance(decoded_centers, Mapping) else enumerate(decoded_centers)
    with atomic_directory(fig_dir) as tmp:
        for cluster, volume in items:
            name = montage_name(cluster, sizes.get(cluster, 0))
            write_png16(os.path.join(tmp, name), montage_uint16(volume))
            names.append(name)
    return names


def plot_history(path: str | os.PathLike, history: Sequence[Mapping[str, float | None]]) -> None:
    """Loss and validation loss per epoch, as a PNG (log scale), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [row["loss"] for row in history], label="training loss")
    if any(row.get("val_loss") is not None for row in history):
        ax.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE + L1 on the code)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
