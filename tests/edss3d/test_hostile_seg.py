"""EDSS3D refuses damaged or foreign models and run folders in one line, leaving model-seg/ as it was."""

import json
import os

import pytest

from autoencoder3d.errors import InputError
from tests.conftest import identity_run


def _tiny_model(path, channels_out):
    import keras

    inputs = keras.Input((8, 8, 8, 1))
    keras.Model(inputs, keras.layers.Conv3D(channels_out, 1, activation="softmax")(inputs)).save(path)
    return str(path)


def test_a_cut_short_or_foreign_segmentation_model_is_refused(tmp_path):
    from autoencoder3d.edss3d import load_segmenter

    whole = _tiny_model(tmp_path / "seg.keras", 2)
    assert load_segmenter(whole).output_shape == (None, 8, 8, 8, 2)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(open(whole, "rb").read()[:3000])
    with pytest.raises(InputError, match=r"cut\.keras: the saved model is damaged .*give the model-seg/model-seg\.keras"):
        load_segmenter(str(cut))
    # an autoencoder (one output channel) is no segmenter: it would 'segment' everything as class 0
    with pytest.raises(InputError, match=r"ae\.keras: not an EDSS3D segmentation model \(it maps \(8, 8, 8, 1\) to \(8, 8, 8, 1\)"):
        load_segmenter(_tiny_model(tmp_path / "ae.keras", 1))


@pytest.fixture
def trained_run(tmp_path):
    """A run folder with a (pretend) finished EDSS3D model whose bytes the tests compare afterwards."""
    data, run, _ = identity_run(tmp_path, 8, 2, 0)
    seg = run / "model-seg"
    seg.mkdir()
    (seg / "model-seg.keras").write_bytes(b"the saved model")
    (seg / "seg.json").write_text(json.dumps({"selection": {"1": [0]}, "iso": "auto", "class_balanced": False, "finished": True}))
    return str(data), str(run), seg


def test_retrain_with_refused_inputs_keeps_the_saved_model(trained_run, tmp_path):
    from autoencoder3d.edss3d import run_seg_train

    data, run, seg = trained_run
    with pytest.raises(InputError, match="is a folder"):
        run_seg_train(str(tmp_path), run, {1: [1]}, retrain=True, epochs=1)
    autoencoder = os.path.join(run, "model", "model-autoencoder.keras")
    with open(autoencoder, "r+b") as handle:
        handle.truncate(2000)
    with pytest.raises(InputError, match=r"model-autoencoder\.keras: the saved model is damaged .*'autoencoder3d train .*--retrain'"):
        run_seg_train(data, run, {1: [1]}, retrain=True, epochs=1)
    assert (seg / "model-seg.keras").read_bytes() == b"the saved model" and "finished" in (seg / "seg.json").read_text()


@pytest.mark.parametrize("record", ["garbage{", "[1, 2]", None])
def test_a_saved_model_without_a_readable_record_is_not_trained_over(trained_run, record):
    from autoencoder3d.edss3d import run_seg_train

    data, run, seg = trained_run
    if record is None:
        os.remove(seg / "seg.json")
    else:
        (seg / "seg.json").write_text(record)
    with pytest.raises(InputError, match=r"seg\.json: missing or unreadable, so the model in .* pass --retrain"):
        run_seg_train(data, run, {1: [1]}, epochs=1)
    assert (seg / "model-seg.keras").read_bytes() == b"the saved model"


@pytest.fixture
def tiny_segmenter(tmp_path):
    import numpy as np

    from tests.conftest import write_tomogram

    model = _tiny_model(tmp_path / "seg.keras", 2)
    return model, write_tomogram(tmp_path / "t.mrc", np.random.default_rng(0).normal(size=(12, 10, 9)))


def test_segment_refuses_to_write_over_the_tomogram(tiny_segmenter):
    from autoencoder3d.edss3d.tomogram import segment_tomogram

    model, tomogram = tiny_segmenter
    before = open(tomogram, "rb").read()
    with pytest.raises(InputError, match=r"t\.mrc: is the tomogram being segmented; give another --out"):
        segment_tomogram(tomogram, model, tomogram, progress=False)
    assert open(tomogram, "rb").read() == before


def test_segment_refuses_nan_voxels_and_a_smoothing_wider_than_the_tomogram(tiny_segmenter, tmp_path):
    import numpy as np

    from autoencoder3d.edss3d.tomogram import segment_tomogram
    from tests.conftest import write_tomogram

    model, tomogram = tiny_segmenter
    volume = np.zeros((12, 10, 20))
    volume[3, 4, 15] = np.nan
    bad = write_tomogram(tmp_path / "nan.mrc", volume)
    out = tmp_path / "seg.mrc"
    out.write_bytes(b"an older label map")
    with pytest.raises(InputError, match=r"nan\.mrc: planes z 8-15 hold NaN or infinite values; replace them"):
        segment_tomogram(bad, model, str(out), progress=False)
    with pytest.raises(InputError, match=r"--smooth-sigma 1e\+30: larger than the tomogram .*longest side 12 voxels"):
        segment_tomogram(tomogram, model, str(out), smooth_sigma=1e30, progress=False)
    assert out.read_bytes() == b"an older label map"
