"""What a new clustering does with the files that were made from the previous one.

``train`` and ``cluster`` replace ``clus-center/`` whole, so that no centre or
figure of an earlier clustering survives. Other commands write there too:
``export`` (``particles/``), ``evaluate`` (``evaluation/``), and users keep
their own files there (a ``selection.json``). Those are never lost without a
word:

- the new clustering is the same (same members in every cluster, made from
  the same inputs and options): they still describe it and are kept in the new
  ``clus-center/``, with one line saying so;
- otherwise they describe a clustering that is gone: the whole previous
  ``clus-center/`` (its ``kmeans.pickle`` with them) is moved to
  ``previous/clus-center-kK-YYYYMMDD-HHMMSS/`` in the run folder, with one
  warning line naming what was moved and why.
"""

import logging
import os
import re
import shutil
import time

from .io import load_json

log = logging.getLogger("autoencoder3d")

# what train and cluster write into clus-center/ for every clustering
CLUSTERING_FILES = frozenset({"kmeans.pickle", "ccents.pickle", "ccents_d.pickle", "encodings.pickle", "fig", "mrc", "index.html"})
PREVIOUS_DIR = "previous"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp(\..*)?|old)$")  # atomic.py's names, removed by runfolder.remove_leftovers


def other_outputs(clus_dir):
    """Names in ``clus_dir`` that the clustering itself does not write (sorted)."""
    try:
        names = os.listdir(clus_dir)
    except OSError:
        return []
    return sorted(n for n in names if n not in CLUSTERING_FILES and not _TEMPORARY.match(n))


def _members(clus_dir):
    from .errors import InputError
    from .io import load_pickle

    try:
        members = load_pickle(os.path.join(clus_dir, "kmeans.pickle"))
    except (InputError, OSError):
        return None
    if not isinstance(members, dict):
        return None
    return {int(k): [str(u) for u in v] for k, v in members.items()}


def _recorded_fingerprint(out_dir):
    try:
        with open(os.path.join(out_dir, "run.json")) as handle:
            record = load_json(handle.read())
    except (OSError, ValueError):
        return None
    return record.get("fingerprint") if isinstance(record, dict) else None


def same_clustering(out_dir, new_dir, fingerprint=None):
    """True when ``new_dir``'s clusters have exactly the members of ``out_dir/clus-center``'s and,
    when ``fingerprint`` is given, the run folder's run.json records the same one."""
    if fingerprint is not None and _recorded_fingerprint(out_dir) != fingerprint:
        return False
    old = _members(os.path.join(out_dir, "clus-center"))
    return old is not None and old == _members(new_dir)


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _count_files(path):
    if not os.path.isdir(path):
        return 1
    return sum(len(files) for _, _, files in os.walk(path))


def _describe(clus_dir, names):
    parts = []
    for name in names:
        path = os.path.join(clus_dir, name)
        if os.path.isdir(path):
            count = _count_files(path)
            parts.append(f"{name}/ ({count} file{'' if count == 1 else 's'})")
        else:
            parts.append(name)
    return ", ".join(parts)


def _free_name(path):
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def keep_or_move(out_dir, new_dir, fingerprint=None):
    """Before ``new_dir`` replaces ``out_dir/clus-center``: keep or move aside what other commands wrote there.

    Args:
        out_dir: the run folder.
        new_dir: the complete new clus-center (a temporary folder that replaces the old one next).
        fingerprint: the inputs and options of the new clustering (compared with run.json's).

    Returns:
        ``None`` (nothing to keep), ``"kept"``, or the folder the previous clus-center was moved to.
    """
    clus_dir = os.path.join(out_dir, "clus-center")
    names = other_outputs(clus_dir)
    if not names:
        return None
    described = _describe(clus_dir, names)
    if same_clustering(out_dir, new_dir, fingerprint):
        for name in names:
            source, target = os.path.join(clus_dir, name), os.path.join(new_dir, name)
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
            else:
                _link_or_copy(source, target)
        log.info("kept %s in clus-center/: the new clustering has the same clusters as the one they were made from", described)
        return "kept"
    old = _members(clus_dir)
    k = f"k{len(old)}-" if old is not None else ""
    target = _free_name(os.path.join(out_dir, PREVIOUS_DIR, f"clus-center-{k}{time.strftime('%Y%m%d-%H%M%S')}"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(clus_dir, target)
    log.warning("clus-center/ held %s, made from the previous clustering, which this one replaces; moved that clustering "
                "whole to %s", described, os.path.relpath(target, out_dir))
    return target
