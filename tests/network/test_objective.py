"""Training objectives beyond reconstruction: missing-wedge loss, augmented views, self-labelling rounds."""

import json

import keras
import numpy as np
import pytest
from scipy import ndimage

from autoencoder3d.network import augment
from autoencoder3d.network.objective import Objective
from autoencoder3d.network.self_label import LABELS_FILE, SelfLabelRounds, pseudo_labels, round_epochs
from autoencoder3d.network.train import train_autoencoder
from autoencoder3d.network.wedge_loss import masked_fourier_mse, masked_fourier_mse_numpy, wedge_masks
from autoencoder3d.prep.flips import PROPER_FLIPS, apply_flip, flip_matrix
from autoencoder3d.runs.fingerprint import fingerprint
from autoencoder3d.runs.options import TrainOptions
from autoencoder3d.simulate.dataset import wedge_mask as simulated_wedge_mask
from tests.conftest import make_subvolume_dict, rotation_matrix

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

CYCLIC = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a proper rotation that is not its own inverse


def test_wedge_loss_equals_a_masked_numpy_fft_and_the_mse_without_a_wedge():
    rng = np.random.default_rng(0)
    target, reconstruction = rng.normal(size=(2, 3, 8, 8, 8))
    masks = wedge_masks((8, 8, 8), np.stack([np.eye(3), rotation_matrix(rng), CYCLIC]), 50.0)
    loss = np.asarray(masked_fourier_mse(target.astype(np.float32), reconstruction.astype(np.float32), masks))
    # by hand: the power of numpy's FFT of the difference where measured, over V^2
    by_hand = [(np.abs(np.fft.fftn(r - t)) ** 2 * m).sum() / 512**2 for t, r, m in zip(target, reconstruction, masks)]
    np.testing.assert_allclose(loss, by_hand, rtol=1e-4)
    np.testing.assert_allclose(masked_fourier_mse_numpy(target, reconstruction, masks), by_hand, rtol=1e-10)
    assert 0.4 < masks.mean() < 0.9  # something is masked
    everything = wedge_masks((8, 8, 8), np.eye(3)[None], 90.0)
    mse = ((reconstruction - target) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(masked_fourier_mse(target, reconstruction, everything)), mse, rtol=1e-4)


