"""The report's comparisons: the PCA baseline, duplicate centres, merges, and the commands of the selection panel.

Every function returns an HTML snippet (or, for the selection panel, the data
its script reads) from ``run.json``; the page puts them in place. Cluster ids
are the run's ids everywhere (cards, file names NNN, run.json, exports);
RELION's rlnClassNumber is the id + 1, and each card says so.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Mapping
from typing import Any

STYLE = (
    "<style>"
    ".compare-badge{display:inline-block;font-size:11px;border-radius:9px;padding:0 6px;margin-left:4px;"
    "background:#eef2f7;color:#334155;font-weight:400}"
    ".compare-badge.dup{background:#fff4e5;color:#8a3b00;border:1px solid #f0b46c}"
    ".compare-badge.merged{background:#e8f5e9;color:#1b5e20}"
    "table.compare{border-collapse:collapse;font-size:11px;margin:4px 0}"
    "table.compare td,table.compare th{border:1px solid #d5dae0;padding:1px 5px;text-align:right}"
    "</style>"
)
TABLE_MAX = 20
"""The contingency table is drawn up to this many clusters (run.json always holds it)."""


def rln_class(k: int) -> int:
    """RELION's rlnClassNumber of cluster ``k`` (classes count from 1)."""
    return int(k) + 1


def cluster_name(k: int) -> str:
    """``cluster 3 (rlnClassNumber 4)``."""
    return f"cluster {int(k)} (rlnClassNumber {rln_class(k)})"


