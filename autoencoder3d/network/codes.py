"""How much the 32-number codes say: active units, distinct codes, collapse.

With a ReLU code layer, the codes can collapse: every unit switched off (or
on for no subvolume in particular), all subvolumes sharing one code, and
k-means then has nothing to separate. A collapse is permanent (a unit that is
zero for every input gets no gradient), so training stops at the end of the
first epoch that shows it, with the remedy, instead of after 100 epochs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError

log = logging.getLogger(__name__)



class CodesCollapsed(InputError):
    """The encoder maps (nearly) every subvolume to the same code."""


def code_statistics(codes: ArrayLike) -> dict[str, int | float]:
    """Active units (non-zero for some subvolume), units that vary, distinct codes (rounded to 1e-6)
    and the fraction of code entries that are exactly zero (the code's sparsity)."""
    codes = np.asarray(codes, dtype=np.float64)
    varying = np.ptp(codes, axis=0) > 1e-6 * max(1.0, float(np.abs(codes).max(initial=0.0)))
    return {
        "active_code_units": int((np.abs(codes).max(axis=0, initial=0.0) > 0).sum()),
        "varying_code_units": int(varying.sum()),
        "distinct_codes": int(len(np.unique(np.round(codes, 6), axis=0))),
        "zero_fraction": round(float(np.mean(codes == 0)), 4) if codes.size else 1.0,
    }


def is_collapsed(stats: Mapping[str, Any]) -> bool:
    """True when no code unit varies between subvolumes: one cluster whatever k-means does."""
    return stats["varying_code_units"] == 0 or stats["distinct_codes"] < 2


def collapse_message(stats: Mapping[str, Any], n_samples: int, epoch: int | None = None, remedy: str | None = None) -> str:
    when = f" after epoch {epoch}" if epoch is not None else ""
    remedy = remedy or (
        "run with the defaults (standardized input, code normalization) instead of --published, "
        "or lower --l1 (e.g. --l1 0) and --learning-rate"
    )
    return (
        f"the autoencoder's codes collapsed{when}: {stats['active_code_units']} of the code units are ever non-zero "
        f"and the {n_samples} subvolumes checked share {stats['distinct_codes']} distinct code(s), so every "
        f"clustering would be one cluster; {remedy} (then pass --retrain)"
    )


def code_health(stats: Mapping[str, Any] | None, n_clusters: int) -> str | None:
    """How alive the codes of a run are, from :func:`code_statistics` (run.json's ``"codes"``).

    Returns 'dead' when no code unit varies (:func:`is_collapsed`), none is ever
    active, or there are fewer distinct codes than clusters (k-means must leave
    clusters empty or split identical codes); 'nearly dead' when at most 2 units
    are active or there are fewer than 2 distinct codes per cluster; 'alive'
    otherwise; None when the record has no code statistics. Decided once, when
    the run clusters, and recorded as ``codes["health"]``: the report and the
    final line read it from there.
    """
    stats = stats or {}
    if stats.get("health"):
        return stats["health"]
    active, distinct = stats.get("active_code_units"), stats.get("distinct_codes")
    if active is None or distinct is None:
        return None
    if active == 0 or distinct < n_clusters or ("varying_code_units" in stats and is_collapsed(stats)):
        return "dead"
    if active <= 2 or distinct < 2 * n_clusters:
        return "nearly dead"
    return "alive"


def describe_codes(codes: np.ndarray, n_clusters: int) -> dict[str, Any]:
    """Statistics and health of the final codes; warns when they cannot give ``n_clusters`` clusters."""
    stats = code_statistics(codes)
    stats["health"] = code_health(stats, n_clusters)
    if not is_collapsed(stats) and stats["distinct_codes"] < n_clusters:
        log.warning(
            "the %d subvolumes have only %d distinct codes (%d of %d code units vary), fewer than the %d clusters "
            "asked for: some clusters will be empty or duplicates",
            len(codes), stats["distinct_codes"], stats["varying_code_units"], np.shape(codes)[1], n_clusters,
        )
    return stats