def test_identity_rotation_gives_the_tomogram_frame_wedge_of_the_simulation():
    for shape in ((16, 16, 16), (8, 12, 16)):
        plain = wedge_masks(shape, None, 60.0)[0]
        assert np.array_equal(wedge_masks(shape, np.eye(3)[None], 60.0)[0], plain)
        # the simulation's own wedge (rfft half-spectrum) is the same region
        assert np.array_equal(plain[..., : shape[2] // 2 + 1], simulated_wedge_mask(shape, 10.0, 60.0))


def test_the_mask_follows_the_pose_rotation_of_the_resampled_volume():
    """A tomogram-frame volume with a missing wedge, resampled at t = R o as pose normalization does,
    has no power outside wedge_masks(R) (and has some outside the mask of R's inverse)."""
    rng = np.random.default_rng(1)
    n = 16
    measured = simulated_wedge_mask((n,) * 3, 10.0, 60.0)
    tomogram_frame = np.fft.irfftn(np.fft.rfftn(rng.normal(size=(n,) * 3)) * measured, s=(n,) * 3, axes=(0, 1, 2))
    centre = np.full(3, (n - 1) / 2)
    posed = ndimage.affine_transform(tomogram_frame, CYCLIC, offset=centre - CYCLIC @ centre, order=1, mode="grid-wrap")
    power = np.abs(np.fft.fftn(posed)) ** 2
    right, wrong = wedge_masks((n,) * 3, CYCLIC[None], 60.0)[0], wedge_masks((n,) * 3, CYCLIC.T[None], 60.0)[0]
    assert power[right == 0].sum() < 1e-20 * power.sum()
    assert power[wrong == 0].sum() > 0.1 * power.sum()


def test_views_are_proper_rotations_that_keep_shape_and_dtype():
    assert all(np.linalg.det(flip_matrix(f)) == 1 for f in PROPER_FLIPS)
    assert len({tuple(f) for f in PROPER_FLIPS}) == 4
    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(5, 16, 16, 16)).astype(np.float32)
    flips, shifts = augment.draw_views(augment.batch_rng(0, 0, 0), 5, (16, 16, 16))
    view = augment.geometric_view(volumes, flips, shifts)
    assert view.shape == volumes.shape and view.dtype == np.float32
    assert np.abs(shifts).max() <= 1
    back = [apply_flip(np.roll(v, tuple(-s), axis=(0, 1, 2)), f) for v, f, s in zip(view, flips, shifts)]
    np.testing.assert_array_equal(np.stack(back), volumes)  # a flip about the centre undone by itself
    again = augment.draw_views(augment.batch_rng(0, 0, 0), 5, (16, 16, 16))
    assert np.array_equal(again[0], flips) and np.array_equal(again[1], shifts)  # same (seed, epoch, batch), same views
    assert augment.noisy(augment.batch_rng(0, 0, 0), volumes).dtype == np.float32


def test_a_flip_turns_the_wedge_mask_with_it():
    """The flipped box's spectrum is the original's at F k: wedge_masks(R @ F) describes it.
    (An odd edge: an even one has a Nyquist plane, where -k is not on the grid.)"""
    rng = np.random.default_rng(2)
    rotation = rotation_matrix(rng)
    for signs in PROPER_FLIPS:
        mask = wedge_masks((9, 9, 9), (rotation @ flip_matrix(signs))[None], 60.0)[0]
        flipped_mask = np.roll(apply_flip(wedge_masks((9, 9, 9), rotation[None], 60.0)[0], signs),
                               tuple(1 if s < 0 else 0 for s in signs), axis=(0, 1, 2))  # k -> -k on the flipped axes
        assert np.array_equal(mask, flipped_mask)


def test_self_label_round_gives_labels_of_the_right_shape_deterministically():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(loc=c, size=(20, 4)) for c in (0, 5, 10)])
    first, second = pseudo_labels(codes, 3, seed=4), pseudo_labels(codes, 3, seed=4)
    assert first.shape == (60,) and first.dtype == np.int32 and np.array_equal(first, second)
    assert sorted(set(first.tolist())) == [0, 1, 2]
    assert [len(set(first[i : i + 20].tolist())) for i in (0, 20, 40)] == [1, 1, 1]  # the three groups found
    assert round_epochs(30, 3) == [8, 15, 22] and round_epochs(1, 3) == [] and round_epochs(10, 0) == []


def small_volumes(n=24, edge=16, seed=0):
    vs = make_subvolume_dict(n=n, edge=edge, seed=seed)["vs"]
    return np.stack([v["v"] for v in vs.values()])


@pytest.mark.parametrize("fields", [{"loss": "wedge"}, {"augment": True}, {"self_label": 1, "self_label_k": 3},
                                    {"loss": "wedge", "augment": True, "self_label": 1, "self_label_k": 3}])
def test_each_candidate_trains_end_to_end(tmp_path, fields):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rotations = np.stack([rotation_matrix(rng) for _ in range(24)])
    models, info = train_autoencoder(small_volumes(), str(tmp_path), epochs=2, batch_size=8, verbose=0,
                                     objective=Objective(**fields), rotations=rotations)
    assert info["objective"] == Objective(**fields).to_dict() and info["epochs_total"] == 2
    assert all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in info["history"])
    assert models[1].predict(small_volumes()[:4, ..., None], verbose=0).shape == (4, 32)
    assert (tmp_path / LABELS_FILE).is_file() == bool(fields.get("self_label"))


