"""Whole-tomogram segmentation with a trained EDSS3D network (the paper's coarse segmentation).

The network takes boxes of its training size ``b``. The tomogram is covered by
boxes that overlap (start every ``step`` voxels along each axis, the last box
flush with the far edge), each box is segmented, and the class probabilities
of overlapping boxes are averaged with a tent-shaped weight that favours box
centres over box edges (where the network sees less context). The label of a
voxel is its most probable class.

Memory: the tomogram is memory-mapped and read one slab of ``b`` planes along
z at a time (contiguous in the MRC file); probabilities are accumulated for
that slab only, and planes no later box touches are written out at once. Peak
memory is about ``nx * ny * b * (n_class + 2) * 4`` bytes, whatever nz is.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def box_starts(length: int, box: int, step: int) -> list[int]:
    """Start indices of boxes of side ``box`` covering ``0 .. length`` every ``step`` voxels."""
    if length <= box:
        return [0]
    starts = list(range(0, length - box + 1, step))
    if starts[-1] != length - box:
        starts.append(length - box)
    return starts


def blend_window(box: int, floor: float = 0.05) -> NDArray[np.float32]:
    """Separable tent weights ``(b, b, b)``: 1 at the centre, ``floor`` at the faces."""
    i = (np.arange(box) + 0.5) / box
    tent = 1.0 - np.abs(2.0 * i - 1.0)
    tent = floor + (1.0 - floor) * tent / tent.max()
    return (tent[:, None, None] * tent[None, :, None] * tent[None, None, :]).astype(np.float32)


def keras_predictor(model: keras.Model, batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """A function boxes ``(K, b, b, b)`` -> probabilities ``(K, b, b, b, n_class)`` for a Keras model.

    Batches are padded to ``batch_size`` so the compiled function is traced once.
    """

    def predict(boxes):
        k = len(boxes)
        out = []
        for lo in range(0, k, batch_size):
            chunk = boxes[lo : lo + batch_size]
            if len(chunk) < batch_size:
                pad = np.zeros((batch_size - len(chunk),) + chunk.shape[1:], dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            probs = np.asarray(model.predict_on_batch(chunk[..., None]))
            out.append(probs[: min(batch_size, k - lo)])
        probs = np.concatenate(out)
        return probs.reshape(boxes.shape + (probs.shape[-1],))

    return predict


def read_slab(data: np.ndarray, z0: int, depth: int, sigma: float = 0.0) -> NDArray[np.float32]:
    """Planes ``z0 : z0 + depth`` of ``data`` as float32, Gaussian-smoothed when ``sigma`` > 0.

    The smoothing reads a margin of the Gaussian's reach along z (all of x and
    y), so the values equal those of smoothing the whole tomogram first.
    """
    nz = data.shape[2]
    if not sigma:
        return np.asarray(data[:, :, z0 : z0 + depth], dtype=np.float32)
    from scipy.ndimage import gaussian_filter

    from ..prep.pose import TRUNCATE

    reach = int(TRUNCATE * sigma + 0.5)
    lo, hi = max(z0 - reach, 0), min(z0 + depth + reach, nz)
    region = gaussian_filter(np.asarray(data[:, :, lo:hi], dtype=np.float32), sigma)
    return region[:, :, z0 - lo : min(z0 + depth, nz) - lo]


def iter_segment(predict: Callable[[np.ndarray], np.ndarray], data: np.ndarray, box: int, n_class: int, *, step: int | None = None,
                 batch_boxes: int = 64, window: ArrayLike | None = None, fill: float | None = None, smooth_sigma: float = 0.0,
                 source: str | os.PathLike = "the volume") -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Slide the network over ``data`` and yield finished slabs of blended probabilities.

    Args:
        predict: function boxes ``(K, b, b, b)`` float32 -> probabilities ``(K, b, b, b, n_class)``.
        data: 3D array indexed [x, y, z] (a memory map is read one slab at a time).
        box: the network's box side ``b``.
        n_class: number of classes.
        step: distance between box starts (default ``b // 2``: half-overlapping boxes).
        batch_boxes: boxes cut and predicted together.
        window: blending weights ``(b, b, b)`` (default :func:`blend_window`).
        fill: value for voxels outside the tomogram when an edge is shorter than
            ``b`` (default: the mean of the slab).
        smooth_sigma: Gaussian smoothing of ``data`` in voxels, as pose
            normalization applies to its training input (0: none).
        source: the volume's name in the error about NaN or infinite values.

    Yields:
        (z0, probabilities ``(nx, ny, z1 - z0, n_class)`` float32) in increasing z,
        together covering every plane once.
    """
    nx, ny, nz = (int(s) for s in data.shape)
    step = int(step or max(1, box // 2))
    if not 1 <= step <= box:
        raise ValueError(f"step {step} must be between 1 and the box size {box}")
    window = blend_window(box) if window is None else np.asarray(window, dtype=np.float32)
    xs, ys, zs = box_starts(nx, box, step), box_starts(ny, box, step), box_starts(nz, box, step)
    depth = box
    acc = np.zeros((nx, ny, depth, n_class), dtype=np.float32)
    wsum = np.zeros((nx, ny, depth), dtype=np.float32)
    origin = 0  # tomogram plane of acc[:, :, 0]
    for z0 in zs:
        if z0 > origin:  # planes before z0 receive nothing more
            done = min(z0, nz) - origin
            yield origin, acc[:, :, :done] / np.maximum(wsum[:, :, :done, None], 1e-12)
            acc[:, :, : depth - done] = acc[:, :, done:]
            wsum[:, :, : depth - done] = wsum[:, :, done:]
            acc[:, :, depth - done :] = 0
            wsum[:, :, depth - done :] = 0
            origin = z0
        slab = read_slab(data, z0, box, smooth_sigma)
        if not np.isfinite(slab).all():  # the network would label them, and their neighbours, as it pleases
            raise InputError(f"{source}: planes z {z0}-{z0 + slab.shape[2] - 1} hold NaN or infinite values; replace them "
                             "(e.g. with the mean) before segmenting")
        slab_fill = float(slab.mean()) if fill is None else float(fill)
        if slab.shape != (max(nx, box), max(ny, box), box):
            padded = np.full((max(nx, box), max(ny, box), box), slab_fill, dtype=np.float32)
            padded[:nx, :ny, : slab.shape[2]] = slab
            slab = padded
        starts = [(x0, y0) for x0 in xs for y0 in ys]
        for lo in range(0, len(starts), batch_boxes):
            group = starts[lo : lo + batch_boxes]
            boxes = np.stack([slab[x0 : x0 + box, y0 : y0 + box] for x0, y0 in group])
            probs = predict(boxes)
            for (x0, y0), p in zip(group, probs):
                x1, y1, z1 = min(x0 + box, nx), min(y0 + box, ny), min(box, nz - z0)
                w = window[: x1 - x0, : y1 - y0, :z1]
                acc[x0:x1, y0:y1, :z1] += p[: x1 - x0, : y1 - y0, :z1] * w[..., None]
                wsum[x0:x1, y0:y1, :z1] += w
    done = nz - origin
    yield origin, acc[:, :, :done] / np.maximum(wsum[:, :, :done, None], 1e-12)


def segment_array(predict: Callable[[np.ndarray], np.ndarray], data: np.ndarray, box: int, n_class: int, **kwargs: Any
                  ) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Labels ``(nx, ny, nz)`` uint8 and probabilities of a whole in-memory volume (for tests and small data)."""
    parts = [(z0, p) for z0, p in iter_segment(predict, data, box, n_class, **kwargs)]
    probs = np.concatenate([p for _, p in parts], axis=2)
    return np.argmax(probs, axis=-1).astype(np.uint8), probs


def probability_path(out_path: str | os.PathLike, label: int) -> str:
    """Where the probability map of class ``label`` goes: ``seg.mrc`` -> ``seg-class1.mrc``."""
    root, ext = os.path.splitext(out_path)
    return f"{root}-class{label}{ext or '.mrc'}"


def _refuse_overwriting_input(tomogram_path, out_paths):
    """The output is written while the tomogram is read: the same file for both would destroy the tomogram."""
    tomogram = os.path.realpath(tomogram_path)
    for path in out_paths:
        if os.path.realpath(path) == tomogram:
            raise InputError(f"{path}: is the tomogram being segmented; give another --out for the label map")


def segment_tomogram(tomogram_path: str | os.PathLike, model_path: str | os.PathLike, out_path: str | os.PathLike, *,
                     step: int | None = None, batch_boxes: int = 64, batch_size: int = 16, probabilities: bool = False,
                     progress: bool = True, smooth_sigma: float = 0.0) -> dict[str, Any]:
    """The ``edss3d segment`` job: label map (and optionally probability maps) of a whole tomogram.

    Args:
        tomogram_path: MRC/REC tomogram (memory-mapped).
        model_path: a saved EDSS3D model (``model-seg/model-seg.keras``).
        out_path: the label map, 8-bit MRC with the tomogram's voxel size and axis order.
        step: distance between box starts (default half the box).
        probabilities: also write ``<out>-class<l>.mrc`` (float32) for every class l >= 1.
        smooth_sigma: smooth the tomogram (voxels) on the fly, for a network trained on
            pose-normalized subvolumes (cut from the tomogram smoothed with sigma 2).

    Returns:
        dict with the outputs, the tomogram shape, voxels per class, seconds and voxels per second.
    """
    from contextlib import ExitStack

    from ..formats.mrc import open_mrc_stream, read_tomogram
    from .network import load_segmenter, segmenter_box, segmenter_classes

    model = load_segmenter(model_path)
    box3 = segmenter_box(model)
    if len(set(box3)) != 1:
        raise InputError(f"{model_path}: the model's box {box3} is not a cube; whole-tomogram segmentation needs a cubic box")
    box, n_class = box3[0], segmenter_classes(model)
    if step is not None and not 1 <= step <= box:
        raise InputError(f"--step {step}: must be between 1 and the model's box size {box}")
    paths = [out_path] + ([probability_path(out_path, c) for c in range(1, n_class)] if probabilities else [])
    _refuse_overwriting_input(tomogram_path, paths)
    tomo = read_tomogram(tomogram_path)
    shape = tomo.shape
    if smooth_sigma > max(shape):
        tomo.close()
        raise InputError(f"--smooth-sigma {smooth_sigma:g}: larger than the tomogram {tomogram_path} (longest side {max(shape)} "
                         "voxels); give a few voxels (2.0 for a network trained on pose-normalized subvolumes)")
    counts = np.zeros(n_class, dtype=np.int64)
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            labels_out = stack.enter_context(open_mrc_stream(out_path, shape, np.uint8, tomo.voxel_size))
            prob_out = [stack.enter_context(open_mrc_stream(p, shape, np.float32, tomo.voxel_size)) for p in paths[1:]]
            predict = keras_predictor(model, batch_size)
            for z0, probs in iter_segment(predict, tomo.data, box, n_class, step=step, batch_boxes=batch_boxes, smooth_sigma=smooth_sigma,
                                         source=tomogram_path):
                labels = np.argmax(probs, axis=-1).astype(np.uint8)
                counts += np.bincount(labels.ravel(), minlength=n_class)[:n_class]
                labels_out.write(z0, labels)
                for c, writer in enumerate(prob_out, start=1):
                    writer.write(z0, probs[..., c])
                if progress:
                    log.info("segmented planes %d-%d of %d", z0, z0 + probs.shape[2] - 1, shape[2])
    finally:
        tomo.close()
    seconds = time.perf_counter() - started
    voxels = int(np.prod(shape))
    return {
        "outputs": paths,
        "shape": list(shape),
        "box": box,
        "step": int(step or max(1, box // 2)),
        "voxels_per_class": counts.tolist(),
        "seconds": seconds,
        "voxels_per_second": voxels / seconds if seconds > 0 else float("inf"),
    }
