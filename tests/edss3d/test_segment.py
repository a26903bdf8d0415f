"""Whole-tomogram EDSS3D segmentation: box layout, blending, streaming, MRC output."""

import numpy as np
import pytest

from autoencoder3d.edss3d.tomogram import blend_window, box_starts, iter_segment, keras_predictor, segment_array, segment_tomogram
from autoencoder3d.errors import InputError
from tests.conftest import write_tomogram

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

BOX = 16


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    """An untrained (random) 3-class EDSS3D network on 16^3 boxes, saved as .keras."""
    import keras

    from autoencoder3d.edss3d import build_segmenter

    keras.utils.set_random_seed(5)
    model = build_segmenter((BOX, BOX, BOX), 3)
    path = tmp_path_factory.mktemp("segmodel") / "model-seg.keras"
    model.save(path)
    return model, str(path)


def _tomogram(shape=(40, 36, 44), seed=0):
    rng = np.random.default_rng(seed)
    tomo = rng.normal(size=shape).astype(np.float32)
    tomo[8:20, 10:22, 12:30] -= 2.0
    return tomo


def test_box_starts_cover_every_voxel():
    assert box_starts(44, 16, 8) == [0, 8, 16, 24, 28]
    assert box_starts(32, 16, 16) == [0, 16]
    assert box_starts(10, 16, 8) == [0]
    for length in (16, 17, 40, 63):
        covered = np.zeros(length, bool)
        for s in box_starts(length, 16, 5):
            covered[s : s + 16] = True
            assert s + 16 <= length
        assert covered.all()


def test_blend_window_favours_the_centre():
    w = blend_window(16)
    assert w.shape == (16, 16, 16) and w.min() > 0
    assert w[8, 8, 8] == pytest.approx(w.max()) and w[0, 0, 0] == pytest.approx(w.min())
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1])


def _reference(model, tomo, step):
    """Blend by predicting every box on its own (the slow, obvious way)."""
    nx, ny, nz = tomo.shape
    acc = np.zeros(tomo.shape + (3,))
    wsum = np.zeros(tomo.shape)
    w = blend_window(BOX)
    for x0 in box_starts(nx, BOX, step):
        for y0 in box_starts(ny, BOX, step):
            for z0 in box_starts(nz, BOX, step):
                box = tomo[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX]
                p = np.asarray(model(box[None, ..., None])).reshape(BOX, BOX, BOX, 3)
                acc[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX] += p * w[..., None]
                wsum[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX] += w
    return acc / wsum[..., None]


def test_sliding_window_equals_boxes_predicted_one_by_one(seg_model):
    model, _ = seg_model
    tomo = _tomogram()
    predict = keras_predictor(model, batch_size=8)
    # without overlap every voxel is the prediction of the one box holding it
    tiled = _tomogram((32, 48, 32), seed=1)
    labels, probs = segment_array(predict, tiled, BOX, 3, step=BOX, batch_boxes=5)
    for x0 in (0, 16):
        for y0 in (0, 16, 32):
            for z0 in (0, 16):
                box = tiled[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX]
                p = np.asarray(model(box[None, ..., None])).reshape(BOX, BOX, BOX, 3)
                np.testing.assert_allclose(probs[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX], p, atol=1e-5)
                np.testing.assert_array_equal(labels[x0 : x0 + BOX, y0 : y0 + BOX, z0 : z0 + BOX], np.argmax(p, -1))
    # the last boxes sit flush with the far edges: their part no other box covers is theirs alone
    _, probs = segment_array(predict, tomo, BOX, 3, step=BOX, batch_boxes=5)
    p = np.asarray(model(tomo[None, 24:, 20:, 28:, None])).reshape(BOX, BOX, BOX, 3)
    np.testing.assert_allclose(probs[32:, 32:, 32:], p[8:, 12:, 4:], atol=1e-5)
    # with half-overlapping boxes the streamed blend equals the obvious one
    labels, probs = segment_array(predict, tomo, BOX, 3, batch_boxes=7)
    expected = _reference(model, tomo, BOX // 2)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    top2 = np.sort(expected, -1)
    clear = top2[..., -1] - top2[..., -2] > 1e-4
    np.testing.assert_array_equal(labels[clear], np.argmax(expected, -1)[clear])


class _RecordingVolume:
    """Array stand-in that records which z planes are read, to check slab-wise access."""

    def __init__(self, array):
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, key):
        z = key[2]
        self.reads.append((z.start, min(z.stop, self.shape[2])))
        return self.array[key]


