"""EDSS3D: encoder-decoder semantic segmentation trained on chosen clusters (published section 8).

The scientist picks clusters after ``autoencoder3d train`` and gives each a
segmentation label (1, 2, ...; 0 is the background). This module then

1. decodes every subvolume with the trained autoencoder (``decoded/decoded.pickle``),
2. labels the subvolumes of the chosen clusters and draws as many unlabelled
   ones at random as background patches,
3. builds the per-voxel targets: for a patch with label ``l`` the voxels whose
   decoded density is more than ``iso`` standard deviations denser than the
   mean (``(mean - decoded) / std > iso`` with dense matter dark, the published
   ``-decoded > iso`` when mean 0 and std 1; mirrored for bright contrast) are
   class ``l``, the rest class 0; a background patch is class 0 everywhere,
4. trains the published network on the raw subvolumes (Adam 0.001,
   categorical cross-entropy, batch 128, validation 0.1, early stopping
   patience 20, up to 10000 epochs) and saves it under ``model-seg/``,
5. predicts: per voxel the winning class keeps its probability, the others are
   0 (``prediction/vs_p.pickle``), plus a label map per subvolume.

Targets are kept as class indices (``uint8``, one per voxel) rather than the
published one-hot arrays: the published targets are exactly one-hot, so the
sparse cross-entropy on the indices equals the published categorical
cross-entropy, at 1/n_class of the memory. :func:`one_hot` gives the published
layout.

Whole-tomogram segmentation lives in :mod:`autoencoder3d.segment`.
"""

import json
import logging
import os
import time

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

SEG_DIR = "model-seg"
SEG_MODEL = "model-seg.keras"
SEG_BEST = "model-seg--weights--best.weights.h5"
SEG_RECORD = "seg.json"
MAX_LABEL = 127  # label maps are written as 8-bit MRC (mode 0), which reads the same signed or unsigned below 128


# ---------------------------------------------------------------- selection

def _parse_label(text, source):
    try:
        label = int(str(text).strip())
    except ValueError:
        raise InputError(f"{source}: label {text!r} is not an integer (labels are 1, 2, ...; 0 is the background)") from None
    if label < 1:
        raise InputError(f"{source}: label {label} is not allowed: labels start at 1 (0 is the background)")
    if label > MAX_LABEL:
        raise InputError(f"{source}: label {label} is too large (at most {MAX_LABEL})")
    return label


def _parse_cluster_ids(values, source, label):
    ids = []
    for value in values:
        try:
            ids.append(int(str(value).strip()))
        except ValueError:
            raise InputError(f"{source}: label {label}: cluster id {value!r} is not an integer") from None
    if not ids:
        raise InputError(f"{source}: label {label} has no clusters; write e.g. 1=3,21,28")
    return ids


def parse_select(items):
    """Selection from ``--select`` values such as ``["1=3,21,28", "2=15,25"]``.

    Returns:
        dict label -> list of cluster ids.

    Raises:
        InputError: malformed value, label < 1, or a label given twice.
    """
    selection = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--select {item!r}: expected LABEL=CLUSTER,CLUSTER,..., e.g. --select 1=3,21,28")
        left, right = item.split("=", 1)
        label = _parse_label(left, f"--select {item!r}")
        if label in selection:
            raise InputError(f"--select: label {label} is given twice; list all its clusters in one --select {label}=...")
        selection[label] = _parse_cluster_ids([s for s in right.split(",") if s.strip()], f"--select {item!r}", label)
    return selection


