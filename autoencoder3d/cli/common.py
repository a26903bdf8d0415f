"""Argument types and options shared by several commands."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from ..prep.contrast import DEFAULT_POLARITY, POLARITIES

TRUE_WORDS = {"true", "yes", "1", "y", "t", "on"}
FALSE_WORDS = {"false", "no", "0", "n", "f", "off"}


def boolean(text: str) -> bool:
    """True/False, yes/no, 1/0 in any case; never evaluated as code."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False (or yes/no, 1/0), got {text!r}")


def positive_int(text: str) -> int:
    return _int_from(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_from(text, 0, "an integer >= 0")


def _int_from(text, smallest, expected):
    try:
        value = int(text)
    except ValueError:
        value = smallest - 1
    if value < smallest or str(value) != str(text).strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _float_where(text, accept, expected):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def fraction(text: str) -> float:
    return _float_where(text, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def finite_float(text: str) -> float:
    return _float_where(text, math.isfinite, "a number")


def positive_float(text: str) -> float:
    return _float_where(text, lambda v: 0 < v < float("inf"), "a positive number")


def non_negative_float(text: str) -> float:
    return _float_where(text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2**32 - 1 (what NumPy and TensorFlow accept)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {2**32 - 1}, got {text!r}")
    return value


def optional_path(text: str) -> str | None:
    """A path, or None for the word None (the published way to give no tomogram)."""
    return None if text.strip().lower() in ("none", "") else text


def add_seed(parser: argparse.ArgumentParser, *, default: int | None = None, recorded_in: str = "run.json", purpose: str | None = None) -> None:
    """``--seed``: the same seed gives the same results on the same machine."""
    if default is None:
        text = f"random seed: same seed, same results on the same machine (default: random, recorded in {recorded_in})"
    else:
        text = f"random seed {purpose or 'of the random draws'} (default {default})"
    parser.add_argument("--seed", type=seed, default=default, help=text)


def add_out(parser: argparse.ArgumentParser, *, metavar: str = "RUN_DIR", default: str | None = ".", help: str | None = None) -> None:
    """``--out``: the metavar names what it is (a run folder, a file, a page) in every command's help."""
    text = help or "run folder for model/, clus-center/ and run.json (default: the current folder, as published)"
    parser.add_argument("--out", metavar=metavar, default=default, help=text)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``, the same in every command (added to each one by cli/main.py)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings, errors and the final result line; no progress bars")


def add_polarity(parser: argparse.ArgumentParser, recorded: bool = False) -> None:
    """``--polarity``; ``recorded``: left out, it is what the run or data set recorded (else dark)."""
    default = "as the run's model or the data (a store, or a pickle from pose or pick) recorded it, else " + DEFAULT_POLARITY if recorded else DEFAULT_POLARITY
    parser.add_argument(
        "--polarity", choices=[*POLARITIES, "auto"], default=None if recorded else DEFAULT_POLARITY,
        help="contrast of dense matter in the tomogram: dark (IMOD's default, as published), bright (inverted "
             f"pipelines), or auto (decided from the skew of the intensities; recorded in run.json) (default: {default})",
    )


def add_clustering_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-init", type=positive_int, default=100, help="k-means restarts (default 100, as published)")
    parser.add_argument(
        "--kmeans", choices=["auto", "full", "minibatch"], default="auto",
        help="k-means algorithm: full (scikit-learn KMeans, as published), minibatch (MiniBatchKMeans, for hundreds of "
             "thousands of subvolumes) or auto (minibatch above 100,000 subvolumes or 4 million subvolumes x clusters) "
             "(default auto)",
    )
    parser.add_argument(
        "--flips", choices=["off", "average", "match"], default="off",
        help="how clustering treats the four proper sign flips that pose normalization leaves open (a structure turned 180 "
             "degrees about x, y or z): off (the codes as they are, as published), average (each subvolume's codes averaged "
             "over its four flips) or match (each subvolume joins the centre it matches best in any of its flips, and centres "
             "average their members in the matched flips); the PCA baseline is clustered the same way (default off)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size for training and encoding (default 128)")
    parser.add_argument("--smooth-sigma", type=non_negative_float, default=None,
                        help="Gaussian smoothing of the tomogram for pose normalization, in voxels (default: as the run's model "
                             "recorded it, else 2.0)")
    parser.add_argument("--workers", type=positive_int, default=None, help="threads for pose normalization (default: all cores)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the PCA baseline (k-means with the same k and seed on a PCA of the same subvolumes, "
                             "compared with the autoencoder's clusters in run.json and the report)")


def setup_logging(quiet: bool = False) -> None:
    """Messages go to stderr as 'autoencoder3d: ...'."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("autoencoder3d: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
