"""Entry points of the ``autoencoder3d`` and ``edss3d`` console scripts."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
from collections.abc import Iterable, Sequence

from .. import __version__
from ..errors import InputError, Terminated
from .common import add_quiet, setup_logging
from .quiet import NativeLogFilter

# Subcommands of `autoencoder3d`, in the order `--help` lists them.
AUTOENCODER3D_COMMANDS = ["train", "cluster", "pose", "pick", "extract", "dataset", "export", "simulate", "evaluate", "report"]
# Subcommands of `edss3d` (also reachable as `autoencoder3d edss3d ...`).
EDSS3D_COMMANDS = ["edss3d_train", "edss3d_predict", "edss3d_segment"]


DESCRIPTIONS = {
    "autoencoder3d": "Find the structures in cryo-electron tomograms without labels: train the Autoencoder3D "
    "network on subvolumes, cluster their codes and draw the cluster centres (Zeng et al., JSB 2018). "
    "Start with 'autoencoder3d train DATA TOMOGRAM POSE N_CLUSTERS'.",
    "edss3d": "EDSS3D: train a 3D segmentation network on the clusters you chose from an 'autoencoder3d train' "
    "run, and segment subvolumes or whole tomograms with it.",
}


def _load(name):
    return importlib.import_module(f"autoencoder3d.cli.commands.{name}")


def _add_commands(subparsers, names):
    for name in names:
        module = _load(name)
        doc = (module.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else name
        sub = subparsers.add_parser(
            name.replace("_", "-").removeprefix("edss3d-"),
            help=summary,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(sub)
        add_quiet(sub)  # the same -q/--quiet in every command
        sub.set_defaults(_run=module.main)


def build_parser(prog: str, names: Iterable[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTIONS.get(prog.split()[-1]))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_commands(subparsers, names)
    return parser


def run(prog: str, names: Iterable[str], argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command, and turn known errors into one line."""
    parser = build_parser(prog, names)
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with NativeLogFilter():
            setup_logging(args.quiet)  # inside: messages go to the stderr the filter leaves to Python
            status = args._run(args)
    except InputError as err:
        print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"{prog}: error: not enough memory ({one_line(str(err)) or 'an allocation failed'}); "
              "give smaller inputs or options, or run on a machine with more memory; finished outputs are intact", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"{prog}: error: {err.filename or 'output'}: no space left on device; finished outputs are intact", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); finished outputs and the last resume point are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished outputs are intact, rerun to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return status or 0


def one_line(text: str) -> str:
    """``text`` on one line: a library's message quoted in an error may hold line breaks."""
    return " ".join(text.split())


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated()


def main(argv: Iterable[str] | None = None) -> int:
    """``autoencoder3d`` console script (``autoencoder3d edss3d ...`` is ``edss3d ...``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["edss3d"]:
        return run("autoencoder3d edss3d", EDSS3D_COMMANDS, argv[1:])
    return run("autoencoder3d", AUTOENCODER3D_COMMANDS, argv)


def edss3d_main(argv: Sequence[str] | None = None) -> int:
    """``edss3d`` console script."""
    return run("edss3d", EDSS3D_COMMANDS, argv)
