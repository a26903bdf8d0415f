"""Tomogram names that are not file names: every tomogram still gets its own IMOD model, under a stable name."""

import imodmodel
import numpy as np
import pandas as pd

from autoencoder3d.cli.main import main as cli
from autoencoder3d.data.store.store import store_from_set
from autoencoder3d.export.many import safe_file_name, unique_file_names
from autoencoder3d.volume import SubvolumeSet
from tests.export.test_export_dataset import cluster_run

LONG = "TS_" + "0123456789" * 40  # 403 bytes: more than a file name may have
NAMES = ["a/b", "a_b", "a b", "..", LONG, "tomogramme_é/ü", "A_B"]
PER = 3


def test_safe_file_names_by_hand():
    assert safe_file_name("TS_01") == "TS_01" and safe_file_name("tomogramme_é") == "tomogramme_é"  # kept as they are
    stems = unique_file_names(NAMES)
    assert stems["a_b"] == "a_b" and stems["a/b"].startswith("a_b-") and stems["a b"].startswith("a_b-")
    assert stems[".."].startswith("tomogram-") and stems["tomogramme_é/ü"].startswith("tomogramme_é_ü-")
    assert stems["A_B"].startswith("A_B-")  # "a_b" and "A_B" are one file where case does not count
    assert len({s.casefold() for s in stems.values()}) == len(NAMES)
    assert all(len(s.encode()) + len(".mod") <= 255 and "/" not in s and not s.startswith(".") for s in stems.values())
    assert unique_file_names(NAMES) == stems  # the same names every time
    # a name that is another's cleaned form still gets a file of its own
    tricky = unique_file_names(["a/b", stems["a/b"]])
    assert len(set(tricky.values())) == 2


def test_every_tomogram_gets_its_own_imod_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = len(NAMES) * PER
    names = np.repeat(NAMES, PER).astype(object)
    volumes = rng.normal(0.0, 0.3, (n, 16, 16, 16)).astype(np.float32)
    volumes[::2, 4:12, 4:12, 4:12] -= 2.0
    table = {t: {"name": t, "path": None, "voxel_size": [10.0] * 3, "shape": [40, 40, 40]} for t in NAMES}
    subvolumes = SubvolumeSet(uuids=[f"p{i}" for i in range(n)], volumes=volumes,
                              centers=rng.uniform(8, 32, (n, 3)).round(1), tomograms=names, tomogram_table=table)
    store_from_set(tmp_path / "d.zarr", subvolumes)
    run = cluster_run(tmp_path / "d.zarr", tmp_path / "run", k=2)

    assert cli(["export", str(run), "--format", "imod,csv"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(NAMES)} IMOD files" in out
    folder = run / "clus-center" / "particles" / "all_imod"
    stems = unique_file_names(NAMES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.mod" for s in stems.values())
    table = pd.read_csv(run / "clus-center" / "particles" / "all.csv")
    for name in NAMES:  # each model holds exactly its tomogram's particles
        model = imodmodel.read(folder / f"{stems[name]}.mod")
        mine = table[table["tomogram"] == name]
        assert len(model) == len(mine) == PER
        np.testing.assert_allclose(sorted(model["x"]), sorted(mine["x"] + 0.5), atol=1e-4)
    assert cli(["export", str(run), "--format", "imod"]) == 0  # again: the same files
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.mod" for s in stems.values())