def test_self_labels_are_restored_when_training_resumes(tmp_path, monkeypatch):
    volumes = small_volumes()
    objective = Objective(self_label=1, self_label_k=3)
    keras.utils.set_random_seed(0)
    _, whole = train_autoencoder(volumes, str(tmp_path / "whole"), epochs=4, batch_size=8, verbose=0, seed=0, objective=objective)
    from autoencoder3d.network.train import ResumableCheckpoint

    original = ResumableCheckpoint.on_epoch_end

    def killed_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 2:  # after the round of epoch index 2 (round_epochs(4, 1) == [2])
            raise KeyboardInterrupt

    keras.utils.set_random_seed(0)
    monkeypatch.setattr(ResumableCheckpoint, "on_epoch_end", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(volumes, str(tmp_path / "killed"), epochs=4, batch_size=8, verbose=0, seed=0, objective=objective)
    monkeypatch.setattr(ResumableCheckpoint, "on_epoch_end", original)
    seen = []
    restore = SelfLabelRounds._restore
    monkeypatch.setattr(SelfLabelRounds, "_restore", lambda self: (restore(self), seen.append(self.batches.labels.copy())))
    _, resumed = train_autoencoder(volumes, str(tmp_path / "killed"), epochs=4, batch_size=8, verbose=0, seed=0, objective=objective)
    labels = np.load(tmp_path / "whole" / LABELS_FILE)["labels"]
    assert resumed["resumed_from_epoch"] == 3 and np.array_equal(seen[0][: len(labels)], labels)
    assert resumed["history"][-1]["loss"] == pytest.approx(whole["history"][-1]["loss"], rel=1e-4)


def test_cli_flags_reach_training_and_run_json(tiny_pickle, tmp_path):
    from autoencoder3d.cli.main import main

    out = tmp_path / "run"
    argv = ["train", tiny_pickle, "None", "False", "3", "--out", str(out), "--epochs", "1", "--n-init", "2", "--seed", "1",
            "-q", "--loss", "wedge", "--wedge", "45", "--augment", "--self-label", "1", "--self-label-k", "4"]
    assert main(argv) == 0
    record = json.load(open(out / "run.json"))
    wanted = {"loss": "wedge", "wedge": 45.0, "augment": True, "self_label": 1, "self_label_k": 4}
    assert {k: record["options"][k] for k in wanted} == wanted
    assert record["training"]["objective"] == wanted
    assert {k: record["fingerprint"]["options"][k] for k in wanted} == wanted
    with pytest.raises(SystemExit) as refused:  # one pseudo-class would teach nothing
        main(["train", tiny_pickle, "None", "False", "3", "--self-label", "1", "--self-label-k", "1", "-q"])
    assert refused.value.code == 2


def test_default_objective_leaves_the_fingerprint_as_before(tmp_path, tiny_pickle):
    options = fingerprint(tiny_pickle, None, False, (16, 16, 16), TrainOptions())["options"]
    assert not {"loss", "wedge", "augment", "self_label", "self_label_k"} & set(options)
    wedge = fingerprint(tiny_pickle, None, False, (16, 16, 16), TrainOptions(loss="wedge"))["options"]
    assert wedge["loss"] == "wedge"


def test_training_batches_turn_the_wedge_with_pose_and_flip():
    """Subvolumes whose power lies in the wedge of their pose rotation R: every training target (flipped by F,
    rolled) has its power inside the batch's mask, the wedge of R @ F."""
    from autoencoder3d.network.objective import ObjectiveBatches

    rng = np.random.default_rng(3)
    n = 9  # odd: no Nyquist plane, where a flip's -k is not on the grid
    rotations = np.stack([rotation_matrix(rng) for _ in range(6)])  # general rotations: flips change their wedge
    masks = wedge_masks((n,) * 3, rotations, 60.0)
    volumes = np.real(np.fft.ifftn(np.fft.fftn(rng.normal(size=(6, n, n, n)), axes=(1, 2, 3)) * masks, axes=(1, 2, 3)))
    volumes = volumes.astype(np.float32)
    batches = ObjectiveBatches(volumes, np.arange(6), 6, Objective(loss="wedge", augment=True), shuffle=True, seed=5,
                               rotations=rotations, views=True)
    (batch,) = batches[0]
    flips, _ = augment.draw_views(augment.batch_rng(5, 0, 0), 6, (n,) * 3)
    assert sum(f.tolist() != [1, 1, 1] for f in flips) >= 3  # most targets are flipped
    power = np.abs(np.fft.fftn(batch["target"][..., 0], axes=(1, 2, 3))) ** 2
    assert power[batch["mask"] == 0].sum() < 1e-8 * power.sum()
    assert batch["view"].shape == batch["view_b"].shape == (6, n, n, n, 1) and batch["mask"].shape == (6, n, n, n)
