"""The ``edss3d train`` and ``edss3d predict`` jobs (see :mod:`autoencoder3d.edss3d.network` for what EDSS3D does).

Both write into a run folder and hold its lock
(:class:`~autoencoder3d.util.lock.RunFolderLock`) while they do, so neither
runs while ``autoencoder3d train`` or ``cluster`` rewrites the folder, nor two
at once: the second is refused with one line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..formats.json import read_record
from ..runs.folder import MEMBERS, SEG_BEST, SEG_MODEL, SEG_RECORD, RunFolder
from ..util.lock import RunFolderLock
from .labels import ISO_AUTO, PUBLISHED_ISO, check_selection, label_subvolumes, parse_iso, published_run
from .network import check_model_box, keep_max, load_segmenter, predict_probabilities, segmenter_classes, train_segmenter

log = logging.getLogger("autoencoder3d.edss3d.network")

LOCK_ADVICE = "wait for it to finish"


def _run_inputs(out_dir):
    """The autoencoder and ``kmeans.pickle`` of a finished ``autoencoder3d train`` run."""
    from ..network.train import model_path

    folder = RunFolder(out_dir)
    autoencoder_path = model_path(folder.model_dir, "autoencoder")
    if not os.path.isfile(autoencoder_path):
        raise InputError(f"{out_dir}: no trained autoencoder (model/model-autoencoder.keras); run 'autoencoder3d train' first, or give --out RUN_FOLDER")
    members = folder.members()
    if not members:
        raise InputError(f"{folder.clus_file(MEMBERS)}: expected a dict cluster id -> list of uuids")
    return autoencoder_path, members


def run_seg_train(
    data: str | os.PathLike, out_dir: str | os.PathLike = ".", selection: Mapping[int, Sequence[int]] | None = None, *,
    iso: str | float = ISO_AUTO, class_balanced: bool = False, epochs: int = 10000, batch_size: int = 128, patience: int = 20,
    validation_split: float = 0.1, learning_rate: float = 0.001, seed: int | None = None, retrain: bool = False,
    verbose: int | str = 1, source: str = "selection",
) -> dict[str, Any]:
    """The ``edss3d train`` job: decode, label, sample background, train, save.

    Args:
        data: subvolume pickle (the one the run clustered, or its pose-normalized copy).
        out_dir: the ``autoencoder3d train`` run folder; ``decoded/`` and ``model-seg/`` go there too.
        selection: dict label -> list of cluster ids.
        iso: a voxel is dense where the decoded volume is more than ``iso`` standard deviations
            of the training intensities denser than their mean. ``"auto"`` (the default): Otsu's
            threshold of the decoded subvolumes of the selected clusters, or the published 0.5
            (``-decoded > 0.5``) when the run was trained with ``--published``.
        class_balanced: weight every voxel by the published per-class weight.
        seed: background sampling, shuffling and initial weights (random when None).
        retrain: forget a saved EDSS3D model and checkpoints in ``model-seg/``.
        source: where the selection came from (``--select`` or the JSON file), for messages.

    Returns:
        the record written to ``model-seg/seg.json`` (a dict); ``iso_threshold`` is the
        threshold used and ``iso_rule`` how it was chosen (``otsu``, ``published`` or ``given``).

    Raises:
        InputError: bad input, or another autoencoder3d process is writing ``out_dir``.
    """
    iso = parse_iso(iso)
    out_dir = os.path.abspath(out_dir)
    with RunFolderLock(out_dir, advice=LOCK_ADVICE):
        return _seg_train_locked(data, out_dir, selection, iso=iso, class_balanced=class_balanced, epochs=epochs,
                                 batch_size=batch_size, patience=patience, validation_split=validation_split,
                                 learning_rate=learning_rate, seed=seed, retrain=retrain, verbose=verbose, source=source)


def _forget_model(seg_dir):
    """``--retrain``: remove the saved EDSS3D model, its checkpoints and record."""
    from ..network import train as ae_train

    names = (SEG_MODEL, SEG_BEST, SEG_RECORD, ae_train.LAST_WEIGHTS, ae_train.STATE_FILE, ae_train.HISTORY_CSV,
             getattr(ae_train, "LAST_OPTIMIZER", ""))
    for name in filter(None, names):
        if os.path.exists(os.path.join(seg_dir, name)):
            os.remove(os.path.join(seg_dir, name))


def _refuse_other_settings(seg_dir, previous, wanted):
    """A saved or interrupted model trained with another selection, iso or weighting is not silently replaced."""
    from ..network.train import LAST_WEIGHTS

    if os.path.isfile(os.path.join(seg_dir, SEG_MODEL)) or os.path.isfile(os.path.join(seg_dir, LAST_WEIGHTS)):
        if not previous:
            raise InputError(f"{os.path.join(seg_dir, SEG_RECORD)}: missing or unreadable, so the model in {seg_dir} cannot be "
                             "matched to this selection; pass --retrain to train a new one")
        settings = {k: v for k, v in wanted.items() if k != "labelled"}  # older records have no "labelled"
        earlier = {k: previous.get(k) for k in settings}
        if earlier != settings:
            raise InputError(
                f"{seg_dir}: holds a model trained with {json.dumps(earlier)}, not {json.dumps(settings)}; "
                "pass --retrain to train a new one"
            )
        if previous.get("labelled", wanted["labelled"]) != wanted["labelled"]:
            raise InputError(f"{seg_dir}: holds a model trained on other subvolumes for these cluster ids (the run was "
                             "clustered again since); pass --retrain to train a new one")


def _labelled_digest(selection, members):
    """label -> a short hash of the uuids its clusters hold now: cluster ids name other subvolumes after a new clustering."""
    import hashlib

    digest = {}
    for label, clusters in sorted(selection.items()):
        uuids = sorted(u for cid in clusters for u in members.get(int(cid), ()))
        digest[str(label)] = hashlib.sha256("\n".join(uuids).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return digest


def _choose_seed(seed, seg_dir, previous, record_path):
    import secrets

    from ..network.train import LAST_WEIGHTS

    resuming = os.path.isfile(os.path.join(seg_dir, LAST_WEIGHTS)) and "seed" in previous
    if seed is None and resuming:
        seed = int(previous["seed"])  # same background patches and shuffling as the interrupted run
    if seed is None:
        seed = secrets.randbelow(2**31)
        log.info("no --seed given; using seed %d (recorded in %s)", seed, record_path)
    return int(seed)


def _iso_rule(iso, out_dir):
    """(the iso to label with, or ``"auto"`` for Otsu's threshold of the patches; how it was chosen)."""
    if iso != ISO_AUTO:
        return float(iso), "given"
    if published_run(out_dir):
        log.info("--iso auto: the run was trained with --published, so the published rule -decoded > %g", PUBLISHED_ISO)
        return PUBLISHED_ISO, "published"
    return ISO_AUTO, "otsu"


def _load_inputs(data, out_dir, autoencoder_path, selection, members):
    """The subvolumes, the run's autoencoder and the uuid -> label map, checked against each other."""
    from ..data.open import open_data
    from ..network.checkpoints import load_checked_model

    subvolumes = open_data(data)
    autoencoder = load_checked_model(autoencoder_path, hint=f"train the autoencoder again: 'autoencoder3d train ... --out {out_dir} --retrain'")
    box = tuple(int(s) for s in autoencoder.input_shape[1:4])
    if box != subvolumes.v_siz:
        raise InputError(
            f"{data}: subvolumes are {'x'.join(map(str, subvolumes.v_siz))} but the autoencoder in {out_dir} "
            f"takes {'x'.join(map(str, box))}; use the pickle that run was trained on"
        )
    labels = label_subvolumes(selection, members)
    in_data = {u for u in subvolumes.uuids if u in labels}
    if not in_data:
        raise InputError(f"{data}: none of the subvolumes of the selected clusters is in this pickle; use the pickle the run in {out_dir} clustered")
    if len(in_data) < len(labels):
        log.warning("%d subvolumes of the selected clusters are not in %s and are left out", len(labels) - len(in_data), data)
    return subvolumes, autoencoder, labels


def _seg_train_locked(data, out_dir, selection, *, iso, class_balanced, epochs, batch_size, patience, validation_split,
                      learning_rate, seed, retrain, verbose, source):
    from ..formats.json import write_json
    from .patches import patches_from_store, patches_in_memory, remove_targets

    started = time.perf_counter()
    autoencoder_path, members = _run_inputs(out_dir)
    check_selection(selection, members, source)
    seg_dir = RunFolder(out_dir).seg_dir
    record_path = os.path.join(seg_dir, SEG_RECORD)
    wanted = {"selection": {str(k): v for k, v in sorted(selection.items())}, "iso": iso, "class_balanced": bool(class_balanced),
              "labelled": _labelled_digest(selection, members)}
    previous = {} if retrain else read_record(record_path)
    if not retrain:
        _refuse_other_settings(seg_dir, previous, wanted)
    if os.path.isfile(os.path.join(seg_dir, SEG_MODEL)) and previous.get("finished"):
        log.info("reusing the trained EDSS3D model %s (pass --retrain to train again)", os.path.join(seg_dir, SEG_MODEL))
        return {**previous, "reused_saved_model": True}

    # checked before anything in model-seg/ changes: refused inputs leave a saved model as it was
    subvolumes, autoencoder, labels = _load_inputs(data, out_dir, autoencoder_path, selection, members)
    if retrain:
        _forget_model(seg_dir)
    seed = _choose_seed(seed, seg_dir, previous, record_path)
    write_json(record_path, {**wanted, "seed": seed, "finished": False})
    import keras

    keras.utils.set_random_seed(seed)
    label_iso, rule = _iso_rule(iso, out_dir)
    prepare = patches_in_memory if subvolumes.in_memory else patches_from_store
    prepared = prepare(autoencoder, subvolumes, labels, selection, out_dir, label_iso, batch_size, seed, class_balanced)
    del autoencoder
    threshold, scale = prepared["iso"], prepared["scale"]
    n_class = max(selection) + 1
    log.info("labels: %.1f %% of the voxels of the labelled subvolumes are denser than %.3g standard deviations "
             "above the mean (%s; %s contrast)", 100 * prepared["label_fraction"], threshold, _describe_rule(rule), scale["polarity"])
    try:
        model, info = train_segmenter(
            prepared["volumes"], prepared["class_maps"], n_class, seg_dir, epochs=epochs, batch_size=batch_size,
            patience=patience, validation_split=validation_split, learning_rate=learning_rate,
            weights=prepared["weights"] if class_balanced else None, seed=seed, verbose=verbose,
        )
    finally:
        remove_targets(seg_dir)
    log.info("final loss on the training patches: %.5f", info["final_train_loss"])
    _plot_loss(seg_dir, info)
    record = {
        **wanted,
        "iso_threshold": float(threshold),
        "iso_rule": rule,
        "finished": True,
        "data": os.path.abspath(data),
        "run": out_dir,
        "seed": seed,
        "v_siz": list(subvolumes.v_siz),
        "n_class": int(n_class),
        "n_labelled": int(sum(1 for l in prepared["patch_labels"] if l)),
        "n_background": len(prepared["background"]),
        "patches": {u: int(l) for u, l in zip(prepared["chosen"], prepared["patch_labels"])},
        "voxels_per_class": [int(c) for c in prepared["counts"]],
        "labelled_fraction": prepared["label_fraction"],
        "label_scale": scale,
        "class_weights": [float(w) for w in prepared["weights"]],
        "options": {"epochs": epochs, "batch_size": batch_size, "patience": patience, "validation_split": validation_split, "learning_rate": learning_rate},
        "training": {k: v for k, v in info.items() if k != "history"},
        "timings": {"decode_s": prepared["decode_seconds"], "train_s": info["train_seconds"], "total_s": time.perf_counter() - started},
    }
    write_json(record_path, record)
    return record


def _describe_rule(rule):
    return {"otsu": "Otsu's threshold of the labelled subvolumes, --iso auto", "published": "the published rule",
            "given": "--iso"}[rule]


def _plot_loss(seg_dir, info):
    if not info["history"]:
        return
    try:
        from ..report.figures import plot_history

        plot_history(os.path.join(seg_dir, "loss.png"), info["history"])
    except Exception as err:  # noqa: BLE001 - a figure is never worth failing the run
        log.warning("could not draw the loss curve: %s", err)


def run_seg_predict(data: str | os.PathLike, model_path: str | os.PathLike | None = None, out_dir: str | os.PathLike = ".", *,
                    batch_size: int = 32) -> dict[str, Any]:
    """The ``edss3d predict`` job: segment every subvolume of ``data``.

    Writes ``prediction/vs_p.pickle`` (uuid -> float32 ``(n, n, n, n_class)``,
    the winning class's probability kept, the others 0: the published layout)
    and ``prediction/labels.pickle`` (uuid -> uint8 label map ``(n, n, n)``),
    holding ``out_dir``'s lock while it does.

    Returns:
        dict with the output paths, the number of subvolumes and voxels per class.
    """
    out_dir = os.path.abspath(out_dir)
    with RunFolderLock(out_dir, advice=LOCK_ADVICE):
        return _seg_predict_locked(data, model_path, out_dir, batch_size)


def _seg_predict_locked(data, model_path, out_dir, batch_size):
    from ..data.open import open_data
    from ..formats.subvolume_pickle import save_pickle

    model_path = model_path or RunFolder(out_dir).seg_file(SEG_MODEL)
    model = load_segmenter(model_path)
    subvolumes = open_data(data)  # a store is read a block at a time
    check_model_box(model, subvolumes.v_siz, model_path, data)
    started = time.perf_counter()
    n_class = segmenter_classes(model)
    vs_p, label_maps, counts = {}, {}, np.zeros(n_class, dtype=np.int64)
    step = max(1, int(batch_size)) * 8
    for lo in range(0, len(subvolumes), step):
        probs = predict_probabilities(model, subvolumes.volumes[lo : lo + step], batch_size)
        kept = keep_max(probs)
        winners = np.argmax(probs, axis=-1).astype(np.uint8)
        counts += np.bincount(winners.ravel(), minlength=n_class)[:n_class]
        for k, uuid in enumerate(subvolumes.uuids[lo : lo + step]):
            vs_p[uuid] = kept[k]
            label_maps[uuid] = winners[k]
    pred_dir = RunFolder(out_dir).prediction_dir
    save_pickle(os.path.join(pred_dir, "vs_p.pickle"), vs_p)
    save_pickle(os.path.join(pred_dir, "labels.pickle"), label_maps)
    return {
        "vs_p": os.path.join(pred_dir, "vs_p.pickle"),
        "labels": os.path.join(pred_dir, "labels.pickle"),
        "n_subvolumes": len(subvolumes),
        "voxels_per_class": counts.tolist(),
        "seconds": time.perf_counter() - started,
    }