def load_selection(path):
    """Selection from a JSON file ``{"1": [3, 21, 28], "2": [15, 25]}``."""
    from .io import read_json

    raw = read_json(path, 'selection file such as {"1": [3, 21, 28], "2": [15, 25]}')
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: expected a JSON object label -> list of cluster ids, e.g. {{\"1\": [3, 21, 28]}}")
    selection = {}
    for key, values in raw.items():
        label = _parse_label(key, path)
        if label in selection:
            raise InputError(f"{path}: label {label} is given twice")
        if not isinstance(values, list):
            values = [values]
        selection[label] = _parse_cluster_ids(values, path, label)
    return selection


def check_selection(selection, members, source="selection"):
    """Check a selection against the clusters of ``kmeans.pickle``.

    Args:
        selection: dict label -> list of cluster ids.
        members: dict cluster id -> list of uuids (``kmeans.pickle``).
        source: where the selection came from, for messages.

    Raises:
        InputError: empty selection, label < 1, unknown cluster, or a cluster under two labels.
    """
    if not selection:
        raise InputError("no clusters selected: give --select LABEL=CLUSTER,... or --selection FILE.json")
    known = sorted(int(k) for k in members)
    owner = {}
    for label, clusters in sorted(selection.items()):
        if label < 1:
            raise InputError(f"{source}: label {label} is not allowed: labels start at 1 (0 is the background)")
        for cluster in clusters:
            if cluster not in known:
                raise InputError(
                    f"{source}: cluster {cluster} (label {label}) does not exist; kmeans.pickle has clusters "
                    f"{known[0]}..{known[-1]}" if known else f"{source}: kmeans.pickle has no clusters"
                )
            if cluster in owner and owner[cluster] != label:
                raise InputError(f"{source}: cluster {cluster} is under two labels ({owner[cluster]} and {label}); give it one")
            owner[cluster] = label


def label_subvolumes(selection, members):
    """Map every uuid of a selected cluster to its label: dict uuid -> label."""
    labels = {}
    for label, clusters in sorted(selection.items()):
        for cluster in clusters:
            for uuid in _members_of(members, cluster):
                labels[str(uuid)] = int(label)
    return labels


def _members_of(members, cluster):
    for key, uuids in members.items():
        if int(key) == int(cluster):
            return uuids
    return []


def sample_background(uuids, labels, rng):
    """Draw background patches: as many unlabelled uuids as labelled ones (published).

    When fewer unlabelled subvolumes exist, all of them are used and a warning
    is logged (the published code failed there).

    Returns:
        list of uuids, in the order of ``uuids``.
    """
    candidates = [u for u in uuids if u not in labels]
    wanted = sum(1 for u in uuids if u in labels)
    if len(candidates) < wanted:
        log.warning(
            "only %d unlabelled subvolumes for %d labelled ones: using all of them as background", len(candidates), wanted
        )
        return candidates
    chosen = set(rng.choice(len(candidates), size=wanted, replace=False).tolist())
    return [u for i, u in enumerate(candidates) if i in chosen]


# ---------------------------------------------------------------- targets

def denseness(decoded, mean=0.0, std=1.0, polarity="dark"):
    """How much denser than the mean each voxel is, in standard deviations of the data.

    With mean 0, std 1 and dark contrast this is the published ``-decoded``.
    """
    from .contrast import polarity_sign

    return polarity_sign(polarity) * (mean - np.asarray(decoded, dtype=np.float64)) / std


def build_targets(decoded, label, iso=0.5, *, mean=0.0, std=1.0, polarity="dark"):
    """Class index per voxel for one patch: ``label`` where :func:`denseness` > ``iso``, else 0.

    A background patch (``label`` 0) is 0 everywhere.
    """
    decoded = np.asarray(decoded)
    if label == 0:
        return np.zeros(decoded.shape, dtype=np.uint8)
    return np.where(denseness(decoded, mean, std, polarity) > iso, np.uint8(label), np.uint8(0))


def one_hot(class_map, n_class):
    """The published target layout: ``(..., n_class)`` with one 1 per voxel."""
    class_map = np.asarray(class_map)
    return (class_map[..., None] == np.arange(n_class)).astype(np.float32)


def _check_labelled_voxels(counts, selection, decoded, rows, patch_labels, iso, scale):
    """Refuse a label whose decoded subvolumes have no voxel denser than iso, and suggest an --iso."""
    for label in sorted(selection):
        if counts[label] > 0:
            continue
        dense = denseness(np.stack([decoded[r] for r, l in zip(rows, patch_labels) if l == label]), **scale)
        suggestion = float(np.percentile(dense, 90))
        raise InputError(
            f"--iso {iso}: label {label} gets no voxel: the decoded subvolumes of its clusters are at most "
            f"{dense.max():.3g} standard deviations denser than the mean, never above {iso}; try --iso "
            f"{suggestion:.3g}, which marks the densest 10 % of their voxels"
        )


def _label_scale(autoencoder, out_dir):
    """Standardization of the run's autoencoder and the run's contrast polarity, for the labels."""
    from .model import standardization

    mean, std = standardization(autoencoder)
    record = _read_record(os.path.join(out_dir, "run.json"))
    polarity = (record.get("contrast") or {}).get("used", "dark")
    return {"mean": float(mean), "std": float(std), "polarity": polarity}


def class_weights(class_maps, n_class):
    """The published per-class weights ``w_l = (target entries) / (voxels of class l)``.

    The number of target entries is that of the published one-hot target array,
    voxels x n_class. A class with no voxel gets weight 0 (and a warning).
    """
    counts = np.bincount(np.asarray(class_maps).ravel(), minlength=n_class)[:n_class]
    return class_weights_from_counts(counts, np.asarray(class_maps).size, n_class)


def class_weights_from_counts(counts, n_voxels, n_class):
    """:func:`class_weights` from the voxels per class and the number of voxels of all patches."""
    counts = np.asarray(counts, dtype=np.float64)
    total = float(n_voxels) * n_class
    weights = np.zeros(n_class)
    for label, count in enumerate(counts):
        if count:
            weights[label] = total / count
        else:
            log.warning("class %d has no voxel in the targets; its weight is 0", label)
    return weights


class VoxelWeights:
    """Per-voxel sample weights ``w[class]``, computed per batch (not stored).

    ``VoxelWeights(maps, w)[indices]`` is ``w[maps[indices]]`` as float32.
    """

    def __init__(self, class_maps, weights):
        self.class_maps = class_maps
        self.weights = np.asarray(weights, dtype=np.float32)

    def __len__(self):
        return len(self.class_maps)

    def __getitem__(self, indices):
        return self.weights[self.class_maps[indices]]


# ---------------------------------------------------------------- network

def build_segmenter(shape, n_class, filters=32):
    """The published EDSS3D network.

    Conv block, max-pool, conv block, max-pool, conv block, upsample, conv
    block, upsample, conv block, Conv3D(n_class, 1x1x1), reshape to
    (voxels, n_class), softmax over the classes. A conv block is Conv3D(32,
    3x3x3, same) + ReLU, as in the autoencoder.

    Args:
        shape: subvolume shape, every edge a multiple of 4.
        n_class: number of classes (max label + 1).

    Returns:
        an uncompiled ``keras.Model`` from ``(n1, n2, n3, 1)`` to ``(voxels, n_class)``.
    """
    import keras
    from keras import layers

    from .model import _conv_block, check_box

    check_box(shape)
    inputs = keras.Input(shape=tuple(int(s) for s in shape) + (1,), name="subvolume")
    x = inputs
    # encoder
    for i in (1, 2):
        x = _conv_block(x, filters, f"seg_enc{i}")
        x = layers.MaxPooling3D(2, name=f"seg_enc{i}_pool")(x)
    x = _conv_block(x, filters, "seg_mid")
    # decoder
    for i in (1, 2):
        x = layers.UpSampling3D(2, name=f"seg_dec{i}_up")(x)
        x = _conv_block(x, filters, f"seg_dec{i}")
    x = layers.Conv3D(n_class, 1, dtype="float32", name="seg_classes")(x)
    x = layers.Reshape((-1, n_class), name="seg_voxels")(x)
    outputs = layers.Softmax(axis=-1, dtype="float32", name="seg_softmax")(x)
    return keras.Model(inputs, outputs, name="edss3d")


def segmenter_box(model):
    """The subvolume shape a segmentation model takes."""
    return tuple(int(s) for s in model.input_shape[1:4])


def segmenter_classes(model):
    """Number of classes of a segmentation model."""
    return int(model.output_shape[-1])


def load_segmenter(path):
    """Load a saved EDSS3D model.

    Raises:
        InputError: no such file (name the command that makes it) or not a Keras model.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no trained EDSS3D model here; run 'edss3d train' first (or give --model)")
    from .model import load_model

    try:
        return load_model(path)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable Keras model ({err})") from None


# ---------------------------------------------------------------- training

def _published_adam(learning_rate=0.001):
    import keras

    # Keras 1's Adam: beta_2 0.999, epsilon 1e-8; no decay in the published seg code.
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def _training_classes():
    """ArrayBatches / ResumableCheckpoint of :mod:`autoencoder3d.train`, adapted to (x, target[, weight])."""
    from .train import BEST_WEIGHTS, ArrayBatches, ResumableCheckpoint

    class TargetBatches(ArrayBatches):
        """Batches ``(x, targets[chosen])`` or ``(x, targets[chosen], weights[chosen])``."""

        def __init__(self, volumes, indices, batch_size, *, targets, sample_weights=None, **kwargs):
            super().__init__(volumes, indices, batch_size, **kwargs)
            self.targets = targets
            self.sample_weights = sample_weights

        def __getitem__(self, i):
            chosen = np.sort(self._order[i * self.batch_size : (i + 1) * self.batch_size])
            batch = self.volumes[chosen][..., None]
            if self.sample_weights is None:
                return batch, self.targets[chosen]
            return batch, self.targets[chosen], self.sample_weights[chosen]

    class SegCheckpoint(ResumableCheckpoint):
        """The autoencoder's resumable checkpoint, with the best weights under the EDSS3D name."""

        def _save_weights(self, name):
            super()._save_weights(SEG_BEST if name == BEST_WEIGHTS else name)

    return TargetBatches, SegCheckpoint


def train_segmenter(
    volumes, class_maps, n_class, model_dir, *, epochs=10000, batch_size=128, patience=20,
    validation_split=0.1, learning_rate=0.001, weights=None, seed=0, verbose=1,
):
    """Train the EDSS3D network, resuming from ``model_dir`` if a run was interrupted.

    Args:
        volumes: float32 ``(N, n1, n2, n3)`` raw subvolumes (the network's input).
        class_maps: uint8 ``(N, n1, n2, n3)`` class index per voxel (the targets).
        n_class: number of classes.
        model_dir: folder for checkpoints, history and the saved model.
        weights: per-class weights applied per voxel (``--class-balanced``), or None.
        seed: shuffling seed.

    Returns:
        (model, info) with the best weights loaded and the model saved as ``model-seg.keras``.
    """
    import keras

    from .atomic import atomic_path
    from .train import _clear_resume_point, _resume, split_validation, training_info

    TargetBatches, SegCheckpoint = _training_classes()

    os.makedirs(model_dir, exist_ok=True)
    model = build_segmenter(volumes.shape[1:], n_class)
    model.compile(optimizer=_published_adam(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy())
    state = _resume(model, model_dir)  # an interrupted run's resume point, if any
    best = os.path.join(model_dir, SEG_BEST)
    if not state and os.path.isfile(best):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(best)
        log.info("starting from the existing best-weights checkpoint %s", best)
    initial_epoch = int(state.get("epochs_done", 0))
    n = len(volumes)
    n_train = split_validation(n, validation_split)
    targets = class_maps.reshape(n, -1)
    sample_weights = VoxelWeights(targets, weights) if weights is not None else None
    common = dict(targets=targets, sample_weights=sample_weights)
    train_data = TargetBatches(volumes, np.arange(n_train), batch_size, shuffle=True, seed=seed, epoch=initial_epoch, **common)
    val_data = TargetBatches(volumes, np.arange(n_train, n), batch_size, shuffle=False, **common) if n_train < n else None
    checkpoint = SegCheckpoint(model_dir, patience, state)
    started = time.perf_counter()
    if initial_epoch < epochs and not checkpoint.stopped_early:
        model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=initial_epoch, callbacks=[checkpoint], verbose=verbose,
                  shuffle=False)  # TargetBatches shuffles from (seed, epoch), the same in a resumed process
    train_seconds = time.perf_counter() - started
    if os.path.isfile(best):
        model.load_weights(best)
    with atomic_path(os.path.join(model_dir, SEG_MODEL), suffix=".keras") as tmp:
        model.save(tmp)
    final = TargetBatches(volumes, np.arange(n_train), batch_size, shuffle=False, targets=targets)
    final_loss = float(model.evaluate(final, verbose=0))
    _clear_resume_point(model_dir)
    info = dict(training_info(checkpoint, initial_epoch, n_train, n, train_seconds), final_train_loss=final_loss)
    return model, info


# ---------------------------------------------------------------- prediction

def predict_probabilities(model, volumes, batch_size=32):
    """Class probabilities ``(N, n1, n2, n3, n_class)`` of float32 volumes ``(N, n1, n2, n3)``."""
    volumes = np.asarray(volumes, dtype=np.float32)
    out = model.predict(volumes[..., None], batch_size=batch_size, verbose=0)
    return out.reshape(volumes.shape + (out.shape[-1],))


def keep_max(probabilities):
    """The published prediction layout: the winning class keeps its probability, the others are 0."""
    probabilities = np.asarray(probabilities)
    winner = np.argmax(probabilities, axis=-1)
    kept = np.zeros_like(probabilities)
    np.put_along_axis(kept, winner[..., None], np.take_along_axis(probabilities, winner[..., None], axis=-1), axis=-1)
    return kept


def check_model_box(model, v_siz, model_path, data_path):
    """Raise InputError unless the model takes subvolumes of shape ``v_siz``."""
    box = segmenter_box(model)
    if tuple(box) != tuple(v_siz):
        raise InputError(
            f"{model_path}: the model takes {box[0]}x{box[1]}x{box[2]} subvolumes but {data_path} has "
            f"{v_siz[0]}x{v_siz[1]}x{v_siz[2]}; extract subvolumes of the model's size or train a model on these"
        )


# ---------------------------------------------------------------- the edss3d train / predict jobs

def _run_inputs(out_dir):
    """The autoencoder and ``kmeans.pickle`` of a finished ``autoencoder3d train`` run."""
    from .io import load_pickle
    from .train import model_path

    model_dir = os.path.join(out_dir, "model")
    autoencoder_path = model_path(model_dir, "autoencoder")
    if not os.path.isfile(autoencoder_path):
        raise InputError(f"{out_dir}: no trained autoencoder (model/model-autoencoder.keras); run 'autoencoder3d train' first, or give --out RUN_FOLDER")
    kmeans_path = os.path.join(out_dir, "clus-center", "kmeans.pickle")
    if not os.path.isfile(kmeans_path):
        raise InputError(f"{out_dir}: no clus-center/kmeans.pickle; run 'autoencoder3d train' (or 'autoencoder3d cluster') first")
    members = load_pickle(kmeans_path)
    if not isinstance(members, dict) or not members:
        raise InputError(f"{kmeans_path}: expected a dict cluster id -> list of uuids")
    return autoencoder_path, {int(k): [str(u) for u in v] for k, v in members.items()}


def _read_record(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def run_seg_train(
    data, out_dir=".", selection=None, *, iso=0.5, class_balanced=False, epochs=10000, batch_size=128, patience=20,
    validation_split=0.1, learning_rate=0.001, seed=None, retrain=False, verbose=1, source="selection",
):
    """The ``edss3d train`` job: decode, label, sample background, train, save.

    Args:
        data: subvolume pickle (the one the run clustered, or its pose-normalized copy).
        out_dir: the ``autoencoder3d train`` run folder; ``decoded/`` and ``model-seg/`` go there too.
        selection: dict label -> list of cluster ids.
        iso: a voxel is dense where the decoded volume is more than ``iso`` standard deviations
            of the training intensities denser than their mean (published: ``-decoded > 0.5``,
            which is the same rule for the literal published setting's mean 0 and std 1).
        class_balanced: weight every voxel by the published per-class weight.
        seed: background sampling, shuffling and initial weights (random when None).
        retrain: forget a saved EDSS3D model and checkpoints in ``model-seg/``.
        source: where the selection came from (``--select`` or the JSON file), for messages.

    Returns:
        the record written to ``model-seg/seg.json`` (a dict).
    """
    import secrets

    from .io import load_dataset
    from . import train as ae_train
    from .train import HISTORY_CSV, LAST_WEIGHTS, STATE_FILE, write_json

    started = time.perf_counter()
    out_dir = os.path.abspath(out_dir)
    autoencoder_path, members = _run_inputs(out_dir)
    check_selection(selection, members, source)
    seg_dir = os.path.join(out_dir, SEG_DIR)
    record_path = os.path.join(seg_dir, SEG_RECORD)
    saved = os.path.join(seg_dir, SEG_MODEL)
    wanted = {"selection": {str(k): v for k, v in sorted(selection.items())}, "iso": float(iso), "class_balanced": bool(class_balanced)}
    if retrain:
        names = (SEG_MODEL, SEG_BEST, SEG_RECORD, LAST_WEIGHTS, STATE_FILE, HISTORY_CSV, getattr(ae_train, "LAST_OPTIMIZER", ""))
        for name in filter(None, names):
            if os.path.exists(os.path.join(seg_dir, name)):
                os.remove(os.path.join(seg_dir, name))
    previous = _read_record(record_path)
    if os.path.isfile(saved) or os.path.isfile(os.path.join(seg_dir, LAST_WEIGHTS)):
        earlier = {k: previous.get(k) for k in wanted}
        if previous and earlier != wanted:
            raise InputError(
                f"{seg_dir}: holds a model trained with {json.dumps(earlier)}, not {json.dumps(wanted)}; "
                "pass --retrain to train a new one"
            )
    if os.path.isfile(saved) and previous.get("finished"):
        log.info("reusing the trained EDSS3D model %s (pass --retrain to train again)", saved)
        return {**previous, "reused_saved_model": True}

    resuming = os.path.isfile(os.path.join(seg_dir, LAST_WEIGHTS)) and "seed" in previous
    if seed is None and resuming:
        seed = int(previous["seed"])  # same background patches and shuffling as the interrupted run
    if seed is None:
        seed = secrets.randbelow(2**31)
        log.info("no --seed given; using seed %d (recorded in %s)", seed, record_path)
    write_json(record_path, {**wanted, "seed": int(seed), "finished": False})
    import keras

    keras.utils.set_random_seed(seed)
    subvolumes = load_dataset(data)
    from .model import load_model

    autoencoder = load_model(autoencoder_path)
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

    from .seg_patches import patches_from_store, patches_in_memory, remove_targets

    prepare = patches_in_memory if subvolumes.in_memory else patches_from_store
    prepared = prepare(autoencoder, subvolumes, labels, selection, out_dir, iso, batch_size, seed, class_balanced)
    del autoencoder
    volumes, class_maps, counts, label_fraction, scale, weights = (prepared[k] for k in ("volumes", "class_maps", "counts", "label_fraction", "scale", "weights"))
    chosen, patch_labels, background, decode_seconds = (prepared[k] for k in ("chosen", "patch_labels", "background", "decode_seconds"))
    n_class = max(selection) + 1
    log.info("labels: %.1f %% of the voxels of the labelled subvolumes are denser than %g standard deviations "
             "above the mean (%s contrast)", 100 * label_fraction, iso, scale["polarity"])

    # 5-6. train
    try:
        model, info = train_segmenter(
            volumes, class_maps, n_class, seg_dir, epochs=epochs, batch_size=batch_size, patience=patience,
            validation_split=validation_split, learning_rate=learning_rate, weights=weights if class_balanced else None,
            seed=seed, verbose=verbose,
        )
    finally:
        remove_targets(seg_dir)
    log.info("final loss on the training patches: %.5f", info["final_train_loss"])
    if info["history"]:
        try:
            from .figures import plot_history

            plot_history(os.path.join(seg_dir, "loss.png"), info["history"])
        except Exception as err:  # a figure is never worth failing the run
            log.warning("could not draw the loss curve: %s", err)
    record = {
        **wanted,
        "finished": True,
        "data": os.path.abspath(data),
        "run": out_dir,
        "seed": int(seed),
        "v_siz": list(subvolumes.v_siz),
        "n_class": int(n_class),
        "n_labelled": int(sum(1 for l in patch_labels if l)),
        "n_background": len(background),
        "patches": {u: int(l) for u, l in zip(chosen, patch_labels)},
        "voxels_per_class": [int(c) for c in counts],
        "labelled_fraction": label_fraction,
        "label_scale": scale,
        "class_weights": [float(w) for w in weights],
        "options": {"epochs": epochs, "batch_size": batch_size, "patience": patience, "validation_split": validation_split, "learning_rate": learning_rate},
        "training": {k: v for k, v in info.items() if k != "history"},
        "timings": {"decode_s": decode_seconds, "train_s": info["train_seconds"], "total_s": time.perf_counter() - started},
    }
    write_json(record_path, record)
    return record


def run_seg_predict(data, model_path=None, out_dir=".", *, batch_size=32):
    """The ``edss3d predict`` job: segment every subvolume of ``data``.

    Writes ``prediction/vs_p.pickle`` (uuid -> float32 ``(n, n, n, n_class)``,
    the winning class's probability kept, the others 0: the published layout)
    and ``prediction/labels.pickle`` (uuid -> uint8 label map ``(n, n, n)``).

    Returns:
        dict with the output paths, the number of subvolumes and voxels per class.
    """
    from .io import load_dataset, save_pickle

    out_dir = os.path.abspath(out_dir)
    model_path = model_path or os.path.join(out_dir, SEG_DIR, SEG_MODEL)
    model = load_segmenter(model_path)
    subvolumes = load_dataset(data)  # a store is read a block at a time
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
    pred_dir = os.path.join(out_dir, "prediction")
    save_pickle(os.path.join(pred_dir, "vs_p.pickle"), vs_p)
    save_pickle(os.path.join(pred_dir, "labels.pickle"), label_maps)
    return {
        "vs_p": os.path.join(pred_dir, "vs_p.pickle"),
        "labels": os.path.join(pred_dir, "labels.pickle"),
        "n_subvolumes": len(subvolumes),
        "voxels_per_class": counts.tolist(),
        "seconds": time.perf_counter() - started,
    }
