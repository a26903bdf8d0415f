"""copick is an extra: without it, a copick project is refused in one line that names the extra."""

import sys

import pytest

from autoencoder3d.cli.main import main
from autoencoder3d.data.sources.copick import import_copick, open_project
from autoencoder3d.errors import InputError


@pytest.fixture
def no_copick(monkeypatch):
    monkeypatch.setitem(sys.modules, "copick", None)  # import copick raises ImportError


def test_missing_copick_names_the_extra(no_copick, tmp_path):
    with pytest.raises(InputError, match=r'autoencoder3d\[copick\]'):
        import_copick()
    config = tmp_path / "config.json"
    config.write_text("{}")
    with pytest.raises(InputError, match="copick extra"):
        open_project(config)


def test_dataset_build_from_copick_without_copick_is_one_line(no_copick, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text("{}")
    copick_options = ["--object", "ribosome", "--user", "me", "--voxel-spacing", "10", "--tomo-type", "wbp"]
    status = main(["dataset", "build", str(tmp_path / "out.zarr"), "--copick", str(config), *copick_options, "--box", "16"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "autoencoder3d[copick]" in err, err
    assert not (tmp_path / "out.zarr").exists()
