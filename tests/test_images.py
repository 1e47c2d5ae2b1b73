"""Upstream-identical reading and saving, and folder pairing."""

import numpy as np
import pytest
from PIL import Image

from conftest import write_gray
from stdfusion_tf import images
from stdfusion_tf.errors import InputError


def test_read_gray_is_scipy_misc_flatten_ycbcr(tmp_path):
    """RGB -> YCbCr -> F: float luma of the YCbCr round trip, unrounded."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    got = images.read_gray(tmp_path / "c.png")
    back = np.asarray(Image.fromarray(rgb).convert("YCbCr").convert("RGB"),
                      np.float64)
    luma = back @ np.array([0.299, 0.587, 0.114])
    assert got.dtype == np.float32 and got.shape == (7, 9)
    assert np.abs(got - luma).max() < 1e-3
    assert not np.allclose(got, np.round(got))  # a float, not the Y plane


def test_read_gray_keeps_gray_values(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = write_gray(tmp_path / "g.bmp", gray)
    assert np.array_equal(images.read_gray(path), gray.astype(np.float32))


def test_format_is_sniffed_from_content(upstream):
    # Test_ir/01.bmp is a JPEG stream with a .bmp name.
    assert open(upstream / "Test_ir" / "01.bmp", "rb").read(2) == b"\xff\xd8"
    assert images.read_gray(upstream / "Test_ir" / "01.bmp").shape == (306, 537)


def test_scale_in():
    x = images.scale_in(np.array([0, 127.5, 255], np.float32))
    assert np.allclose(x, [-1, 0, 1])


def test_bytescale_is_scipy_misc_bytescale():
    y = np.array([[-1.0, 0.0], [0.5, 1.0]], np.float32)
    # (y + 1) * 127.5 = [0, 127.5, 191.25, 255]; min-max already 0..255:
    assert images.to_uint8(y).tolist() == [[0, 128], [191, 255]]
    # a narrow range is stretched to the full 0..255
    z = np.array([0.0, 0.1, 0.2], np.float32)
    assert images.to_uint8(z).tolist() == [0, 128, 255]
    # constant image: cscale 0 -> 1, everything maps to 0
    assert images.to_uint8(np.full((2, 2), 0.3, np.float32)).max() == 0


def test_clip_mode_and_whole_image_range():
    z = np.array([-1.2, 0.0, 0.1, 1.3], np.float32)
    assert images.to_uint8(z, "clip").tolist() == [0, 128, 140, 255]
    whole = np.linspace(-0.5, 0.5, 11, dtype=np.float32)
    part = whole[3:7]
    assert np.array_equal(images.to_uint8(part, value_range=(-0.5, 0.5)),
                          images.to_uint8(whole)[3:7])
    with pytest.raises(InputError, match="save_mode"):
        images.to_uint8(z, "round")


def test_merge_color_of_gray_visible_is_gray():
    y = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    ycbcr = np.stack([y, np.full_like(y, 128), np.full_like(y, 128)], -1)
    rgb = images.merge_color(y, ycbcr)
    assert rgb.shape == (5, 5, 3)
    assert np.abs(rgb.astype(int) - y[..., None]).max() <= 1


def test_pairing_by_stem(tmp_path):
    for d, names in (("ir", ["1.bmp", "2.png", "10.bmp", "notes.txt"]),
                     ("vi", ["10.jpg", "1.bmp", "2.bmp"])):
        for n in names:
            (tmp_path / d).mkdir(exist_ok=True)
            (tmp_path / d / n).write_bytes(b"x")
    stems, paths, skipped = images.pair_folders(tmp_path / "ir",
                                                tmp_path / "vi")
    assert stems == ["1", "2", "10"] and not skipped
    assert paths[2][1].endswith("10.jpg")


def test_pairing_errors(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    with pytest.raises(InputError, match="no images in this folder"):
        images.pair_folders(tmp_path / "ir", tmp_path / "vi")
    for n in ("1.bmp", "2.bmp"):
        (tmp_path / "ir" / n).write_bytes(b"x")
    (tmp_path / "vi" / "1.bmp").write_bytes(b"x")
    with pytest.raises(InputError, match=r"2\.bmp: unpaired"):
        images.pair_folders(tmp_path / "ir", tmp_path / "vi")
    stems, _, skipped = images.pair_folders(tmp_path / "ir", tmp_path / "vi",
                                            allow_missing=True)
    assert stems == ["1"] and skipped == ["2"]
    (tmp_path / "ir" / "1.png").write_bytes(b"x")
    with pytest.raises(InputError, match="two images with the stem '1'"):
        images.pair_folders(tmp_path / "ir", tmp_path / "vi")
    with pytest.raises(InputError, match="no such folder"):
        images.pair_folders(tmp_path / "nope", tmp_path / "vi")


def test_wide_to_gray_mappings():
    x = np.arange(1000, 1000 + 4 * 64, 4, dtype=np.uint16).reshape(8, 8)
    g = images.wide_to_gray(x)
    assert g.dtype == np.float32 and g.min() == 0 and g.max() == 255
    assert np.allclose(g, (x - 1000.0) * 255 / (x.max() - 1000.0))
    # a hot and a dead pixel flatten min-max; percentile:P clips them
    y = x.copy()
    y[0, 0], y[7, 7] = 0, 65535
    flat = images.wide_to_gray(y)
    assert np.ptp(flat[1:7]) < 2  # everything else squeezed into 2 levels
    robust = images.wide_to_gray(y, "percentile:2")
    assert robust[0, 0] == 0 and robust[7, 7] == 255
    assert np.ptp(robust[1:7]) > 190
    assert images.wide_to_gray(np.full((3, 3), 7.5, np.float32)).max() == 0
    for bad in ("percentile:60", "percentile", "gamma", "percentile:x"):
        with pytest.raises(InputError, match="--ir_range"):
            images.parse_ir_range(bad)
    with pytest.raises(InputError, match="NaN"):
        images.wide_to_gray(np.array([[np.nan, 1]], np.float32))
