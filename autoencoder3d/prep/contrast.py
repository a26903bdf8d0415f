"""Contrast polarity: is dense matter dark or bright in this tomogram?

Cellular tomograms reconstructed by IMOD show dense matter dark (negative),
as the published program assumes; many pipelines invert them so that protein
is bright. One run-wide choice, ``"dark"`` or ``"bright"``, is used by
picking, pose normalization, EDSS3D's labels and the report. ``"auto"``
decides from the skew of the intensities: dense matter is the sparse tail of
the histogram, so the third moment is negative when it is dark.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

if TYPE_CHECKING:
    from ..volume import Volumes

log = logging.getLogger(__name__)

POLARITIES = ("dark", "bright")
DEFAULT_POLARITY = "dark"  # IMOD's and the published program's convention: dense matter is dark
SAMPLE = 2_000_000  # voxels read to decide


def polarity_sign(polarity: str) -> float:
    """+1 where dense matter is dark (published), -1 where it is bright."""
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    return 1.0 if polarity == "dark" else -1.0


def polarity_of_skew(skew: float) -> str:
    """Dense matter is the minority of voxels, so its side of the histogram is the long tail: dark when skew <= 0."""
    return "dark" if skew <= 0 else "bright"


def recorded_polarity(value: object) -> str | None:
    """A polarity read from a record: ``"dark"`` or ``"bright"``, else None (absent, ``"auto"`` or damaged)."""
    return value if value in POLARITIES else None


def decide_polarity(asked: str | None, recorded: str | None, source: str) -> str:
    """The polarity to use for data that recorded ``recorded`` (None: nothing) when ``asked`` was asked (None: nothing).

    The recorded one wins over nothing or ``"auto"``; another one asked is refused.

    Raises:
        InputError: ``asked`` is the other polarity than the one the data were made with.
    """
    recorded = recorded_polarity(recorded)
    if recorded is None or asked == recorded:
        return asked or DEFAULT_POLARITY
    if asked in (None, "auto"):
        log.info("--polarity %s: as recorded by %s", recorded, source)
        return recorded
    raise InputError(f"{source}: its subvolumes were made with --polarity {recorded}, not {asked}: "
                     f"leave --polarity out or pass --polarity {recorded}")


def skewness(values: ArrayLike) -> float:
    """Sample skewness (third standardized moment) of an array, in float64."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x - x.mean()
    spread = np.sqrt(np.mean(x * x))
    return float(np.mean(x**3) / spread**3) if spread > 0 else 0.0


def voxel_sample(volumes: Volumes, limit: int = SAMPLE, seed: int = 0) -> NDArray[np.float64]:
    """Up to ``limit`` voxels of ``volumes`` (whole subvolumes, chosen evenly)."""
    n = len(volumes)
    per = max(1, int(np.prod(volumes.shape[1:])))
    take = max(1, min(n, limit // per))
    rows = np.unique(np.linspace(0, n - 1, take).astype(np.int64))
    return np.asarray(volumes[rows], dtype=np.float64)


def detect_polarity(volumes: Volumes) -> tuple[str, float]:
    """``(polarity, skewness)`` decided from the subvolumes' intensity skew."""
    skew = skewness(voxel_sample(volumes))
    return polarity_of_skew(skew), skew


def resolve_polarity(polarity: str, volumes: Volumes, source: str = "the subvolumes") -> tuple[str, dict[str, Any]]:
    """The polarity to use: ``polarity`` itself, or detected when ``"auto"``; says which, once.

    Returns:
        (polarity, record): record is what run.json keeps (asked, used, skewness).
    """
    if polarity == "auto":
        used, skew = detect_polarity(volumes)
        log.info("contrast: dense matter looks %s in %s (intensity skew %+.3f); recorded in run.json", used, source, skew)
        return used, {"asked": "auto", "used": used, "skewness": skew}
    polarity_sign(polarity)
    skew = skewness(voxel_sample(volumes))
    guess = polarity_of_skew(skew)
    if guess != polarity and abs(skew) > 0.2:
        log.warning(
            "contrast: --polarity %s, but the intensity skew of %s (%+.2f) suggests dense matter is %s; "
            "pass --polarity %s (or auto) if it is", polarity, source, skew, guess, guess,
        )
    return polarity, {"asked": polarity, "used": polarity, "skewness": skew}
