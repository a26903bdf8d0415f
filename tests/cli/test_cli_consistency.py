"""One command line: the same options everywhere, help that tells the truth, progress where it can be seen."""

import fcntl
import glob
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from autoencoder3d.cli.main import AUTOENCODER3D_COMMANDS, EDSS3D_COMMANDS, build_parser, main
from tests.conftest import write_tomogram

pytestmark = pytest.mark.slow  # trains a network or runs whole commands

ALL_COMMANDS = [("autoencoder3d", name) for name in AUTOENCODER3D_COMMANDS] + [("edss3d", name) for name in EDSS3D_COMMANDS]


def subparser(prog, name):
    parser = build_parser(prog, AUTOENCODER3D_COMMANDS if prog == "autoencoder3d" else EDSS3D_COMMANDS)
    choices = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    return parser, choices[name.replace("_", "-").removeprefix("edss3d-")]


def minimal_args(sub):
    """Arguments that parse: each positional, and the first option of each required group; per job for nested jobs."""
    nested = next((a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"), None)
    if nested is not None:
        return [[job, *args] for job, parser in nested.choices.items() for args in minimal_args(parser)]
    args = ["1" for action in sub._actions if not action.option_strings]
    for group in sub._mutually_exclusive_groups:
        if group.required:
            args += [group._group_actions[0].option_strings[-1], "1"]
    return [args]


@pytest.mark.parametrize("prog,name", ALL_COMMANDS)
def test_every_command_accepts_q(prog, name):
    parser, sub = subparser(prog, name)
    command = name.replace("_", "-").removeprefix("edss3d-")
    for positionals in minimal_args(sub):
        for flag in ("-q", "--quiet"):
            args = parser.parse_args([command, *positionals, flag])
            assert args.quiet is True
        assert parser.parse_args([command, *positionals]).quiet is False


@pytest.mark.parametrize("prog,name", ALL_COMMANDS)
def test_metavars_are_upper_case_and_outputs_named(prog, name):
    _, sub = subparser(prog, name)
    for action in sub._actions:
        if action.metavar and not action.option_strings:
            assert re.fullmatch(r"[\[\] A-Z0-9_.]*[A-Z][\[\] A-Za-z0-9_.]*", action.metavar), (name, action.metavar)
        if "--out" in action.option_strings:
            assert action.metavar in ("RUN_DIR", "SEG.mrc", "PAGE.html", "DIR"), (name, action.metavar)


def test_help_says_seed_is_recorded_where_it_is():
    _, sub = subparser("edss3d", "edss3d_train")
    assert "model-seg/seg.json" in sub.format_help() and "run.json" not in sub.format_help().split("--seed")[1].split("--")[0]


def test_export_help_says_how_copick_picks_are_written():
    _, sub = subparser("autoencoder3d", "export")
    text = sub.format_help()
    assert all(option in text for option in ("--copick-config", "--copick-user", "--copick-session", "cluster-NNN"))


def test_cluster_takes_the_published_positional_form():
    _, sub = subparser("autoencoder3d", "cluster")
    args = sub.parse_args(["d.pickle", "tomo.rec", "True", "7"])
    assert (args.data, args.n_clusters, args.positional_tomogram, args.positional_pose) == ("d.pickle", 7, "tomo.rec", True)
    args = sub.parse_args(["d.pickle", "5", "--tomogram", "t.rec", "--pose"])
    assert (args.n_clusters, args.tomogram, args.pose) == (5, "t.rec", True)
    with pytest.raises(SystemExit):
        sub.parse_args(["d.pickle", "tomo.rec", "7"])


# ---------------------------------------------------------------- help versus what a tiny run writes


def promised_outputs(help_text):
    """The paths a command's help lists under 'Writes...:' (two-space indented, first word)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Writes"))
    paths = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if line.startswith("  ") and not line.startswith("   "):
            paths.append(line.split()[0])
    return lines[start], paths


def as_glob(path, names):
    for placeholder, value in names.items():
        path = path.replace(placeholder, value)
    return path.replace("NNN", "[0-9][0-9][0-9]").replace("SIZE", "*")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Every command run once on a tiny simulated tomogram; returns command -> (base folder, names)."""
    root = tmp_path_factory.mktemp("consistency")
    sim, run = root / "sim", root / "run"
    data, tomo = sim / "subvolumes_example_1.pickle", sim / "tomogram.rec"
    fast = ["--epochs", "1", "--n-init", "2", "--seed", "1", "--batch-size", "8", "-q"]
    runs = [
        ("simulate", [sim, "--shape", "64x64x48", "--voxel-size", "20", "--box", "16", "--copies", "2",
                      "--example-2-copies", "2", "--density", "-q"], {"OUT_DIR": str(sim)}),
        ("pick", [tomo, root / "picks.pickle", "--sigma1", "2", "--box", "16", "-q"], {"OUT": str(root / "picks")}),
        ("extract", [tomo, root / "picks.csv", root / "cut.pickle", "--box", "16", "-q"], {"OUT": str(root / "cut")}),
        ("pose", [data, tomo, root / "posed.pickle", "-q"], {"OUT": str(root / "posed")}),
        ("train", [data, tomo, "True", 2, "--out", run, *fast], {"RUN_DIR": str(run)}),
        ("cluster", [data, tomo, "True", 3, "--out", run, "--n-init", "2", "--seed", "1", "-q"], {"RUN_DIR": str(run)}),
        ("report", [run, "--no-tsne", "-q"], {"RUN_DIR": str(run)}),
        ("export", [run, "-q"], {"RUN_DIR": str(run)}),
        ("dataset", ["build", root / "ds.zarr", "--pick", tomo, "--sigma1", "2", "--box", "16", "-q"], {"OUT": str(root / "ds")}),
        ("evaluate", [run, sim / "truth.json", "--baseline", "-q"], {"DIR": str(run / "clus-center" / "evaluation")}),
        ("edss3d_train", [data, "--out", run, "--select", "1=0", "--iso=-1e9", "--epochs", "1", "--batch-size", "8",
                          "--seed", "1", "-q"], {"RUN_DIR": str(run)}),
        ("edss3d_predict", [data, "--out", run, "-q"], {"RUN_DIR": str(run)}),
        ("edss3d_segment", [tomo, "--model", run / "model-seg" / "model-seg.keras", "--out", root / "seg.mrc",
                            "--probabilities", "-q"], {"SEG": str(root / "seg")}),
    ]
    done = {}
    for name, args, names in runs:
        argv = (["edss3d", name.removeprefix("edss3d_")] if name.startswith("edss3d") else [name]) + [str(a) for a in args]
        assert main(argv) == 0, argv
        done[name] = names
    return done


@pytest.mark.parametrize("prog,name", ALL_COMMANDS)
def test_every_output_the_help_promises_is_written(prog, name, tiny_runs):
    _, sub = subparser(prog, name)
    heading, paths = promised_outputs(sub.format_help())
    assert paths, heading
    names = tiny_runs[name]
    base = ""
    where = re.search(r"in (--out )?(\S+?)( \(.*\))?:$", heading)
    if where:
        base = as_glob(where.group(2), names)
    for path in paths:
        pattern = os.path.join(base, as_glob(path, names)) if base else as_glob(path, names)
        assert glob.glob(pattern), f"{name} --help promises {path}, but the run wrote no {pattern}"


# ---------------------------------------------------------------- progress bars on terminals only


def _planted_tomogram(path):
    rng = np.random.default_rng(0)
    volume = rng.normal(scale=0.2, size=(48, 48, 48)).astype(np.float32)
    for centre in ((12, 12, 12), (30, 20, 24), (20, 34, 30)):
        x, y, z = centre
        volume[x - 2:x + 3, y - 2:y + 3, z - 2:z + 3] -= 3
    return write_tomogram(path, volume)


def _pick_output(tmp_path, terminal, quiet=False, size=True):
    tomo = _planted_tomogram(tmp_path / "tomo.mrc")
    command = [sys.executable, "-m", "autoencoder3d", "pick", tomo, str(tmp_path / "p.pickle"), "--sigma1", "2",
               "--box", "8", "--block", "16", "--workers", "1"] + (["-q"] if quiet else [])
    env = {**os.environ, "COLUMNS": "100"}
    if not terminal:
        result = subprocess.run(command, capture_output=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        return result.stderr.decode()
    leader, follower = pty.openpty()
    if size:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("size", [True, False])
def test_pick_shows_its_progress_bar_on_a_terminal(tmp_path, size):
    shown = _pick_output(tmp_path, terminal=True, size=size)  # a terminal that reports no size gets a bar too
    assert "DoG blocks" in shown and "100%" in shown and "block/s" in shown, shown


def test_no_progress_bar_in_a_pipe_or_with_q(tmp_path):
    assert "DoG blocks" not in _pick_output(tmp_path, terminal=False)
    assert "DoG blocks" not in _pick_output(tmp_path, terminal=True, quiet=True)
