"""Every writer of a run folder (or of a copick project) is refused, in one line, while another process holds it."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

import autoencoder3d
from autoencoder3d.cli.main import main as cli
from tests.conftest import identity_run
from tests.data.test_dataset_build import project  # noqa: F401 - used by the fixtures imported next
from tests.export.test_export_dataset import copick_project, run, trained  # noqa: F401 - a clustered run on a store

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

HOLDER = """
import sys
from autoencoder3d.util.lock import RunFolderLock

with RunFolderLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextlib.contextmanager
def held(folder):
    """Another process holds ``folder``'s lock (as a running 'autoencoder3d train' does); yields its pid."""
    root = os.path.dirname(os.path.dirname(autoencoder3d.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)


def refused(argv, capsys, pid, what="this run folder"):
    """The command exits 2 with one line naming the holder."""
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"another autoencoder3d process (pid {pid} on " in err and f"is writing {what}" in err
    return err


@pytest.fixture
def seg_run(tmp_path):
    """A run folder with an identity 'autoencoder' and a clustering: enough for edss3d train."""
    data, folder, d = identity_run(tmp_path, n=16, classes=2, seed=1)
    return str(data), folder, list(d["vs"])


def test_edss3d_train_and_predict_wait_for_the_run_folder(seg_run, capsys):
    data, folder, _ = seg_run
    with held(folder) as pid:
        err = refused(["edss3d", "train", data, "--out", str(folder), "--select", "1=0", "--epochs", "1"], capsys, pid)
        assert err.endswith("wait for it to finish")
        refused(["edss3d", "predict", data, "--out", str(folder)], capsys, pid)
    assert not (folder / "model-seg").exists() and not (folder / "prediction").exists()
    # once the holder is gone, the same command runs
    assert cli(["edss3d", "train", data, "--out", str(folder), "--select", "1=0", "--epochs", "1", "--batch-size", "8",
                "--seed", "0", "-q"]) == 0
    assert (folder / "model-seg" / "model-seg.keras").is_file() and not (folder / ".autoencoder3d.lock").exists()


def test_report_and_evaluate_wait_for_the_run_folder(seg_run, tmp_path, capsys):
    data, folder, uuids = seg_run
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"classes": [{"name": "a"}, {"name": "b"}],
                                 "subvolumes": {u: {"class": "ab"[i % 2]} for i, u in enumerate(uuids)}}))
    with held(folder) as pid:
        refused(["report", str(folder)], capsys, pid)
        refused(["evaluate", str(folder), str(truth)], capsys, pid)
        # written elsewhere, the evaluation only reads the run folder
        assert cli(["evaluate", str(folder), str(truth), "--out", str(tmp_path / "elsewhere")]) == 0
    assert not (folder / "clus-center" / "evaluation").exists() and not (folder / "clus-center" / "index.html").exists()
    assert cli(["evaluate", str(folder), str(truth)]) == 0
    assert (folder / "clus-center" / "evaluation" / "evaluation.json").is_file()


def test_export_waits_for_the_run_folder_and_for_the_copick_project(run, tmp_path, capsys):  # noqa: F811 - the fixture
    with held(run) as pid:
        refused(["export", str(run)], capsys, pid)
    assert not (run / "clus-center" / "particles").exists()

    config = copick_project(tmp_path / "project")
    overlay = tmp_path / "project" / "overlay"
    with held(overlay) as pid:
        refused(["export", str(run), "--format", "copick,star", "--copick-config", str(config)], capsys, pid,
                what="this copick project's picks")
    assert not list(overlay.rglob("*.json")) and not (run / "clus-center" / "particles").exists()
    assert cli(["export", str(run), "--format", "copick,star", "--copick-config", str(config)]) == 0
    assert list(overlay.rglob("*.json")) and (run / "clus-center" / "particles" / "all.star").is_file()


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_nothing_outside_changes(tmp_path, kind):
    """A run folder or store received from elsewhere may hold a crafted lock file: the lock overwrote a link's target."""
    from autoencoder3d.errors import InputError
    from autoencoder3d.util.lock import LOCK_NAME, RunFolderLock

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    folder = tmp_path / "run"
    folder.mkdir()
    if kind == "link":
        os.symlink(outside, folder / LOCK_NAME)
    else:
        os.mkfifo(folder / LOCK_NAME)
    with pytest.raises(InputError, match=f"{LOCK_NAME}: (a symbolic link|not a plain file) where the lock file goes"):
        with RunFolderLock(folder):
            pass
    assert outside.read_text() == "keep me\n"
