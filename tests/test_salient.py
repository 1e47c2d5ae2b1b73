"""test.py --salient_map (the paper's Fig. 15) and scripts/salient_iou.py."""

import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import RELEASES, ROOT, run_cli
from stdfusion_tf import salient
from stdfusion_tf.images import read_gray


def test_map_scale_and_overlay():
    vi = np.array([[-1.0, 0.0, 1.0, 0.2, 0.5]], np.float32)
    fused = np.array([[-1.0, 1.0, -1.0, 0.7, 0.0]], np.float32)
    m = salient.salient_map(fused, vi)
    # |d| x 127.5 rounded: 0, 127.5 -> 128 (half to even), 255, 63.75 -> 64
    assert m.dtype == np.uint8
    assert m.tolist() == [[0, 128, 255, 64, 64]]
    assert salient.salient_map(fused, fused).max() == 0
    # fixed scale: the same difference gives the same value in any image
    assert salient.salient_map(fused * 0.1, vi * 0.1)[0, 1] == 13
    rgb = salient.overlay(m, vi)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]            # no difference: vi gray
    assert rgb[0, 2].tolist() == [255, 255, 255]      # 255: opaque white
    v = 128 / 255  # (1 - v) * gray + v * 255 * hot(v), gray 127.5
    want = [(1 - v) * 127.5 + v * 255 * min(1, max(0, 3 * v - c))
            for c in (0, 1, 2)]
    assert np.abs(rgb[0, 1] - np.array(want)).max() <= 0.5 + 1e-9
    assert np.array_equal(salient.hot(np.array([0.0, 1 / 3, 2 / 3, 1.0])),
                          [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_otsu_and_agreement():
    rng = np.random.default_rng(0)
    m = np.clip(rng.normal(20, 5, (60, 60)), 0, 255)
    m[10:30, 10:30] = np.clip(rng.normal(150, 10, (20, 20)), 0, 255)
    m = m.astype(np.uint8)
    t = salient.otsu_threshold(m)
    # every level 35..121 splits the two modes; the first (the top of the
    # lower mode) is taken, as OpenCV's THRESH_OTSU does (35 there too)
    assert t == 35
    truth = np.zeros((60, 60), bool)
    truth[10:30, 10:30] = True
    a = salient.agreement(m, truth)
    assert a["threshold"] == t and a["iou"] == 1.0
    a = salient.agreement(m, truth[:, ::-1], "64")  # fixed level
    assert a["threshold"] == 64
    assert a["iou"] == pytest.approx(0.0) and a["recall"] == 0.0
    assert salient.iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert salient.otsu_threshold(np.full((4, 4), 9, np.uint8)) == 0


@pytest.fixture
def two_pairs(upstream, tmp_path):
    """Test pairs 05 (TNO, 280x280) and 09 (360x270)."""
    for sub in ("Test_ir", "Test_vi"):
        (tmp_path / sub).mkdir()
        for stem in ("05", "09"):
            shutil.copy(upstream / sub / f"{stem}.bmp", tmp_path / sub)
    return tmp_path / "Test_ir", tmp_path / "Test_vi"


def test_salient_map_cli(two_pairs, tmp_path):
    ir, vi = two_pairs
    out = tmp_path / "out"
    proc = run_cli(ROOT / "test.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--output_dir", out, "--checkpoint", RELEASES["jiayi-ma"],
                   "--save_mode", "clip", "--salient_map", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "salient").iterdir()) == [
        "05.png", "05_overlay.png", "09.png", "09_overlay.png"]
    for stem in ("05", "09"):
        m_im = Image.open(out / "salient" / f"{stem}.png")
        assert (m_im.format, m_im.mode) == ("PNG", "L")
        m = np.asarray(m_im).astype(int)
        gray = read_gray(vi / f"{stem}.bmp")
        # independent of the raw output: --save_mode clip saves
        # round((y + 1) 127.5), and (vi + 1) 127.5 is the visible gray, so
        # |saved - gray| is the map to within rounding
        fused = np.asarray(Image.open(out / f"{stem}.bmp")).astype(float)
        assert np.abs(np.rint(np.abs(fused - gray)) - m).max() <= 1
        # something salient, on a fixed scale (not stretched to 255)
        assert 60 < m.max() < 255
        ov = np.asarray(Image.open(out / "salient" / f"{stem}_overlay.png"))
        assert ov.shape == m.shape + (3,)
        flat = m == 0  # no difference: the visible image in gray
        assert np.abs(ov[flat] - np.rint(gray[flat])[:, None]).max() <= 1
        hot = m >= 85  # v >= 1/3: the red channel saturates
        assert hot.any() and (ov[hot, 0] >= ov[hot, 2]).all()
    assert (out / "timings.csv").read_text().count("\n") == 3


def test_salient_iou_script(upstream, tmp_path):
    """Two training pairs; the figures of the closing note (jiayi-ma
    model-29, Otsu): 5.bmp 0.307, 47.bmp 0.015."""
    for sub in ("Train_ir", "Train_vi", "Train_ir_mask"):
        (tmp_path / sub).mkdir()
        for stem in ("5", "47"):
            shutil.copy(upstream / sub / f"{stem}.bmp", tmp_path / sub)
    proc = run_cli(ROOT / "scripts" / "salient_iou.py", "--threshold",
                   "otsu,64", "--csv", tmp_path / "iou.csv",
                   "--checkpoint", RELEASES["jiayi-ma"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in
            (tmp_path / "iou.csv").read_text().splitlines()]
    assert rows[0] == ["name", "rule", "threshold", "iou", "precision",
                       "recall"]
    got = {(r[0], r[1]): (int(r[2]), float(r[3])) for r in rows[1:]}
    assert got[("5", "otsu")][0] == 29
    assert got[("5", "otsu")][1] == pytest.approx(0.307, abs=0.002)
    assert got[("47", "otsu")][1] == pytest.approx(0.015, abs=0.002)
    assert got[("47", "64")] == (64, pytest.approx(0.143, abs=0.002))
    assert "mean" in proc.stdout


def test_failed_run_removes_the_maps(tmp_path):
    """A failure half-way removes what the run wrote, salient/ included."""
    from conftest import write_gray
    from stdfusion_tf import fusion

    rng = np.random.default_rng(1)
    for stem in ("1", "2"):
        for sub in ("ir", "vi"):
            write_gray(tmp_path / sub / f"{stem}.png",
                       rng.integers(0, 256, (20, 24)))

    class Identity:  # a stand-in network: fused = visible
        def warm_up(self):
            pass

        def tile_for(self, h, w):  # whole images (fusion.Fuser's contract)
            return None

        def __call__(self, ir, vi):
            return vi

    class FailSecond(salient.MapWriter):
        def __call__(self, stem, ir, vi, fused):
            if stem == "2":
                raise OSError("disk full")
            return super().__call__(stem, ir, vi, fused)

    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        fusion.fuse_folders(Identity(), tmp_path / "ir", tmp_path / "vi",
                            out, extra=FailSecond(out), verbose=0)
    assert not out.exists()
    got = fusion.fuse_folders(Identity(), tmp_path / "ir", tmp_path / "vi",
                              out, extra=salient.MapWriter(out), verbose=0)
    assert len(got) == 2
    assert np.asarray(Image.open(out / "salient" / "2.png")).max() == 0
