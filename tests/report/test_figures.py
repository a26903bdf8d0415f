import numpy as np
import png

from autoencoder3d.report.figures import montage, montage_name, montage_uint16, plot_history, write_montages, write_png16


def test_montage_layout_by_hand():
    volume = np.arange(4 * 3 * 5, dtype=float).reshape(4, 3, 5)  # 5 slices -> 3x3 grid of 5x4 cells
    image = montage(volume)
    assert image.shape == (15, 12)
    np.testing.assert_array_equal(image[0:4, 0:3], volume[:, :, 0])
    np.testing.assert_array_equal(image[0:4, 4:7], volume[:, :, 1])
    np.testing.assert_array_equal(image[0:4, 8:11], volume[:, :, 2])
    np.testing.assert_array_equal(image[5:9, 0:3], volume[:, :, 3])
    np.testing.assert_array_equal(image[5:9, 4:7], volume[:, :, 4])
    assert np.isnan(image[4, :]).all() and np.isnan(image[:, 3]).all()  # gaps after each tile
    assert np.isnan(image[5:9, 8:11]).all() and np.isnan(image[10:, :]).all()  # unused cells


def test_published_32_cube_montage_is_198_pixels_with_scaling():
    volume = np.random.default_rng(0).normal(size=(32, 32, 32))
    image = montage_uint16(volume)
    assert image.shape == (198, 198) and image.dtype == np.uint16
    assert image[:32, :32].max() <= 65534
    top = image[:32, :32]
    m = (volume[:, :, 0] - volume.min()) / (volume.max() - volume.min())
    np.testing.assert_array_equal(top, np.ceil(m * 65534).astype(np.uint16))
    assert image.max() == 65534 and (image[32, :] == 0).all() and (image[165:, 66:] == 0).all()


def test_png_is_16_bit_greyscale_and_round_trips(tmp_path):
    image = montage_uint16(np.random.default_rng(1).normal(size=(8, 8, 8)))
    write_png16(tmp_path / "m.png", image)
    width, height, rows, info = png.Reader(filename=str(tmp_path / "m.png")).read()
    assert info["bitdepth"] == 16 and info["greyscale"] and (width, height) == (27, 27)
    np.testing.assert_array_equal(np.array(list(rows)), image)


def test_names_and_fig_folder_is_replaced(tmp_path):
    assert montage_name(35, 47) == "035--47.png"
    fig = tmp_path / "fig"
    fig.mkdir()
    (fig / "stale.png").write_bytes(b"old")
    names = write_montages(str(fig), np.zeros((2, 4, 4, 4)), {0: 3, 1: 12})
    assert names == ["000--3.png", "001--12.png"]
    assert sorted(p.name for p in fig.iterdir()) == names


def test_loss_curve_png(tmp_path):
    plot_history(tmp_path / "loss.png", [{"epoch": 1, "loss": 1.0, "val_loss": 1.1}, {"epoch": 2, "loss": 0.5, "val_loss": 0.7}])
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
