"""The simulator: determinism, ground truth consistency, imaging, and input checks."""

import json
import os

import numpy as np
import pytest

from autoencoder3d.cli.main import main as cli_main
from autoencoder3d.errors import InputError
from autoencoder3d.formats.mrc import read_tomogram
from autoencoder3d.formats.subvolume_pickle import load_subvolumes
from autoencoder3d.simulate.dataset import image_volume, simulate_dataset, wedge_mask
from autoencoder3d.simulate.shapes import CLASSES

# small: 2 nm voxels, 16-voxel boxes, 4 copies of each of the six classes
SMALL = dict(shape=(64, 64, 48), voxel_size=20.0, box=16, copies=4, example_2_copies=3)


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp(f"sim{i}") for i in range(2)]
    summaries = [simulate_dataset(d, write_density=True, **SMALL) for d in dirs]
    return dirs, summaries


def _truth(folder):
    with open(os.path.join(folder, "truth.json")) as handle:
        return json.load(handle)


def test_same_seed_gives_byte_identical_files(small_runs):
    (a, b), summaries = small_runs
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    assert {"tomogram.rec", "subvolumes_example_1.pickle", "subvolumes_example_2.pickle", "truth.json",
            "density.mrc", "labels.mrc"} <= set(names)
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name


def test_another_seed_gives_another_tomogram(small_runs, tmp_path):
    simulate_dataset(tmp_path, seed=1, **SMALL)
    (a, _), _ = small_runs
    first = np.asarray(read_tomogram(os.path.join(a, "tomogram.rec")).data)
    other = np.asarray(read_tomogram(tmp_path / "tomogram.rec").data)
    assert not np.array_equal(first, other)


def test_class_counts_and_centres_match_truth(small_runs):
    (folder, _), _ = small_runs
    truth = _truth(folder)
    assert [c["name"] for c in truth["classes"]] == [c.name for c in CLASSES]
    assert all(c["copies_example_1"] == SMALL["copies"] for c in truth["classes"])
    subs = load_subvolumes(os.path.join(folder, "subvolumes_example_1.pickle"))
    records = truth["subvolumes"]
    assert len(subs) == len(CLASSES) * SMALL["copies"]
    assert sorted(subs.uuids) == sorted(u for u, r in records.items() if r["set"] == "example_1")
    for uuid, centre in zip(subs.uuids, subs.centers):
        rec = records[uuid]
        assert list(centre) == rec["center_picked"]
        error = np.abs(np.subtract(rec["center_picked"], rec["center_true"]))
        assert error.max() <= 3  # picking error: jitter 1.5 voxels, clipped at 3
        rotation = np.array(rec["rotation"])
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        assert np.isclose(np.linalg.det(rotation), 1.0, atol=1e-5)
    counts = {}
    for rec in records.values():
        if rec["set"] == "example_1":
            counts[rec["class"]] = counts.get(rec["class"], 0) + 1
    assert counts == {c.name: SMALL["copies"] for c in CLASSES}


def test_example_2_is_canonical_and_from_four_classes(small_runs):
    (folder, _), _ = small_runs
    truth = _truth(folder)
    subs = load_subvolumes(os.path.join(folder, "subvolumes_example_2.pickle"))
    classes = {truth["subvolumes"][u]["class"] for u in subs.uuids}
    assert classes == {"ribosome", "barrel", "double_ring", "filament"}
    assert len(subs) == 4 * SMALL["example_2_copies"]
    assert all(truth["subvolumes"][u]["center_picked"] == truth["subvolumes"][u]["center_true"] for u in subs.uuids)


def test_every_box_lies_inside_the_tomogram(small_runs):
    (folder, _), _ = small_runs
    tomogram = read_tomogram(os.path.join(folder, "tomogram.rec"))
    box = SMALL["box"]
    for rec in _truth(folder)["subvolumes"].values():
        start = np.array(rec["center_picked"]) - box // 2
        assert np.all(start >= 0) and np.all(start + box <= tomogram.shape)
    tomogram.close()


def test_mrc_header_voxel_size_and_axis_order(small_runs):
    (folder, _), _ = small_runs
    for name in ("tomogram.rec", "density.mrc", "labels.mrc"):
        volume = read_tomogram(os.path.join(folder, name))
        assert volume.voxel_size == (20.0, 20.0, 20.0)
        assert volume.shape == SMALL["shape"]
        volume.close()


def test_density_and_labels_hold_every_class(small_runs):
    (folder, _), _ = small_runs
    labels = np.asarray(read_tomogram(os.path.join(folder, "labels.mrc")).data)
    assert set(np.unique(labels)) == set(range(len(CLASSES) + 2))  # background, classes, membrane


