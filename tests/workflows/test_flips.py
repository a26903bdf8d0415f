"""A clustering under --flips match, through the real pipeline with an untrained encoder: what it writes and what the report reads."""

import json

import numpy as np
import pytest

from autoencoder3d.prep.flips import PROPER_FLIPS, apply_flip
from autoencoder3d.runs.folder import RunFolder
from autoencoder3d.volume import SubvolumeSet
from tests.conftest import CountingReads

pytestmark = pytest.mark.slow  # builds and runs a network


def flipped_set(n=24, side=8, seed=0):
    rng = np.random.default_rng(seed)
    template = np.zeros((side,) * 3, np.float32)
    template[1:4, 1:5, 1:3] = 2.0
    template[6, 5, 6] = 3.0
    volumes = np.stack([apply_flip(template, PROPER_FLIPS[i % 4]) + rng.normal(0, 0.2, template.shape) for i in range(n)])
    return SubvolumeSet(uuids=[f"s{i}" for i in range(n)], volumes=volumes.astype(np.float32), centers=np.zeros((n, 3)))


def test_match_writes_the_flips_and_the_report_turns_members_into_their_centres_frame(tmp_path):
    import keras

    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.report.page import read_encodings, read_run
    from autoencoder3d.workflows.train import cluster_and_write

    keras.utils.set_random_seed(0)
    subvolumes = flipped_set()
    _, encoder, decoder, _ = build_autoencoder(subvolumes.v_siz, encoding_dim=8)
    comparison = {}
    clustering, codes = cluster_and_write(subvolumes, encoder, decoder, 3, str(tmp_path), n_init=2, seed=0, batch_size=8,
                                          comparison=comparison, flips="match")
    assert clustering.method == "flip-aware" and codes.shape == (24, 8)
    assert comparison["flips"]["mode"] == "match" and sum(comparison["flips"]["matched"]) == 24
    assert comparison["baseline"]["flips"] == "match"
    uuids, saved, labels, matched, _ = read_encodings(RunFolder(tmp_path).clus_dir)
    assert np.allclose(saved, codes, atol=1e-6) and np.array_equal(labels, clustering.labels) and matched.shape == (24,)
    record = {"command": "train", "inputs": {"data": "none", "tomogram": None, "pose": False, "n_clusters": 3},
              "v_siz": list(subvolumes.v_siz), "voxel_size": None}
    (tmp_path / "run.json").write_text(json.dumps(record))
    run = read_run(str(tmp_path))
    assert run.flips == dict(zip(uuids, matched.tolist()))
    # one structure cut in three: each cluster's matched codes lie apart (plain k-means of them finds the three
    # again every time), but the run's flip-aware k-means, rerun, cuts it elsewhere; the report shows the latter
    from autoencoder3d.clustering.stability import cluster_stability
    from autoencoder3d.network.train import encode
    from autoencoder3d.report.measures import cluster_measures

    flipped_codes = encode(encoder, subvolumes.volumes, 8, flips=PROPER_FLIPS)
    assert cluster_stability(saved, labels, seed=0) == {0: 1.0, 1: 1.0, 2: 1.0}
    rerun = cluster_stability(flipped_codes, labels, "match", seed=0)
    assert run.stability == rerun and max(rerun.values()) < 0.8
    assert {k: m.stability for k, m in cluster_measures(run, None).items()} == rerun
    from autoencoder3d.report.page import _member_volumes

    picks = {0: [(uuids[5], 0)]}
    shown = _member_volumes(run, picks, subvolumes)[0][0][2]
    assert np.array_equal(shown, apply_flip(subvolumes.volumes[5], PROPER_FLIPS[matched[5]]))


def test_off_writes_no_flips_and_clusters_the_codes_as_they_are(tmp_path):
    import keras

    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import encode
    from autoencoder3d.report.page import read_encodings
    from autoencoder3d.workflows.train import cluster_and_write

    keras.utils.set_random_seed(0)
    subvolumes = flipped_set()
    _, encoder, decoder, _ = build_autoencoder(subvolumes.v_siz, encoding_dim=8)
    comparison = {}
    _, codes = cluster_and_write(subvolumes, encoder, decoder, 3, str(tmp_path), n_init=2, seed=0, batch_size=8, comparison=comparison)
    assert "flips" not in comparison and comparison["baseline"]["flips"] == "off"
    assert np.allclose(codes, encode(encoder, subvolumes.volumes, 8), atol=1e-6)
    _, saved, labels, matched, stability = read_encodings(RunFolder(tmp_path).clus_dir)
    assert matched is None
    from autoencoder3d.clustering.stability import cluster_stability

    assert stability == cluster_stability(saved, labels, seed=0)  # plain k-means reruns of the codes it saved, as the run clustered them


def test_average_reads_each_subvolume_once_and_averages_the_codes_of_each_flipped_view(tmp_path):
    import keras

    from autoencoder3d.network.model import build_autoencoder
    from autoencoder3d.network.train import encode
    from autoencoder3d.prep.flips import flipped_views
    from autoencoder3d.workflows.train import cluster_and_write

    keras.utils.set_random_seed(0)
    subvolumes = flipped_set()
    counted = CountingReads(subvolumes.volumes)
    on_disk = SubvolumeSet(uuids=subvolumes.uuids, volumes=counted, centers=subvolumes.centers)
    _, encoder, decoder, _ = build_autoencoder(subvolumes.v_siz, encoding_dim=8)
    _, codes = cluster_and_write(on_disk, encoder, decoder, 3, str(tmp_path), n_init=2, seed=0, batch_size=8, baseline=False,
                                 flips="average")
    np.testing.assert_array_equal(counted.reads, np.ones(len(subvolumes)))  # once, not once per flip
    each_view = np.stack([encode(encoder, view, 8) for view in flipped_views(subvolumes.volumes)])
    np.testing.assert_array_equal(codes, each_view.astype(np.float64).mean(axis=0))
