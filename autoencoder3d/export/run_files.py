"""What an export reads besides the run folder: the clusters chosen, the particles' centres and poses."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..runs.folder import members_of, parse_clusters


def particle_records(path: str | os.PathLike) -> tuple[dict[str, dict], tuple[int, ...]]:
    """uuid -> record dict of a published subvolume pickle (volumes are not kept), and the box side."""
    from ..formats.subvolume_pickle import load_pickle

    d = load_pickle(path)
    if not isinstance(d, dict) or not isinstance(d.get("vs"), dict):
        raise InputError(f"{path}: not a subvolume pickle (expected a dict with 'v_siz' and 'vs')")
    shape = tuple(int(s) for s in np.asarray(d.get("v_siz", [0, 0, 0])).ravel()[:3])
    out = {}
    for key, rec in d["vs"].items():
        if isinstance(rec, dict) and rec.get("v") is not None:
            out[str(key)] = {k: v for k, v in rec.items() if k != "v"}
    return out, shape


def center_of(rec: dict | None) -> np.ndarray | None:
    """The record's 'center' as a (3,) float array, or None."""
    c = None if rec is None else rec.get("center")
    if c is None:
        return None
    c = np.asarray(c, dtype=float).ravel()
    return c if c.shape == (3,) and np.all(np.isfinite(c)) else None


def cluster_members(clus_dir: str | os.PathLike, clusters: str | Sequence[int] | None
                    ) -> tuple[dict[int, list[str]], list[int], list[int] | None]:
    """(members: cluster -> uuids, selected cluster ids, chosen ids or None)."""
    members = members_of(clus_dir)
    chosen = parse_clusters(clusters)
    if chosen is not None:
        missing = [c for c in chosen if c not in members]
        if missing:
            raise InputError(
                f"--clusters: {', '.join(map(str, missing))} not in this run (clusters {min(members)}..{max(members)})"
            )
    return members, (sorted(members) if chosen is None else chosen), chosen
