"""Scores of a clustering against simulated ground truth (``autoencoder3d evaluate``).

The clustering is the ``clus-center/kmeans.pickle`` of a run (cluster id ->
list of subvolume uuids); the truth is the ``truth.json`` written by
:func:`autoencoder3d.simulate.dataset.simulate_dataset`. When the run saved its PCA baseline (``clus-center/baseline-kmeans.pickle``:
PCA + k-means of the standardized subvolumes its autoencoder read), that
partition is scored too, as ``run_baseline``. Scores: adjusted Rand index,
normalized mutual information, homogeneity, completeness, and purity (the
fraction of subvolumes in their cluster's majority class: what merging the
clusters by hand can reach at best), plus the cluster x class contingency table.

The baseline clusters the same subvolumes by k-means (same k) on a PCA of
their raw voxels, so a user sees what the autoencoder adds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, brief
from ..runs.folder import BASELINE_MEMBERS, MEMBERS, RunFolder

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

BASELINE_COMPONENTS = 32
"""PCA dimensions of the baseline: the autoencoder's code length."""


# ---------------------------------------------------------------- inputs


def load_truth(path: str | os.PathLike) -> dict:
    """Read a simulator's ``truth.json``.

    Raises:
        InputError: missing, not JSON, or not a simulator truth file.
    """
    from ..formats.json import read_json

    path = os.fspath(path)
    truth = read_json(path, "truth file")
    if not isinstance(truth, dict) or not isinstance(truth.get("subvolumes"), dict) or "classes" not in truth:
        raise InputError(f"{path}: not a truth file of `autoencoder3d simulate` (no 'subvolumes' and 'classes')")
    return truth


def find_clustering(path: str | os.PathLike) -> str:
    """The kmeans.pickle for a run folder, a clus-center folder, or the pickle itself."""
    path = os.fspath(path)
    for candidate in (path, os.path.join(path, MEMBERS), RunFolder(path).clus_file(MEMBERS)):
        if os.path.isfile(candidate):
            return candidate
    raise InputError(f"{path}: no clustering found (expected RUN_DIR/clus-center/kmeans.pickle, "
                     "a clus-center folder, or a kmeans.pickle file)")


def load_clustering(path: str | os.PathLike) -> tuple[list[str], list[Hashable], list[Hashable]]:
    """Read a clustering pickle {cluster id: [uuid, ...]}.

    Returns:
        (uuids, cluster of each uuid, all cluster ids including empty ones), in a fixed order.

    Raises:
        InputError: not a dict of lists of uuid strings, or a uuid in two clusters.
    """
    from ..formats.subvolume_pickle import load_pickle

    d = load_pickle(path)
    if not isinstance(d, dict) or not d:
        raise InputError(f"{path}: expected a non-empty dict of cluster id -> list of subvolume uuids")
    uuids, labels = [], []
    try:
        cluster_ids = sorted(d, key=lambda c: (str(type(c)), c))
    except TypeError:
        raise InputError(f"{path}: cluster ids must be numbers or strings that can be ordered") from None
    for cluster in cluster_ids:
        members = d[cluster]
        if not isinstance(members, (list, tuple)) or not all(isinstance(u, str) for u in members):
            raise InputError(f"{path}: cluster {brief(cluster)}: expected a list of uuid strings")
        uuids.extend(members)
        labels.extend([cluster] * len(members))
    if len(set(uuids)) != len(uuids):
        raise InputError(f"{path}: some subvolumes are in more than one cluster")
    if not uuids:
        raise InputError(f"{path}: every cluster is empty")
    return uuids, labels, cluster_ids


def true_classes(truth: dict, uuids: Sequence[str], truth_path: str | os.PathLike = "truth.json") -> list[str]:
    """Class names of ``uuids``; InputError if any is not in the truth file."""
    records = truth["subvolumes"]
    missing = [u for u in uuids if u not in records]
    if missing:
        raise InputError(f"{truth_path}: {len(missing)} of {len(uuids)} clustered subvolumes are not in the truth "
                         f"(e.g. {missing[0]}): was the clustering made from this simulation's pickles?")
    return [records[u]["class"] for u in uuids]


# ---------------------------------------------------------------- scores


def contingency(classes: Sequence[str], clusters: Sequence[Hashable]) -> tuple[NDArray[np.int64], list[Hashable], list[str]]:
    """Cluster x class count table.

    Returns:
        (table, cluster ids, class names): ``table[i, j]`` counts the members of
        cluster ``cluster_ids[i]`` whose class is ``class_names[j]``.
    """
    cluster_ids = sorted(set(clusters), key=lambda c: (str(type(c)), c))
    class_names = sorted(set(classes))
    row = {c: i for i, c in enumerate(cluster_ids)}
    col = {c: j for j, c in enumerate(class_names)}
    table = np.zeros((len(cluster_ids), len(class_names)), dtype=np.int64)
    for cls, clus in zip(classes, clusters):
        table[row[clus], col[cls]] += 1
    return table, cluster_ids, class_names