def test_subvolumes_show_dark_particles(small_runs):
    (folder, _), _ = small_runs
    subs = load_subvolumes(os.path.join(folder, "subvolumes_example_2.pickle"))
    truth = _truth(folder)
    ribosomes = [v for u, v in zip(subs.uuids, subs.volumes) if truth["subvolumes"][u]["class"] == "ribosome"]
    mean = np.mean(ribosomes, axis=0)
    # a dark blob in the middle relative to the box as a whole (CTF-filtered, so compare smoothed)
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(mean, 1.0)
    assert smooth[8, 8, 8] < smooth.mean()


@pytest.mark.parametrize("snr", [0.1, 0.5])
def test_snr_within_20_percent(snr):
    rng = np.random.default_rng(3)
    signal = -(rng.random((48, 48, 40)) > 0.9).astype(np.float32)
    _, _, stats = image_volume(rng, signal, 10.0, snr, 60.0, -5.0, 300.0, 2.0)
    assert stats["asked"] == snr
    assert abs(stats["reached"] - snr) / snr < 0.2
    assert np.isclose(stats["two_rho"], 2 * stats["reached"])


def test_reached_snr_recorded(small_runs):
    (folder, _), summaries = small_runs
    snr = _truth(folder)["snr"]["example_1"]
    assert abs(snr["reached"] - 0.3) / 0.3 < 0.2
    assert summaries[0]["snr"]["reached"] == pytest.approx(snr["reached"], abs=1e-6)


def test_missing_wedge_before_noise():
    rng = np.random.default_rng(4)
    signal = -rng.random((40, 36, 32)).astype(np.float32)
    _, clean, _ = image_volume(rng, signal, 10.0, 0.3, 60.0, -5.0, 300.0, 2.0)
    amplitude = np.abs(np.fft.rfftn(clean))
    measured = wedge_mask(clean.shape, 10.0, 60.0) > 0
    assert (~measured).sum() > 0.2 * measured.size  # a 30-degree half-wedge about the beam axis
    assert amplitude[~measured].max() < 1e-6 * amplitude[measured].max()
    # and a component just outside the wedge survives: the x axis is fully measured
    assert amplitude[1:8, 0, 0].max() > 0


def test_wedge_geometry():
    mask = wedge_mask((32, 32, 32), 10.0, 60.0)
    assert mask[0, 5, 5] == 0  # along the beam (z): missing
    assert mask[5, 5, 0] == 1  # perpendicular to the beam: measured
    assert mask[10, 0, 5] == 1  # 63 degrees from the beam: measured
    assert mask[5, 0, 10] == 0  # 27 degrees from the beam: missing
    assert wedge_mask((8, 8, 8), 10.0, 90.0).min() == 1


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(snr=0.0), "--snr: must be a positive number"),
        (dict(box=30), "--box: must be a multiple of 4"),
        (dict(shape=(64, 64, 10)), "--shape: must be three integers of at least 23"),
        (dict(defocus=5.0), "--defocus: give the underfocus as a negative number"),
        (dict(wedge=120.0), "--wedge: must be the largest tilt angle"),
        (dict(copies=0), "--copies: must be a positive integer"),
        (dict(voxel_size=0.0), "--voxel-size: must be between 1 and 50"),
        (dict(copies=400), "--copies: could not place 2400 particles without overlap"),
        (dict(example_2_classes=("ribosome", "virus")), "example 2 classes: ['virus']"),
    ],
)
def test_bad_options_raise_input_error(tmp_path, option, message):
    with pytest.raises(InputError) as err:
        simulate_dataset(tmp_path, **{**SMALL, **option})
    assert message in str(err.value)
    assert not os.path.exists(tmp_path / "truth.json")


def test_cli_simulate(tmp_path, capsys):
    status = cli_main(["simulate", str(tmp_path), "--quiet", "--shape", "64x64x48", "--voxel-size", "20",
                       "--box", "16", "--copies", "2", "--example-2-copies", "2", "--snr", "0.2"])
    assert status == 0
    out = capsys.readouterr().out
    assert "SNR asked 0.2, reached 0." in out
    assert "12 in example 1, 8 in example 2" in out
    assert _truth(tmp_path)["params"]["snr"] == 0.2


def test_cli_reports_bad_option_in_one_line(tmp_path, capsys):
    status = cli_main(["simulate", str(tmp_path), "--quiet", "--snr", "-1"])
    assert status == 2
    assert "--snr: must be a positive number" in capsys.readouterr().err


def test_subvolumes_are_cut_from_the_written_tomogram_at_their_centres(small_runs):
    from autoencoder3d.volume import cut_box

    (folder, _), _ = small_runs
    tomogram = read_tomogram(os.path.join(folder, "tomogram.rec"))
    subs = load_subvolumes(os.path.join(folder, "subvolumes_example_1.pickle"))
    box = SMALL["box"]
    for volume, centre in zip(subs.volumes, subs.centers):
        start = centre.astype(int) - box // 2
        assert np.array_equal(cut_box(tomogram.data, start, box, 0.0), volume)
    tomogram.close()
