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

from __future__ import annotations

import logging
import os
import shutil
import time

from ..errors import InputError
from ..util.atomic import is_leftover
from .folder import CLUSTERING_FILES, CLUSTERS_DIR, RunFolder, members_of

log = logging.getLogger("autoencoder3d")



def other_outputs(clus_dir: str | os.PathLike) -> list[str]:
    """Names in ``clus_dir`` that the clustering itself does not write (sorted)."""
    try:
        names = os.listdir(clus_dir)
    except OSError:
        return []
    return sorted(n for n in names if n not in CLUSTERING_FILES and not is_leftover(n))


def _members(clus_dir):
    """The clustering's members, or None when it has none that can be read (then it is not the same clustering)."""
    try:
        return members_of(clus_dir)
    except (InputError, OSError):
        return None


def _recorded_fingerprint(out_dir):
    try:
        return RunFolder(out_dir).record().get("fingerprint")
    except InputError:
        return None


def same_clustering(out_dir: str | os.PathLike, new_dir: str | os.PathLike, fingerprint: dict | None = None) -> bool:
    """True when ``new_dir``'s clusters have exactly the members of ``out_dir/clus-center``'s and,
    when ``fingerprint`` is given, the run folder's run.json records the same one."""
    if fingerprint is not None and _recorded_fingerprint(out_dir) != fingerprint:
        return False
    old = _members(RunFolder(out_dir).clus_dir)
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


def keep_or_move(out_dir: str | os.PathLike, new_dir: str | os.PathLike, fingerprint: dict | None = None) -> str | None:
    """Before ``new_dir`` replaces ``out_dir/clus-center``: keep or move aside what other commands wrote there.

    Args:
        out_dir: the run folder.
        new_dir: the complete new clus-center (a temporary folder that replaces the old one next).
        fingerprint: the inputs and options of the new clustering (compared with run.json's).

    Returns:
        ``None`` (nothing to keep), ``"kept"``, or the folder the previous clus-center was moved to.
    """
    folder = RunFolder(out_dir)
    clus_dir = folder.clus_dir
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
    target = _free_name(os.path.join(folder.previous_dir, f"{CLUSTERS_DIR}-{k}{time.strftime('%Y%m%d-%H%M%S')}"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(clus_dir, target)
    log.warning("clus-center/ held %s, made from the previous clustering, which this one replaces; moved that clustering "
                "whole to %s", described, os.path.relpath(target, out_dir))
    return target
