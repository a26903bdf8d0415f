"""Hostile numbers and library messages: refused by the parser or printed as one error line, without running a command."""

import argparse

import numpy as np
import pytest

from autoencoder3d.cli.common import finite_float, non_negative_int, positive_float
from autoencoder3d.cli.main import main
from tests.conftest import write_tomogram


def refused(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("kind,text", [(positive_float, "inf"), (positive_float, "nan"), (finite_float, "-inf"),
                                       (finite_float, "nan"), (non_negative_int, "-1"), (non_negative_int, "1.5")])
def test_argument_types_refuse_what_no_option_can_use(kind, text):
    with pytest.raises(argparse.ArgumentTypeError):
        kind(text)


@pytest.mark.parametrize("args,option", [
    (["extract", "t.mrc", "c.csv", "o.pickle", "--coords-angpix", "inf"], "--coords-angpix"),
    (["export", "run", "--ts-angpix", "inf"], "--ts-angpix"),
    (["train", "d.pickle", "None", "False", "3", "--l1", "-1"], "--l1"),
    (["train", "d.pickle", "None", "False", "3", "--patience", "-1"], "--patience"),
    (["pick", "t.mrc", "o.pickle", "--workers", "0"], "--workers"),
    (["pick", "t.mrc", "o.pickle", "--block", "-5"], "--block"),
    (["pick", "t.mrc", "o.pickle", "--threshold", "nan"], "--threshold"),
    (["report", "run", "--members", "-1"], "--members"),
    (["report", "run", "--map-max-points", "0"], "--map-max-points"),
])
def test_hostile_numbers_are_refused_by_the_parser(capsys, args, option):
    code, err = refused(capsys, *args)
    assert code == 2 and f"argument {option}: expected" in err


def test_a_library_message_with_line_breaks_is_printed_on_one_line(tmp_path, capsys):
    write_tomogram(tmp_path / "t.mrc", np.zeros((20, 20, 20)))
    (tmp_path / "c.star").write_text("data_particles\n\nloop_\n# a comment\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                                     "_rlnCoordinateZ #3\n1 2 3\n")
    assert main([
        "extract", str(tmp_path / "t.mrc"), str(tmp_path / "c.star"), str(tmp_path / "o.pickle"), "--box", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autoencoder3d: error: ") and "c.star" in err


def test_running_out_of_memory_is_one_error_line(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "s"), "--shape", "100000,100000,100000", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not enough memory" in err and "Traceback" not in err
