"""Contrast polarity: one default, one rule for what the data recorded against what was asked."""

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.prep.contrast import DEFAULT_POLARITY, decide_polarity, detect_polarity, polarity_of_skew, recorded_polarity


@pytest.mark.parametrize(("asked", "recorded", "used"), [
    (None, None, DEFAULT_POLARITY),    # nothing asked, nothing recorded: the default
    ("bright", None, "bright"),
    ("auto", None, "auto"),            # detected later from the skew
    (None, "bright", "bright"),        # what the data were made with
    ("auto", "bright", "bright"),      # auto was decided when the data were made
    ("dark", "dark", "dark"),
    (None, "sideways", DEFAULT_POLARITY),  # a damaged record counts as none
])
def test_decide_polarity(asked, recorded, used):
    assert decide_polarity(asked, recorded, "d.pickle") == used


def test_the_other_polarity_than_the_data_were_made_with_is_refused():
    with pytest.raises(InputError, match=r"d.zarr: its subvolumes were made with --polarity bright, not dark"):
        decide_polarity("dark", "bright", "d.zarr")


def test_skew_decides_dark_or_bright():
    rng = np.random.default_rng(0)
    background = rng.normal(size=(20, 8, 8, 8))
    dense = background.copy()
    dense[:, 3:5, 3:5, 3:5] -= 6  # a few very dark voxels: the long tail is on the dark side
    assert detect_polarity(dense)[0] == "dark" and detect_polarity(-dense)[0] == "bright"
    assert polarity_of_skew(0.0) == "dark" and polarity_of_skew(0.1) == "bright"
    assert recorded_polarity("auto") is None and recorded_polarity("bright") == "bright"
