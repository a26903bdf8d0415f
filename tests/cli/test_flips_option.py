"""--flips on train and cluster: parsed into the options, kept out of the model's fingerprint, bad values refused."""

import pytest

from autoencoder3d.cli.commands.train import options_from_args
from autoencoder3d.cli.main import AUTOENCODER3D_COMMANDS, build_parser
from autoencoder3d.runs.fingerprint import NOT_MODEL_OPTIONS


def parse(*argv):
    return build_parser("autoencoder3d", AUTOENCODER3D_COMMANDS).parse_args(list(argv))


@pytest.mark.parametrize("argv", [("train", "d.pickle", "None", "False", "3"), ("cluster", "d.pickle", "3", "--out", "run")])
def test_flips_reach_the_options_and_default_to_off(argv):
    assert options_from_args(parse(*argv)).flips == "off"
    for mode in ("average", "match"):
        assert options_from_args(parse(*argv, "--flips", mode)).flips == mode
    assert "flips" in NOT_MODEL_OPTIONS  # changing it reclusters with the same model


def test_an_unknown_flip_mode_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        parse("cluster", "d.pickle", "3", "--out", "run", "--flips", "all")
    assert stop.value.code == 2 and "--flips: invalid choice: 'all'" in capsys.readouterr().err
