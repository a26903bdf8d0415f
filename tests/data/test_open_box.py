"""Opening DATA whose subvolume edges are no multiples of 4 (another program's pickle): cropped about the centre voxel."""

import logging
import pickle

import numpy as np
import pytest

from autoencoder3d.box import fitting_shape
from autoencoder3d.data.open import open_data
from autoencoder3d.errors import InputError
from tests.conftest import make_subvolume_dict


def write(path, edge, n=6):
    d = make_subvolume_dict(n=n, edge=edge)
    with open(path, "wb") as handle:
        pickle.dump(d, handle, protocol=4)
    return d


def test_the_fitting_shape_is_each_edge_down_to_a_multiple_of_4():
    assert fitting_shape((30, 33, 32)) == (28, 32, 32)
    assert fitting_shape((32, 32, 32)) == (32, 32, 32)
    assert fitting_shape((3, 32, 32)) is None and fitting_shape((32, 32)) is None


@pytest.mark.parametrize("edge,fitted,first", [(30, 28, 1), (33, 32, 0), (31, 28, 1), (6, 4, 1)])
def test_a_pickle_of_other_edges_is_cropped_about_its_centre_voxel_with_one_warning(tmp_path, caplog, edge, fitted, first):
    d = write(tmp_path / f"e{edge}.pickle", edge)
    with caplog.at_level(logging.WARNING):
        subvolumes = open_data(tmp_path / f"e{edge}.pickle")
        again = open_data(tmp_path / f"e{edge}.pickle")
    assert subvolumes.volumes.shape == (6, fitted, fitted, fitted) and subvolumes.v_siz == (fitted,) * 3
    original = d["vs"]["uuid-0002"]["v"]
    np.testing.assert_array_equal(subvolumes.volumes[2], original[first:first + fitted, first:first + fitted, first:first + fitted])
    assert subvolumes.volumes[2][fitted // 2, fitted // 2, fitted // 2] == original[edge // 2, edge // 2, edge // 2]  # the centre stays
    np.testing.assert_array_equal(again.volumes, subvolumes.volumes)
    said = [r.getMessage() for r in caplog.records if "cropped" in r.getMessage()]
    assert len(said) == 1 and f"{edge}x{edge}x{edge} voxels cropped about their centres to {fitted}x{fitted}x{fitted}" in said[0]


def test_a_pickle_that_follows_the_rule_or_is_too_small_is_left_as_it_is(tmp_path):
    d = write(tmp_path / "ok.pickle", 16)
    np.testing.assert_array_equal(open_data(tmp_path / "ok.pickle").volumes[0], d["vs"]["uuid-0000"]["v"])
    write(tmp_path / "tiny.pickle", 3)
    assert open_data(tmp_path / "tiny.pickle").v_siz == (3, 3, 3)  # left for the box rule to refuse


def test_convert_and_train_take_such_a_pickle(tmp_path):
    from autoencoder3d.box import check_subvolume_shape
    from autoencoder3d.data.store.convert import convert_pickle

    write(tmp_path / "e30.pickle", 30)
    convert_pickle(tmp_path / "e30.pickle", tmp_path / "s.zarr")
    assert open_data(tmp_path / "s.zarr").v_siz == (28, 28, 28)
    check_subvolume_shape(tmp_path / "e30.pickle", open_data(tmp_path / "e30.pickle").v_siz)  # no refusal
    with pytest.raises(InputError, match="every edge must be divisible by 4"):
        check_subvolume_shape(tmp_path / "tiny.pickle", (3, 3, 3))