def test_streams_slabs_in_order():
    tomo = _tomogram((20, 20, 60))
    volume = _RecordingVolume(tomo)
    pointwise = lambda boxes: np.stack([boxes, -boxes, np.zeros_like(boxes)], -1)  # noqa: E731
    parts = list(iter_segment(pointwise, volume, BOX, 3, step=8))
    assert all(z1 - z0 <= BOX for z0, z1 in volume.reads)
    starts = [z0 for z0, _ in parts]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(p.shape[2] for _, p in parts) == 60
    probs = np.concatenate([p for _, p in parts], axis=2)
    np.testing.assert_allclose(probs[..., 0], tomo, atol=1e-5)  # a pointwise "network" is blended back to itself


def test_small_tomogram_edges_are_padded():
    tomo = _tomogram((10, 24, 12))
    pointwise = lambda boxes: np.stack([boxes, -boxes], -1)  # noqa: E731
    labels, probs = segment_array(pointwise, tomo, BOX, 2)
    assert labels.shape == tomo.shape
    np.testing.assert_allclose(probs[..., 0], tomo, atol=1e-5)


def test_segment_tomogram_writes_mrc(seg_model, tmp_path):
    import mrcfile

    model, path = seg_model
    tomo = _tomogram((36, 32, 40))
    tomo_path = write_tomogram(tmp_path / "t.mrc", tomo, voxel_size=13.5)
    out = tmp_path / "seg.mrc"
    result = segment_tomogram(tomo_path, path, str(out), probabilities=True, progress=False)
    labels, probs = segment_array(keras_predictor(model, 16), tomo, BOX, 3)
    with mrcfile.open(out) as mrc:
        assert mrc.header.mode == 0 and mrc.data.shape == (40, 32, 36)  # file order z, y, x
        assert mrc.voxel_size.x == pytest.approx(13.5)
        np.testing.assert_array_equal(mrc.data.transpose(2, 1, 0), labels)
        assert mrc.header.dmax == labels.max()
    with mrcfile.open(tmp_path / "seg-class2.mrc") as mrc:
        np.testing.assert_allclose(mrc.data.transpose(2, 1, 0), probs[..., 2], atol=1e-6)
    assert result["outputs"][1:] == [str(tmp_path / "seg-class1.mrc"), str(tmp_path / "seg-class2.mrc")]
    assert sum(result["voxels_per_class"]) == tomo.size and result["voxels_per_second"] > 0


def test_segment_bad_input(seg_model, tmp_path):
    _, path = seg_model
    tomo_path = write_tomogram(tmp_path / "t.mrc", _tomogram((20, 20, 20)))
    with pytest.raises(InputError, match="no trained EDSS3D model here; run 'edss3d train' first"):
        segment_tomogram(tomo_path, str(tmp_path / "none.keras"), str(tmp_path / "s.mrc"))
    with pytest.raises(InputError, match="--step 17: must be between 1 and the model's box size 16"):
        segment_tomogram(tomo_path, path, str(tmp_path / "s.mrc"), step=17)
    with pytest.raises(InputError, match="tomogram file not found"):
        segment_tomogram(str(tmp_path / "missing.mrc"), path, str(tmp_path / "s.mrc"))
    assert not (tmp_path / "s.mrc").exists()


def test_slabs_smoothed_on_the_fly_equal_whole_tomogram_smoothing():
    from scipy.ndimage import gaussian_filter

    from autoencoder3d.edss3d.tomogram import read_slab

    data = np.random.default_rng(3).normal(size=(20, 18, 40)).astype(np.float32)
    whole = gaussian_filter(data, 2.0)
    for z0 in (0, 5, 24, 32):
        np.testing.assert_array_equal(read_slab(data, z0, 16, 2.0), whole[:, :, z0 : z0 + 16])
    np.testing.assert_array_equal(read_slab(data, 8, 16), data[:, :, 8:24])