def purity(table: ArrayLike) -> float:
    """Fraction of items that belong to their cluster's majority class."""
    table = np.asarray(table)
    return float(table.max(axis=1).sum() / table.sum())


def scores(classes: Sequence[str], clusters: Sequence[Hashable]) -> dict[str, float | int]:
    """ARI, NMI, homogeneity, completeness and purity of a clustering.

    Args:
        classes: true class of each item.
        clusters: cluster of each item (same order).

    Returns:
        dict of floats plus ``n`` (items), ``k`` (clusters), ``classes`` (true classes).
    """
    from sklearn import metrics

    if len(classes) != len(clusters) or not classes:
        raise ValueError("classes and clusters must be non-empty and of the same length")
    true_ids = np.unique(np.asarray(classes, dtype=str), return_inverse=True)[1]
    pred_ids = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)[1]
    table, cluster_ids, class_names = contingency(classes, clusters)
    return {
        "ari": float(metrics.adjusted_rand_score(true_ids, pred_ids)),
        "nmi": float(metrics.normalized_mutual_info_score(true_ids, pred_ids)),
        "homogeneity": float(metrics.homogeneity_score(true_ids, pred_ids)),
        "completeness": float(metrics.completeness_score(true_ids, pred_ids)),
        "purity": purity(table),
        "n": len(classes),
        "k": len(cluster_ids),
        "classes": len(class_names),
    }


def baseline_clusters(volumes: np.ndarray, k: int, seed: int | None = 0, components: int = BASELINE_COMPONENTS) -> list[int]:
    """k-means (k clusters, 10 starts) on a PCA of the raw voxels."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    flat = np.asarray(volumes, dtype=np.float64).reshape(len(volumes), -1)
    if k > len(flat):
        raise InputError(f"--baseline: k={k} clusters but only {len(flat)} subvolumes")
    n_comp = max(1, min(components, len(flat) - 1, flat.shape[1]))
    reduced = PCA(n_components=n_comp, random_state=seed).fit_transform(flat)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced).tolist()


# ---------------------------------------------------------------- outputs


def write_contingency_csv(path: str | os.PathLike, table: np.ndarray, cluster_ids: Sequence[Hashable], class_names: Sequence[str]) -> None:
    """The table as CSV: a header row of class names, one row per cluster, then totals."""
    from ..util.atomic import atomic_open

    with atomic_open(path, "w") as handle:
        handle.write("cluster," + ",".join(class_names) + ",total,majority\n")
        for cid, row in zip(cluster_ids, table):
            handle.write(f"{cid}," + ",".join(str(int(v)) for v in row) + f",{int(row.sum())},{class_names[row.argmax()]}\n")
        handle.write("total," + ",".join(str(int(v)) for v in table.sum(axis=0)) + f",{int(table.sum())},\n")


def plot_contingency(path: str | os.PathLike, table: np.ndarray, cluster_ids: Sequence[Hashable], class_names: Sequence[str],
                     title: str) -> None:
    """A heat map of the table (rows: clusters grouped by majority class), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..util.atomic import atomic_path

    order = np.lexsort((-table.max(axis=1), table.argmax(axis=1)))
    shown = table[order]
    height = min(2.0 + 0.22 * len(cluster_ids), 30.0)
    fig, ax = plt.subplots(figsize=(2.0 + 0.8 * len(class_names), height))
    image = ax.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), [str(cluster_ids[i]) for i in order], fontsize=7 if len(order) > 30 else 9)
    ax.set_xlabel("true class")
    ax.set_ylabel("cluster")
    ax.set_title(title, fontsize=9)
    if shown.size <= 400:
        for (i, j), v in np.ndenumerate(shown):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="w" if v < shown.max() / 2 else "k", fontsize=7)
    fig.colorbar(image, ax=ax, label="subvolumes")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _score_and_write(out_dir, name, classes, clusters, title):
    table, cluster_ids, class_names = contingency(classes, clusters)
    write_contingency_csv(os.path.join(out_dir, f"{name}.csv"), table, cluster_ids, class_names)
    result = scores(classes, clusters)
    title = f"{title}: ARI {result['ari']:.3f}, NMI {result['nmi']:.3f}, purity {result['purity']:.3f}"
    plot_contingency(os.path.join(out_dir, f"{name}.png"), table, cluster_ids, class_names, title)
    return result


def _data_for(truth, truth_path, uuids, data):
    """The subvolume pickle holding ``uuids``: ``data``, or the one truth.json names."""
    from ..formats.subvolume_pickle import load_subvolumes

    if data is None:
        sets = {truth["subvolumes"][u]["set"] for u in uuids}
        names = [truth.get("files", {}).get(s) for s in sorted(sets)]
        if len(names) != 1 or names[0] is None:
            raise InputError(f"{truth_path}: cannot tell which subvolume pickle was clustered; give it with --data")
        data = os.path.join(os.path.dirname(os.path.abspath(truth_path)), names[0])
    subvolumes = load_subvolumes(data)
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    missing = [u for u in uuids if u not in index]
    if missing:
        raise InputError(f"{data}: {len(missing)} clustered subvolumes are not in this pickle (e.g. {missing[0]})")
    return subvolumes.volumes[[index[u] for u in uuids]]


