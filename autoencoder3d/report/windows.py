"""Intensity windows of the report's images: one shared by the whole page (the default), or each image its own.

- Decoded centres (montages and central slices) share one window: the joint
  minimum and maximum of all non-empty clusters' centres, in the data's units
  (centres are smooth decoder outputs, so their extremes are structure, not
  outliers). Their PNGs are stored on each cluster's own minimum..maximum (the
  published ``fig/`` scaling, every grey level used); the shared view is an
  exact linear map of those grey levels, an SVG filter per cluster.
- Member slices share one window: the 1st and 99th percentiles of all member
  slices on the page, pooled (raw subvolumes: noise makes the extremes
  outliers). Their PNGs are stored on that window; each image's own view (its
  own 1st-99th percentile) is the linear map ``data-own`` names, which the page
  turns into a filter when asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

MEMBER_PERCENTILES = (1.0, 99.0)


def to_uint8(image: ArrayLike, low: float, high: float) -> NDArray[np.uint8]:
    """Grey levels 0..255 for values low..high (clipped); 0 everywhere when high <= low."""
    scaled = (np.asarray(image, dtype=np.float64) - low) / (high - low) if high > low else np.zeros(np.shape(image))
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def shared_contrast(centers: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> tuple[float, float]:
    """One (low, high) for all decoded centres of non-empty clusters: their joint min and max (fig/'s rule, shared)."""
    chosen = [v for k, v in centers.items() if sizes.get(k, 0) > 0] or list(centers.values())
    if not chosen:
        return (0.0, 1.0)
    return (float(min(np.min(v) for v in chosen)), float(max(np.max(v) for v in chosen)))


def member_window(slices: Sequence[ArrayLike]) -> tuple[float, float] | None:
    """One (low, high) for all member slices: the 1st and 99th percentiles of all their pixels pooled; None without slices."""
    pixels = [np.asarray(s, dtype=np.float64).ravel() for s in slices]
    if not pixels:
        return None
    low, high = np.percentile(np.concatenate(pixels), MEMBER_PERCENTILES)
    return float(low), float(high)


def own_member_window(image: ArrayLike) -> tuple[float, float]:
    """One member slice's own window: its 1st and 99th percentiles."""
    low, high = np.percentile(np.asarray(image, dtype=np.float64), MEMBER_PERCENTILES)
    return float(low), float(high)


def linear_map(source: tuple[float, float], target: tuple[float, float]) -> tuple[float, float]:
    """(slope, intercept) taking a grey level g in [0, 1] on window ``source`` to the grey level of the same value on ``target``.

    Source: g = (v - lo_s) / (hi_s - lo_s); target: (v - lo_t) / (hi_t - lo_t) = slope * g + intercept.
    """
    (lo_s, hi_s), (lo_t, hi_t) = source, target
    span = hi_t - lo_t if hi_t > lo_t else 1.0
    return (hi_s - lo_s) / span, (lo_s - lo_t) / span


def shared_map(center: np.ndarray, contrast: tuple[float, float]) -> tuple[float, float]:
    """(slope, intercept) taking a grey level g in [0, 1] on the centre's own contrast to the shared one."""
    return linear_map((float(center.min()), float(center.max())), contrast)


def contrast_filters(centers: Mapping[int, np.ndarray], sizes: Mapping[int, int], contrast: tuple[float, float]) -> str:
    """Hidden SVG with one filter per non-empty cluster: its own grey levels -> the shared contrast (clipped)."""
    filters = []
    for k, center in centers.items():
        if sizes.get(k, 0) == 0:
            continue
        slope, intercept = shared_map(center, contrast)
        funcs = "".join(f'<feFunc{c} type="linear" slope="{slope:.6g}" intercept="{intercept:.6g}"/>' for c in "RGB")
        filters.append(f'<filter id="shared-{k}" color-interpolation-filters="sRGB"><feComponentTransfer>{funcs}</feComponentTransfer></filter>')
    return f'<svg class="filters" width="0" height="0" aria-hidden="true">{"".join(filters)}</svg>'


def contrast_sentences(centres: tuple[float, float], members: tuple[float, float] | None) -> dict[str, str]:
    """What the page says is shown, for each choice of contrast ("shared", "own")."""
    shared = f"Shown: one intensity window for the whole page: centres {centres[0]:.4g} (black) to {centres[1]:.4g} (white)"
    shared += f", member slices {members[0]:.4g} to {members[1]:.4g}" if members else ""
    shared += " (data units; the centres' joint min and max, the member slices' pooled 1st-99th percentile), so greys compare between cards."
    own = ("Shown: each cluster's centre on its own min to max, each member slice on its own 1st-99th percentile: "
           "greys do not compare between images, and a flat centre is stretched until it looks like a particle.")
    return {"shared": shared, "own": own}