def duplicates_of(record: Mapping[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Cluster id -> the flagged pairs it is in (from run.json's ``duplicates``)."""
    out = {}
    for pair in (record.get("duplicates") or {}).get("pairs") or []:
        for k in pair.get("clusters", []):
            out.setdefault(int(k), []).append(pair)
    return out


def card_badges(k: int, record: Mapping[str, Any]) -> str:
    """Badges for cluster ``k``'s card: its rlnClassNumber, the clusters its centre duplicates, what was merged into it."""
    parts = [f'<span class="compare-badge rln" title="RELION class number of this cluster in exports: the cluster id + 1">'
             f"rlnClassNumber {rln_class(k)}</span>"]
    for pair in duplicates_of(record).get(int(k), []):
        other = [c for c in pair["clusters"] if c != int(k)][0]
        parts.append(
            f'<span class="compare-badge dup" data-duplicate="{other}" title="the decoded centres of clusters '
            f'{pair["clusters"][0]} and {pair["clusters"][1]} correlate {pair["correlation"]:.3f} with the second turned '
            f'{html.escape(pair["rotation"])}: probably one structure">duplicate of {other} ({html.escape(pair["rotation"])}, '
            f'r={pair["correlation"]:.2f})</span>')
    group = ((record.get("merge") or {}).get("kept") or {}).get(str(int(k)))
    if group:
        parts.append(f'<span class="compare-badge merged" title="merged with --merge">merged from {", ".join(map(str, group))}</span>')
    return f'<span class="compare-badges">{"".join(parts)}</span>'


def annotate_card(card_html: str, k: int, record: Mapping[str, Any]) -> str:
    """``card_html`` with :func:`card_badges` after its title (or at the start of the card when it has none)."""
    title = f'<span class="card-title">cluster {int(k)}</span>'
    badges = card_badges(k, record)
    if title in card_html:
        return card_html.replace(title, title + badges, 1)
    end = card_html.find(">") + 1
    return card_html[:end] + badges + card_html[end:]


def compare_section(record: Mapping[str, Any]) -> str:
    """The comparison block above the cards: the numbering rule, the PCA baseline, duplicate centres, merges."""
    blocks = ['<p class="note">Cluster ids are the same in this report, in file names (NNN), in run.json and in the '
              "exports; RELION's rlnClassNumber is the cluster id + 1.</p>"]
    blocks.append(_baseline_html(record))
    blocks.append(_duplicates_html(record))
    merge = record.get("merge") or {}
    if merge.get("kept"):
        groups = "; ".join(f"{', '.join(map(str, g))} into {k}" for k, g in merge["kept"].items())
        blocks.append(f'<p class="note" id="merges">Merged after k-means: {html.escape(groups)}.</p>')
    return f'<div id="compare">{STYLE}{"".join(b for b in blocks if b)}</div>'


def _baseline_html(record):
    base = record.get("baseline")
    if not isinstance(base, dict) or "ari" not in base:
        skipped = (record.get("options") or {}).get("baseline") is False
        return '<p class="note" id="baseline">PCA baseline: skipped (--no-baseline).</p>' if skipped else ""
    stability = base.get("stability") or {}
    text = (
        f"PCA baseline ({html.escape(str(base.get('method', '')))}): agreement with the autoencoder's clusters, "
        f"ARI {base['ari']:.3f} (1: the same partition, 0: no more than chance). Stability (mean ARI of k-means with "
        f"{stability.get('runs', 3)} seeds on the same features): autoencoder {stability.get('autoencoder', float('nan')):.3f}, "
        f"PCA {stability.get('baseline', float('nan')):.3f}. A partition that is not stable under its own seeds is not one "
        "to trust; when both are stable and they disagree, compare the members' slices."
    )
    return f'<p class="note" id="baseline">{text}</p>{_contingency_html(base.get("contingency") or {})}'


def _contingency_html(table):
    rows, columns, counts = table.get("rows") or [], table.get("columns") or [], table.get("counts") or []
    if not rows or len(rows) > TABLE_MAX or len(columns) > TABLE_MAX:
        return ""
    head = "<tr><th>autoencoder \\ PCA</th>" + "".join(f"<th>{int(c)}</th>" for c in columns) + "</tr>"
    body = "".join(f"<tr><th>{int(r)}</th>" + "".join(f"<td>{int(v) or ''}</td>" for v in row) + "</tr>" for r, row in zip(rows, counts))
    summary = '<summary class="note">contingency table (subvolumes in each pair of clusters)</summary>'
    return f'<details>{summary}<table class="compare">{head}{body}</table></details>'


def _duplicates_html(record):
    dup = record.get("duplicates")
    if not isinstance(dup, dict):
        return ""
    pairs = dup.get("pairs") or []
    threshold = dup.get("threshold")
    if not pairs:
        return f'<p class="note" id="duplicates">No two cluster centres correlate {threshold} or more under any of the 24 cube rotations.</p>'
    items = "".join(
        f'<li><a href="#cluster-{a}">{a}</a> and <a href="#cluster-{b}">{b}</a>: r={p["correlation"]:.3f}, '
        f'{html.escape(p["rotation"])}</li>' for p in pairs for a, b in [p["clusters"]]
    )
    return (f'<div id="duplicates" class="note warn">Probable duplicates ({len(pairs)} pairs of centres that correlate {threshold} or '
            "more, the second turned by the rotation named; pose normalization leaves the sign of each axis open, so one "
            "structure can come out as several clusters). Assign them to one label to merge them."
            f"<ul>{items}</ul></div>")


def selection_data(run_dir: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """What the selection panel's script needs to compose ``export`` and ``cluster --merge`` commands."""
    inputs = record.get("inputs") or {}
    options = record.get("options") or {}
    run = shlex.quote(run_dir)
    words = ["autoencoder3d", "cluster", shlex.quote(str(inputs.get("data") or "DATA"))]
    if inputs.get("pose") and inputs.get("tomogram"):
        words += ["--tomogram", shlex.quote(str(inputs["tomogram"])), "--pose"]
    words += [str(inputs.get("n_clusters", "N_CLUSTERS")), "--out", run]
    seed = record.get("seed")
    if seed is not None:
        words += ["--seed", str(seed)]
    if options.get("n_init") not in (None, 100):
        words += ["--n-init", str(options["n_init"])]
    if options.get("kmeans") not in (None, "auto"):
        words += ["--kmeans", str(options["kmeans"])]
    if options.get("baseline") is False:
        words.append("--no-baseline")
    kept = (record.get("merge") or {}).get("kept") or {}
    return {
        "export_prefix": f"autoencoder3d export {run}",
        "cluster_prefix": " ".join(words),
        "merged": {str(k): [int(c) for c in g] for k, g in kept.items()},
        "seeded": seed is not None,
    }
