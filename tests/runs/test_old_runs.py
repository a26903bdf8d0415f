"""A run folder written by autoencoder3d 0.1.0 (tests/files/run-0.1.0, see PROVENANCE.md) is read, reported, exported and clustered again."""

import json
import os
import shutil
from pathlib import Path

import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.formats.subvolume_pickle import load_pickle
from autoencoder3d.runs.folder import RunFolder

OLD = Path(__file__).resolve().parents[1] / "files" / "run-0.1.0"


@pytest.fixture
def old_run(tmp_path):
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old" / "run"


def test_the_run_folder_reads_its_record_and_clusters(old_run):
    folder = RunFolder(old_run)
    record = folder.finished_record()
    assert record["inputs"]["n_clusters"] == 3 and record["inputs"]["pose"] is False
    assert os.path.isfile(folder.resolve(record["inputs"]["data"]))
    members = folder.members()
    assert sorted(members) == [0, 1, 2]
    assert sum(len(v) for v in members.values()) == record["n_subvolumes"] == 18
    assert {k: len(v) for k, v in members.items()} == {int(k): v for k, v in record["cluster_sizes"].items()}
    assert sorted(folder.centers()) == [0, 1, 2]
    assert folder.centers()[0].shape == (16, 16, 16)
    assert folder.recorded_polarity() == "dark"


def test_report_and_export_of_an_old_run(old_run, capsys):
    assert main(["report", str(old_run), "-q"]) == 0
    page = (old_run / "clus-center" / "index.html").read_text()
    assert all(f'id="cluster-{k}"' in page for k in range(3))
    assert main(["export", str(old_run), "-q"]) == 0
    particles = old_run / "clus-center" / "particles"
    rows = [line for line in (particles / "all.csv").read_text().splitlines()[1:] if line.strip()]
    assert len(rows) == 18
    assert sorted(os.listdir(old_run / "clus-center" / "mrc")) == ["000.mrc", "001.mrc", "002.mrc"]


@pytest.mark.slow
def test_an_old_run_clusters_again_with_its_model(old_run, capsys):
    data = str(old_run.parent / "subvolumes.pickle")
    model_before = (old_run / "model" / "model-encoder.keras").read_bytes()
    assert main(["cluster", data, "2", "--out", str(old_run), "--seed", "0", "-q"]) == 0
    assert (old_run / "model" / "model-encoder.keras").read_bytes() == model_before  # reused, not trained again
    members = load_pickle(str(old_run / "clus-center" / "kmeans.pickle"))
    assert sorted(members) == [0, 1] and sum(len(v) for v in members.values()) == 18
    assert json.loads((old_run / "run.json").read_text())["inputs"]["n_clusters"] == 2


def test_a_store_written_by_0_1_0_opens_with_the_same_subvolumes_and_digest(capsys):
    import numpy as np

    from autoencoder3d.data.open import open_data
    from autoencoder3d.data.store.store import store_digest

    store, pickled = open_data(str(OLD / "store.zarr")), open_data(str(OLD / "subvolumes.pickle"))
    assert list(store.uuids) == list(pickled.uuids)
    np.testing.assert_array_equal(store.volumes[np.arange(len(store))], pickled.volumes)
    # the digest a run fingerprints a store by is what 0.1.0 computed
    assert store_digest(str(OLD / "store.zarr"))["sha256"].startswith("64ffc0207ea2e894")
    assert main(["dataset", "info", str(OLD / "store.zarr")]) == 0
    assert "18 subvolumes of 16x16x16" in capsys.readouterr().out
