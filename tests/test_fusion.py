"""Fusing folders: 16-bit / float infrared, memory budgets and tiles."""

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_cli, write_gray
from stdfusion_tf import evaluation, fusion, images
from stdfusion_tf.errors import InputError


def _fuse(cwd, ir, vi, out, weights, *flags):
    return run_cli(ROOT / "test.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--output_dir", out, "--checkpoint", weights, *flags,
                   cwd=cwd)


# ---------------------------------------------------- 16-bit / float IR --

def _ir16(tmp_path, stems=("1", "2")):
    """16-bit infrared images v * 257 beside the 8-bit v (full 0..255):
    minmax maps them back to exactly v."""
    rng = np.random.default_rng(11)
    for stem in stems:
        v8 = rng.integers(0, 256, (34, 27)).astype(np.uint8)
        v8.flat[:2] = 0, 255
        write_gray(tmp_path / "ir8" / f"{stem}.png", v8)
        (tmp_path / "ir16").mkdir(exist_ok=True)
        Image.fromarray(v8.astype(np.uint16) * 257).save(
            tmp_path / "ir16" / f"{stem}.png")
        (tmp_path / "irf").mkdir(exist_ok=True)
        Image.fromarray(v8.astype(np.float32) / 255 * 40 - 10, "F").save(
            tmp_path / "irf" / f"{stem}.tif")
        write_gray(tmp_path / "vis" / f"{stem}.png",
                   rng.integers(0, 256, (34, 27)))
    assert Image.open(tmp_path / "ir16" / "1.png").mode.startswith("I")
    assert Image.open(tmp_path / "irf" / "1.tif").mode == "F"
    return tmp_path


def test_fuse_16bit_and_float_infrared(tmp_path, jiayi_weights):
    d = _ir16(tmp_path)
    outs = {}
    for kind in ("ir8", "ir16"):
        proc = _fuse(d, d / kind, d / "vis", d / f"out_{kind}", jiayi_weights,
                     "--save_mode", "clip")
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout  # plain progress in a pipe
        outs[kind] = [np.asarray(Image.open(d / f"out_{kind}" / f"{s}.bmp"))
                      for s in ("1", "2")]
    for a, b in zip(*outs.values()):
        assert np.array_equal(a, b)  # v * 257 min-max maps back to v exactly
    # float TIFF (v / 255 * 40 - 10, any range): what the network is fed
    for stem in ("1", "2"):
        ir8, _ = fusion.load_pair(d / "ir8" / f"{stem}.png",
                                  d / "vis" / f"{stem}.png")
        irf, _ = fusion.load_pair(d / "irf" / f"{stem}.tif",
                                  d / "vis" / f"{stem}.png")
        assert np.abs(irf - ir8).max() < 1e-5
    proc = _fuse(d, d / "ir16", d / "vis", d / "q", jiayi_weights,
                 "--ir_range", "percentile:70")
    assert_one_line_error(proc, "--ir_range")
    # 16-bit visible images are refused (the mapping is for infrared)
    proc = _fuse(d, d / "vis", d / "ir16", d / "r", jiayi_weights)
    assert_one_line_error(proc, d / "ir16", "infrared")
    assert not (d / "q").exists() and not (d / "r").exists()


def test_evaluate_16bit_infrared_sources(tmp_path):
    d = _ir16(tmp_path)
    rows = {}
    for kind in ("ir8", "ir16"):
        rows[kind], _, _ = evaluation.evaluate_folders(
            d / kind, d / "vis", {"F": d / "ir8"}, ["EN", "MI", "VIF", "Qabf"])
    assert rows["ir8"] == rows["ir16"]
    a = evaluation.read_u8(d / "irf" / "1.tif", "minmax")
    assert np.abs(a.astype(int)
                  - evaluation.read_u8(d / "ir8" / "1.png")).max() <= 1
    with pytest.raises(InputError, match="infrared"):
        evaluation.read_u8(d / "ir16" / "1.png")


# --------------------------------------------------------------- memory --

def test_memory_budget_parsing_and_plans():
    assert fusion.parse_memory("8G") == 8 << 30
    assert fusion.parse_memory("1.5gb") == 3 << 29
    assert fusion.parse_memory("500M") == 500 << 20
    assert fusion.parse_memory("123") == 123
    for bad in ("", "-1G", "lots", "8X"):
        with pytest.raises(InputError, match="--max_memory"):
            fusion.parse_memory(bad)
    assert 0 < fusion.available_memory()
    assert fusion.plan_tile_size(450, 620, 8 << 30) is None
    t = fusion.plan_tile_size(4096, 4096, 8 << 30)
    need = (fusion.RUNTIME_BYTES + fusion.IMAGE_BYTES_PER_PIXEL * 4096 ** 2
            + fusion.NETWORK_BYTES_PER_PIXEL[fusion.allocator()]
            * (t + 2 * fusion.HALO) ** 2)
    assert 512 < t < 4096 and need <= 8 << 30
    count = -(-4096 // t)  # equal tiles, no thin strip left over
    assert 4096 - (count - 1) * t >= t - count
    with pytest.raises(InputError, match="--max_memory"):
        fusion.plan_tile_size(65536, 65536, 8 << 30)


def test_max_memory_tiles_and_keeps_the_output(tmp_path, jiayi_weights):
    """A budget too small for the whole 300x300 pair: fused in tiles, and
    the saved image equals whole-image fusion; too small for any tile:
    one line naming the image."""
    rng = np.random.default_rng(1)
    for d in ("ir", "vi"):
        write_gray(tmp_path / d / "a.png", rng.integers(0, 256, (300, 300)))
    px = 300 * 300
    budget = (fusion.RUNTIME_BYTES + fusion.IMAGE_BYTES_PER_PIXEL * px
              + fusion.NETWORK_BYTES_PER_PIXEL["bfc"] * 160 ** 2)
    proc = _fuse(tmp_path, tmp_path / "ir", tmp_path / "vi",
                 tmp_path / "tiled", jiayi_weights, "--max_memory",
                 str(budget))
    assert proc.returncode == 0, proc.stderr
    assert "1 image(s) fused in tiles" in proc.stdout
    proc = _fuse(tmp_path, tmp_path / "ir", tmp_path / "vi",
                 tmp_path / "whole", jiayi_weights, "--tile_size", "0")
    assert proc.returncode == 0, proc.stderr
    assert "in tiles" not in proc.stdout
    assert np.array_equal(np.asarray(Image.open(tmp_path / "tiled" / "a.bmp")),
                          np.asarray(Image.open(tmp_path / "whole" / "a.bmp")))
    proc = _fuse(tmp_path, tmp_path / "ir", tmp_path / "vi",
                 tmp_path / "none", jiayi_weights, "--max_memory", "1G")
    assert_one_line_error(proc, tmp_path / "ir" / "a.png", "--max_memory")
    assert not (tmp_path / "none").exists()
