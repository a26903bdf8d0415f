"""Reading a finished run folder: run.json, the clusters, the particles' centres and poses."""

import os

import numpy as np

from ..errors import InputError
from ..io import load_json


def parse_clusters(clusters):
    """Cluster ids from a list or ``'3,5,17'``; None stays None (all clusters)."""
    if clusters is None:
        return None
    if isinstance(clusters, str):
        try:
            return sorted({int(c) for c in clusters.replace(" ", "").split(",") if c})
        except ValueError:
            raise InputError(f"--clusters {clusters!r}: expected cluster numbers separated by commas, e.g. 3,5,17") from None
    return sorted({int(c) for c in clusters})


def read_run(run_dir):
    """``run.json`` of a finished run, checked to have an ``inputs`` section."""
    path = os.path.join(run_dir, "run.json")
    try:
        with open(path, encoding="utf-8") as handle:
            run = load_json(handle.read())
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror}); is {run_dir} a finished 'autoencoder3d train' run?") from None
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(run, dict) or not isinstance(run.get("inputs"), dict):
        raise InputError(f"{path}: has no 'inputs' section")
    return run


def resolve(run_dir, path):
    """A path from run.json: as written when it exists or is absolute, else relative to the run folder."""
    if not path:
        return None
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(run_dir, path)


def particle_records(path):
    """uuid -> record dict of a published subvolume pickle (volumes are not kept), and the box side."""
    from ..io import load_pickle

    d = load_pickle(path)
    if not isinstance(d, dict) or not isinstance(d.get("vs"), dict):
        raise InputError(f"{path}: not a subvolume pickle (expected a dict with 'v_siz' and 'vs')")
    shape = tuple(int(s) for s in np.asarray(d.get("v_siz", [0, 0, 0])).ravel()[:3])
    out = {}
    for key, rec in d["vs"].items():
        if isinstance(rec, dict) and rec.get("v") is not None:
            out[str(key)] = {k: v for k, v in rec.items() if k != "v"}
    return out, shape


def center_of(rec):
    """The record's 'center' as a (3,) float array, or None."""
    c = None if rec is None else rec.get("center")
    if c is None:
        return None
    c = np.asarray(c, dtype=float).ravel()
    return c if c.shape == (3,) and np.all(np.isfinite(c)) else None


def cluster_members(clus_dir, clusters):
    """(members: cluster -> uuids, selected cluster ids, chosen ids or None)."""
    from ..io import load_pickle

    path = os.path.join(clus_dir, "kmeans.pickle")
    kmeans = load_pickle(path)
    if not isinstance(kmeans, dict):
        raise InputError(f"{path}: expected a dict cluster -> list of uuids")
    members = {int(k): [str(u) for u in v] for k, v in kmeans.items()}
    chosen = parse_clusters(clusters)
    if chosen is not None:
        missing = [c for c in chosen if c not in members]
        if missing:
            raise InputError(
                f"--clusters: {', '.join(map(str, missing))} not in this run (clusters {min(members)}..{max(members)})"
            )
    return members, (sorted(members) if chosen is None else chosen), chosen
