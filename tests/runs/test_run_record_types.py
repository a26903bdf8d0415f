"""A run.json or ccents.pickle whose parts have other types than the commands write: one error naming the part."""

import json

import numpy as np
import pytest

from autoencoder3d.errors import InputError
from autoencoder3d.formats.subvolume_pickle import save_pickle
from autoencoder3d.runs.folder import RunFolder


@pytest.mark.parametrize("record,part", [
    ({"inputs": "oops"}, "'inputs' is 'oops', not a JSON object"),
    ({"inputs": {"data": 12}}, "'inputs.data' is 12, not a path"),
    ({"inputs": {"data": "d.pickle", "tomogram": ["t.mrc"]}}, "'inputs.tomogram' is ['t.mrc'], not a path"),
    ({"options": [1, 2]}, "'options' is [1, 2], not a JSON object"),
    ({"v_siz": "16"}, "'v_siz' is '16', not a list of numbers"),
    ({"voxel_size": [10, "a", 10]}, "'voxel_size' is [10, 'a', 10], not a list of numbers"),
])
def test_a_run_record_with_parts_of_other_types_is_refused(tmp_path, record, part):
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="run.json: " + part.replace("[", r"\[").replace("]", r"\]")):
        RunFolder(tmp_path).record()


def test_a_run_record_as_written_is_read(tmp_path):
    record = {"inputs": {"data": "d.pickle", "tomogram": None, "pose": False}, "options": {}, "v_siz": [16, 16, 16],
              "voxel_size": [10.0, 10.0, 10.0], "merge": None}
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert RunFolder(tmp_path).record() == record


@pytest.mark.parametrize("centre", ["abc", np.zeros((4, 4)), None])
def test_a_centre_that_is_not_a_volume_is_refused(tmp_path, centre):
    save_pickle(tmp_path / "clus-center" / "ccents.pickle", {0: np.zeros((4, 4, 4)), 1: centre})
    with pytest.raises(InputError, match="ccents.pickle: the centre of cluster 1 is .*, not a volume"):
        RunFolder(tmp_path).centers()
