"""The cluster report: ``clus-center/index.html``, the page a scientist decides from.

The published workflow's one manual step is looking at the cluster montages and
writing down which cluster ids show which structure. :func:`write_report` turns a
finished ``autoencoder3d train`` run folder into one self-contained HTML page
(images inline as PNG data URIs, CSS and JavaScript inline from
``templates/report.html``; nothing is fetched, no server is needed) with

- a card per cluster: the montage, three orthogonal central slices of the
  decoded centre, the size, and central slices of a few real members;
- a 2D map of the encodings (PCA, and t-SNE on up to ``tsne_max_points``
  points) coloured by cluster, with the cluster under the mouse;
- the loss curve and the settings from ``run.json``;
- a selection panel that builds the ``edss3d train ... --select 1=...``
  command and a ``selection.json`` download.

The report is built only from the run folder: ``run.json``,
``clus-center/{kmeans,ccents,ccents_d,encodings}.pickle``, ``model/`` and the
subvolumes (``pose-normalized.pickle`` in the run folder when pose
normalization ran, else ``inputs.data`` of ``run.json``: a pickle or an on-disk
store, whose member subvolumes are read by index). Volumes are indexed
``[x, y, z]``.

At 10^5 - 10^6 subvolumes the page stays small: the maps draw a random sample
of at most ``map_max_points`` points (the page says how many of how many),
every count (cluster sizes, totals, per-tomogram counts) is exact, and the
per-cluster content grows with the number of clusters only.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..data.open import open_data
from ..errors import InputError
from ..formats.subvolume_pickle import load_pickle, save_pickle
from ..prep.contrast import DEFAULT_POLARITY, recorded_polarity
from ..runs.folder import CENTER_CODES, ENCODINGS, RunFolder
from ..util.atomic import atomic_open
from .compare import annotate_card, compare_section, selection_data
from .maps import MAP_MAX_POINTS, TSNE_MAX_POINTS, cluster_colors, code_maps  # noqa: F401 - public here too
from .measures import FLAT_BELOW
from .parts import card, health_banner, loss_html, montage_zoom, settings_html
from .windows import contrast_filters, contrast_sentences, member_window, shared_contrast

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ..volume import SubvolumeSet

log = logging.getLogger("autoencoder3d")



# ---------------------------------------------------------------- encodings


def save_encodings(clus_dir: str | os.PathLike, uuids: Sequence[str], codes: ArrayLike, labels: ArrayLike,
                   flips: ArrayLike | None = None, stability: Mapping[int, float] | None = None) -> None:
    """Save every subvolume's encoding and cluster as ``clus-center/encodings.pickle`` (atomically).

    Args:
        clus_dir: the ``clus-center`` folder.
        uuids: the N subvolume ids.
        codes: (N, encoding_dim) encodings the clusters are made of, same order.
        labels: (N,) cluster ids, same order.
        flips: (N,) with ``--flips match``, the flip (index into PROPER_FLIPS) each subvolume matched its centre in.
        stability: cluster id -> its stability, measured when the run clustered
            (:func:`autoencoder3d.clustering.stability.cluster_stability`).
    """
    record = {
        "uuids": [str(u) for u in uuids],
        "codes": np.asarray(codes, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
    }
    if flips is not None:
        record["flips"] = np.asarray(flips, dtype=np.int64)
    if stability is not None:
        record["stability"] = {int(k): float(v) for k, v in stability.items()}
    save_pickle(os.path.join(clus_dir, ENCODINGS), record)


def load_encodings(clus_dir: str | os.PathLike) -> tuple[list[str], NDArray[np.float32], NDArray[np.int_]] | None:
    """Read ``clus-center/encodings.pickle``: (uuids, codes, labels), or None when it is missing."""
    read = read_encodings(clus_dir)
    return None if read is None else read[:3]


def read_encodings(clus_dir: str | os.PathLike,
                   ) -> tuple[list[str], NDArray[np.float32], NDArray[np.int_], NDArray[np.int_] | None, dict[int, float] | None] | None:
    """``clus-center/encodings.pickle`` as (uuids, codes, labels, matched flips or None, stability by cluster or None), or None when missing."""
    path = os.path.join(clus_dir, ENCODINGS)
    if not os.path.isfile(path):
        return None
    record = load_pickle(path)
    try:
        uuids = [str(u) for u in record["uuids"]]
        codes = np.asarray(record["codes"], dtype=np.float32)
        labels = np.asarray(record["labels"], dtype=int)
        flips = np.asarray(record["flips"], dtype=int) if "flips" in record else None
        stability = {int(k): float(v) for k, v in record["stability"].items()} if "stability" in record else None
    except (TypeError, KeyError, ValueError, AttributeError):
        raise InputError(f"{path}: expected a dict with 'uuids', 'codes' and 'labels' (and 'stability' by cluster id)") from None
    if codes.ndim != 2 or len(codes) != len(uuids) or labels.shape != (len(uuids),):
        raise InputError(f"{path}: 'uuids', 'codes' and 'labels' do not have matching lengths")
    if flips is not None and (flips.shape != (len(uuids),) or not np.isin(flips, range(4)).all()):
        raise InputError(f"{path}: 'flips' must hold one flip (0 to 3) per subvolume")
    return uuids, codes, labels, flips, stability


# ---------------------------------------------------------------- reading the run


@dataclass
class RunOutputs:
    """What the report needs from a run folder.

    Attributes:
        run_dir: absolute path of the run folder.
        record: ``run.json``.
        members: cluster id -> list of uuids (``kmeans.pickle``).
        centers: cluster id -> decoded centre, (n1, n2, n3) (``ccents.pickle``).
        centers_code: (k, d) centres in encoding space, or None.
        uuids, codes, labels: every subvolume's id, encoding and cluster (None if unknown).
        data_path: the subvolume pickle or store the clusters were computed from.
        flips: uuid -> the flip (index into PROPER_FLIPS) it matched its centre in (``--flips match``), or None;
            member images are shown turned by it, in their centre's frame.
        stability: cluster id -> its stability as the run measured it when it clustered, or None.
        notes: problems worth telling the reader (shown on the page).
    """

    run_dir: str
    record: dict
    members: dict
    centers: dict
    centers_code: np.ndarray = None
    uuids: list = None
    codes: np.ndarray = None
    labels: np.ndarray = None
    data_path: str = None
    flips: dict = None
    stability: dict = None
    notes: list = field(default_factory=list)

    def sizes(self) -> dict[int, int]:
        """Cluster id -> number of members."""
        return {k: len(self.members.get(k, ())) for k in self.centers}


def read_run(run_dir: str | os.PathLike, *, recompute: bool = True) -> RunOutputs:
    """Read what the report shows from a finished run folder.

    Args:
        run_dir: the ``--out`` folder of ``autoencoder3d train``.
        recompute: when ``encodings.pickle`` is missing (runs made before it was
            saved), encode the subvolumes again with the saved encoder.

    Raises:
        InputError: no ``run.json``, ``kmeans.pickle`` or ``ccents.pickle``.
    """
    folder = RunFolder(run_dir)
    run_dir, clus_dir = folder.path, folder.clus_dir
    if not os.path.isdir(run_dir):
        raise InputError(f"{run_dir}: no such folder")
    record = folder.record()
    folder.require_clustering()
    members = folder.members()
    run = RunOutputs(run_dir=run_dir, record=record, members=members, centers=folder.centers())
    codes_path = folder.clus_file(CENTER_CODES)
    if os.path.isfile(codes_path):
        run.centers_code = np.asarray(load_pickle(codes_path), dtype=np.float32)
    if os.path.isfile(folder.pose_pickle):
        run.data_path = folder.pose_pickle
    else:
        run.data_path = (record.get("inputs") or {}).get("data")
    encodings = read_encodings(clus_dir)
    if encodings is not None:
        uuid_set = {u for v in members.values() for u in v}
        if set(encodings[0]) != uuid_set:
            run.notes.append(f"{ENCODINGS} does not match kmeans.pickle (different subvolumes); not used")
            encodings = None
    if encodings is not None:
        run.uuids, run.codes, _, flips, run.stability = encodings
        run.flips = None if flips is None else dict(zip(run.uuids, flips.tolist()))
    elif recompute:
        _recompute_encodings(run)
    if run.uuids is not None:
        cluster_of = {u: k for k, v in members.items() for u in v}
        run.labels = np.array([cluster_of[u] for u in run.uuids], dtype=int)
    return run


def _data_exists(path):
    return bool(path) and os.path.exists(path)


def _recompute_encodings(run):
    from ..network.train import saved_models_exist

    model_dir = RunFolder(run.run_dir).model_dir
    if not saved_models_exist(model_dir) or not _data_exists(run.data_path):
        run.notes.append("the encodings were not saved with this run and cannot be recomputed (no model or data); no 2D map")
        return
    log.info("no %s in this run; encoding the subvolumes again with the saved encoder", ENCODINGS)
    from ..network.train import encode, load_saved_models

    subvolumes = open_data(run.data_path)  # a store's subvolumes are read batch by batch
    _, encoder, _ = load_saved_models(model_dir)
    batch = int((run.record.get("options") or {}).get("batch_size", 128))
    codes = encode(encoder, subvolumes.volumes, batch)
    clustered = {u for v in run.members.values() for u in v}
    keep = [i for i, u in enumerate(subvolumes.uuids) if u in clustered]
    run.uuids = [subvolumes.uuids[i] for i in keep]
    run.codes = np.asarray(codes, dtype=np.float32)[keep]


def _member_picks(run, n_members):
    """Cluster id -> list of (uuid, rank): up to ``n_members`` members spread from nearest to farthest from the centre.

    Members are ranked by distance to the centre in encoding space (taken in
    kmeans.pickle's order when the encodings are unknown).
    """
    picks = {}
    code_index = {u: i for i, u in enumerate(run.uuids)} if run.uuids is not None else {}
    if run.centers_code is not None and run.codes is not None and run.centers_code.shape[1:] != run.codes.shape[1:]:
        code_index = {}  # centres and encodings of different lengths: members in kmeans.pickle's order
    for k, uuids in run.members.items():
        if not uuids or n_members < 1:
            picks[k] = []
            continue
        order = list(range(len(uuids)))
        if code_index and run.centers_code is not None and k < len(run.centers_code) and all(u in code_index for u in uuids):
            codes = run.codes[[code_index[u] for u in uuids]]
            order = list(np.argsort(np.linalg.norm(codes - run.centers_code[k], axis=1), kind="stable"))
            chosen = sorted({int(round(r)) for r in np.linspace(0, len(uuids) - 1, min(n_members, len(uuids)))})
        else:
            chosen = list(range(min(n_members, len(uuids))))
        picks[k] = [(uuids[order[r]], r) for r in chosen]
    return picks


def _open_data(run, subvolumes):
    """The clustered SubvolumeSet: the one given, else the run's DATA (a store stays on disk), else None (said in the notes)."""
    if subvolumes is not None:
        return subvolumes
    if not _data_exists(run.data_path):
        run.notes.append(f"subvolume data not found ({run.data_path}); member slices are not shown, "
                         "nor the centres' structure against their members' noise or where the members lie")
        return None
    return open_data(run.data_path)


def _member_volumes(run, picks, subvolumes):
    """Cluster id -> list of (uuid, rank, volume) of the picked members, read in one batch by index."""
    wanted = {u for p in picks.values() for u, _ in p}
    if not wanted or subvolumes is None:
        return {k: [] for k in picks}
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    missing = sorted(wanted - index.keys())
    if missing:
        run.notes.append(f"{len(missing)} member subvolumes are not in {run.data_path} (e.g. {missing[0]}); not shown")
    rows = np.array(sorted(index[u] for u in wanted if u in index), dtype=np.int64)
    volumes = dict(zip(rows.tolist(), subvolumes.volumes[rows])) if len(rows) else {}
    if run.flips:  # each member in the flip it matched its centre in
        from ..prep.flips import PROPER_FLIPS, apply_flip

        volumes = {i: apply_flip(v, PROPER_FLIPS[run.flips.get(subvolumes.uuids[i], 0)]) for i, v in volumes.items()}
    return {k: [(u, r, volumes[index[u]]) for u, r in p if u in index] for k, p in picks.items()}


def tomogram_counts(members: Mapping[int, Sequence[str]], subvolumes: SubvolumeSet | None) -> dict[int, list[tuple[str, int]]]:
    """Cluster id -> [(tomogram, members from it), ...], most first; {} unless the data names several tomograms.

    Counts are exact (every member is counted, whatever the number of subvolumes).
    """
    if subvolumes is None or subvolumes.tomograms is None:
        return {}
    names, of_row = np.unique(np.asarray(subvolumes.tomograms, dtype=str), return_inverse=True)
    if len(names) < 2:
        return {}
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    counts = {}
    for k, uuids in members.items():
        rows = np.array([index[u] for u in uuids if u in index], dtype=np.int64)
        per = np.bincount(of_row[rows], minlength=len(names))
        counts[k] = [(str(names[t]), int(per[t])) for t in np.argsort(-per, kind="stable") if per[t]]
    return counts


def _contrast_note(record):
    """Which shade is dense matter in the pictures: the run's contrast polarity."""
    polarity = (record.get("contrast") or {}).get("used", DEFAULT_POLARITY)
    return "Bright is dense (bright contrast)." if polarity == "bright" else "Dark is dense."


def _fill(template, values):
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def _script_json(obj):
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def voxel_angstrom(record: Mapping, subvolumes: SubvolumeSet | None = None) -> float | None:
    """The run's voxel size in Angstrom (``run.json`` ``voxel_size``, else the data's), or None when unknown."""
    for size in (record.get("voxel_size"), getattr(subvolumes, "voxel_size", None)):
        values = size if isinstance(size, (list, tuple)) else [size]
        try:
            value = float(values[0])
        except (TypeError, ValueError, IndexError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def build_report(run_dir: str | os.PathLike, *, n_members: int = 4, tsne: bool = True, tsne_max_points: int = TSNE_MAX_POINTS,
                 map_max_points: int = MAP_MAX_POINTS, seed: int | None = 0, recompute: bool = True,
                 subvolumes: SubvolumeSet | None = None, measure_stability: Callable[..., Mapping[int, float]] | None = None) -> str:
    """The report page of a run folder, as a string (see :func:`write_report`)."""
    from .figures import montage_name
    from .locations import location_maps, location_summary
    from .measures import cluster_measures, measures_table

    run = read_run(run_dir, recompute=recompute)
    sizes = run.sizes()
    colors = cluster_colors(max(len(run.centers), max(run.centers, default=-1) + 1))
    picks = _member_picks(run, n_members)
    subvolumes = _open_data(run, subvolumes)  # the members' slices, noise and positions
    members = _member_volumes(run, picks, subvolumes)
    per_tomogram = tomogram_counts(run.members, subvolumes)
    record = run.record
    voxel = voxel_angstrom(record, subvolumes)
    slices = [v[:, :, v.shape[2] // 2] for p in members.values() for _, _, v in p]
    windows = {"centres": shared_contrast(run.centers, sizes), "members": member_window(slices)}
    measures = cluster_measures(run, subvolumes, seed=seed, measure_stability=measure_stability)
    locations = location_maps(run, subvolumes, colors, voxel)
    cards = [
        annotate_card(
            card(k, sizes[k], colors[k], run.centers[k], members.get(k, []), montage_name(k, sizes[k]), tomograms=per_tomogram.get(k),
                 member_window=windows["members"], voxel_angstrom=voxel, measures=measures.get(k), location=locations.cards.get(k, "")),
            k, run.record)
        for k in sorted(run.centers, key=lambda c: (-sizes[c], c))
    ]
    cards.append(contrast_filters(run.centers, sizes, windows["centres"]))
    maps_html, hover, map_note = code_maps(run, colors, tsne=tsne, tsne_max_points=tsne_max_points, map_max_points=map_max_points, seed=seed)
    data_arg = run.data_path or "DATA"
    prefix = f"edss3d train {shlex.quote(data_arg)} --out {shlex.quote(run.run_dir)}"
    inputs = record.get("inputs") or {}
    subtitle = (
        f"{record.get('n_subvolumes', sum(sizes.values())):,} subvolumes of {' x '.join(str(s) for s in record.get('v_siz', []))} voxels "
        f"in {len(run.centers)} clusters"
        + (f" from {len({t for c in per_tomogram.values() for t, _ in c})} tomograms" if per_tomogram else "")
        + f"; data {inputs.get('data')}"
        + ("; pose-normalized" if inputs.get("pose") else "")
        + (f"; voxel size {voxel:.4g} A" if voxel else "; voxel size unknown")
        + f"; run {run.run_dir}"
    )
    notes = "".join(f'<p class="note warn">{html.escape(n)}</p>' for n in run.notes + ([locations.note] if locations.note else []))
    notes += compare_section(record)
    zoom = montage_zoom(record.get("v_siz") or next(iter(run.centers.values())).shape if run.centers else (1, 1, 1))
    said = contrast_sentences(windows["centres"], windows["members"])
    data = {"command_prefix": prefix, "storage_key": f"{run.run_dir}|{record.get('started', '')}", "maps": hover, "montage_zoom": zoom,
            "contrast": said, "measures": measures_table(measures)}
    data.update(selection_data(run.run_dir, record))
    template = resources.files("autoencoder3d.report").joinpath("templates/report.html").read_text(encoding="utf-8")
    return _fill(template, {
        "VERSION": html.escape(__version__),
        "TITLE": html.escape(f"Clusters of {os.path.basename(run.run_dir) or run.run_dir}"),
        "SUBTITLE": html.escape(subtitle),
        "NOTES": notes,
        "CONTRAST": html.escape(_contrast_note(record)),
        "CONTRAST_SHOWN": html.escape(said["shared"]),
        "LOCATIONS": html.escape(location_summary(locations.maps, recorded_polarity((record.get("contrast") or {}).get("used")))),
        "LOCATION_STYLE": locations.style,
        "FLAT_BELOW": f"{FLAT_BELOW:g}",
        "HEALTH": health_banner(record, sizes),
        "MAX_SIZE": str(max(sizes.values(), default=0)),
        "CARDS": "\n".join(cards),
        "MAP_NOTE": html.escape(map_note),
        "MAPS": maps_html,
        "LOSS": loss_html(run),
        "SETTINGS": settings_html(record),
        "DATA": _script_json(data),
    })


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, n_members: int = 4, tsne: bool = True,
                 tsne_max_points: int = TSNE_MAX_POINTS, map_max_points: int = MAP_MAX_POINTS, seed: int | None = 0,
                 recompute: bool = True, subvolumes: SubvolumeSet | None = None, lock: bool = True,
                 measure_stability: Callable[..., Mapping[int, float]] | None = None) -> str | os.PathLike:
    """Write the cluster report of a finished run as one self-contained HTML page, atomically.

    Args:
        run_dir: the ``--out`` folder of ``autoencoder3d train``.
        out: the page; default ``RUN_DIR/clus-center/index.html``.
        n_members: real member subvolumes shown per cluster (spread from the
            nearest to the farthest from the centre in encoding space).
        tsne: add a t-SNE map next to the PCA map.
        tsne_max_points: t-SNE runs on at most this many encodings (drawn at random).
        map_max_points: at most this many points are drawn on a map.
        seed: for the random draws and t-SNE.
        recompute: encode the subvolumes with the saved encoder when the run
            did not save ``clus-center/encodings.pickle``.
        subvolumes: the clustered SubvolumeSet when already in memory (saves
            reading the data pickle again).
        lock: without ``out``, hold the run folder's lock while reading and writing
            (``train`` passes False: it holds it already).
        measure_stability: measures the clusters' stability of a run that recorded
            none (:func:`autoencoder3d.report.measures.fill_stability`).

    Returns:
        The path of the page.

    Raises:
        InputError: the folder is not a finished run (no run.json, kmeans.pickle or ccents.pickle).
    """
    from ..util.lock import locked_if

    run_dir = os.path.abspath(os.fspath(run_dir))
    with locked_if(run_dir, lock and not out, advice="wait for it to finish, or write the page elsewhere with --out"):
        page = build_report(
            run_dir, n_members=n_members, tsne=tsne, tsne_max_points=tsne_max_points,
            map_max_points=map_max_points, seed=seed, recompute=recompute, subvolumes=subvolumes, measure_stability=measure_stability,
        )
        out = out or RunFolder(run_dir).report_page
        with atomic_open(out, "wb") as handle:
            handle.write(page.encode("utf-8"))
    return out