def evaluate_clustering(clustering: str | os.PathLike, truth_path: str | os.PathLike, *, out_dir: str | os.PathLike | None = None, baseline: bool = False,
                        data: str | os.PathLike | None = None, seed: int | None = 0) -> dict:
    """Score a clustering against the truth and write the results.

    Args:
        clustering: run folder, its ``clus-center`` folder, or a ``kmeans.pickle``.
        truth_path: the simulator's ``truth.json``.
        out_dir: where to write (default: ``evaluation`` beside kmeans.pickle).
        baseline: also score k-means with the same k on PCA of the raw voxels.
        data: the clustered subvolume pickle, for the baseline (default: the one
            truth.json names for these subvolumes).
        seed: random state of the baseline.

    Returns:
        dict as written to ``evaluation.json``: ``autoencoder`` (and ``baseline``)
        scores, the inputs, and the SNR the simulation reached.

    Writes:
        ``evaluation.json``, ``contingency.csv``/``.png`` (and
        ``baseline_contingency.csv``/``.png``).
    """
    pickle_path = find_clustering(clustering)
    truth = load_truth(truth_path)
    if out_dir is None:  # into the run folder: not while another process writes it
        from ..util.lock import RunFolderLock

        out_dir = os.path.join(os.path.dirname(os.path.abspath(pickle_path)), "evaluation")
        with RunFolderLock(_run_folder_of(pickle_path), advice="wait for it to finish, or write elsewhere with --out"):
            return _evaluate(pickle_path, truth, truth_path, out_dir, baseline, data, seed)
    return _evaluate(pickle_path, truth, truth_path, out_dir, baseline, data, seed)


def _run_folder_of(pickle_path):
    """The run folder of RUN/clus-center/kmeans.pickle (else the pickle's own folder)."""
    return RunFolder.of_clustering(os.path.dirname(os.path.abspath(pickle_path))).path


def _evaluate(pickle_path, truth, truth_path, out_dir, baseline, data, seed):
    from ..util.atomic import atomic_open

    uuids, clusters, cluster_ids = load_clustering(pickle_path)
    # a canonical sample order, so the baseline does not depend on the clustering's order
    order = sorted(range(len(uuids)), key=uuids.__getitem__)
    uuids, clusters = [uuids[i] for i in order], [clusters[i] for i in order]
    classes = true_classes(truth, uuids, truth_path)
    os.makedirs(out_dir, exist_ok=True)
    result = {
        "clustering": os.path.abspath(pickle_path),
        "clusters_in_file": len(cluster_ids),
        "truth": os.path.abspath(truth_path),
        "snr": truth.get("snr"),
        "autoencoder": _score_and_write(out_dir, "contingency", classes, clusters, "clustering"),
    }
    run_baseline = os.path.join(os.path.dirname(os.path.abspath(pickle_path)), BASELINE_MEMBERS)
    if os.path.isfile(run_baseline):  # the run's own baseline: the subvolumes as its autoencoder read them
        base_uuids, base_clusters, _ = load_clustering(run_baseline)
        cluster_of = dict(zip(base_uuids, base_clusters))
        if set(cluster_of) == set(uuids):
            result["run_baseline"] = _score_and_write(out_dir, "run_baseline_contingency", classes, [cluster_of[u] for u in uuids],
                                                      "the run's PCA baseline")
    if baseline:
        volumes = _data_for(truth, truth_path, uuids, data)
        k = len(cluster_ids)
        base = baseline_clusters(volumes, k, seed=seed)
        result["baseline"] = _score_and_write(out_dir, "baseline_contingency", classes, base,
                                              f"PCA({BASELINE_COMPONENTS}) + k-means")
        result["baseline_method"] = f"k-means (k={k}, 10 starts, seed {seed}) on PCA " \
                                    f"({BASELINE_COMPONENTS} components) of the raw voxels"
    with atomic_open(os.path.join(out_dir, "evaluation.json"), "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    result["out_dir"] = os.path.abspath(out_dir)
    return result


def format_report(result: dict) -> str:
    """Scores as a short plain-text table (k: non-empty clusters)."""
    rows = [("autoencoder", result["autoencoder"])]
    if "run_baseline" in result:
        rows.append(("run baseline", result["run_baseline"]))
    if "baseline" in result:
        rows.append(("PCA baseline", result["baseline"]))
    lines = [f"{'':14s} {'k':>4s} {'ARI':>6s} {'NMI':>6s} {'homog':>6s} {'purity':>6s}"]
    for name, s in rows:
        lines.append(f"{name:14s} {s['k']:4d} {s['ari']:6.3f} {s['nmi']:6.3f} {s['homogeneity']:6.3f} {s['purity']:6.3f}")
    empty = result.get("clusters_in_file", 0) - result["autoencoder"]["k"]
    if empty > 0:
        lines.append(f"note: {empty} of the {result['clusters_in_file']} clusters in the file are empty")
    return "\n".join(lines)
