"""test.py: the authors' result images, colour, assets, bad input."""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import (RELEASES, ROOT, assert_one_line_error, run_cli,
                      write_gray)


def _fuse(tmp_path, ir_dir, vi_dir, *flags, checkpoint=None, name="out",
          env=None):
    out = tmp_path / name
    proc = run_cli(ROOT / "test.py", "--ir_dir", ir_dir, "--vi_dir", vi_dir,
                   "--output_dir", out, "--checkpoint",
                   checkpoint or RELEASES["jiayi-ma"], *flags, cwd=tmp_path,
                   env=env)
    return proc, out


@pytest.mark.parametrize("weights", ["tf1", "preset"])
def test_reproduces_the_authors_result_images(upstream, tmp_path, weights):
    """Acceptance: model-29 (jiayi-ma) on Test_* gives STDFusionNet_Results
    within 1 gray level, >= 99.99 % of pixels identical, for all 9 images:
    from the TF1 release, and through the built-in preset name (fetched from
    the mirror and converted into a fresh KERAS_HOME)."""
    preset = {"checkpoint": "stdfusionnet_jiayima_29",
              "env": {"KERAS_HOME": str(tmp_path / "keras_home"),
                      "STDFUSION_MIRROR": str(upstream)}}
    proc, out = _fuse(tmp_path, upstream / "Test_ir", upstream / "Test_vi",
                      **(preset if weights == "preset" else {}))
    assert proc.returncode == 0, proc.stderr
    assert "Fused 9 pairs" in proc.stdout and " ± " in proc.stdout
    report = []
    for ref_path in sorted((upstream / "STDFusionNet_Results").glob("*.bmp")):
        ref = np.asarray(Image.open(ref_path))
        got_im = Image.open(out / ref_path.name)
        assert got_im.format == "BMP" and got_im.mode == "L"
        got = np.asarray(got_im)
        assert got.shape == ref.shape
        diff = np.abs(got.astype(int) - ref.astype(int))
        same = (diff == 0).mean()
        report.append(f"{ref_path.name}: max {diff.max()} same {same:.6%}")
        assert diff.max() <= 1, report[-1]
        assert same >= 0.9999, report[-1]
    assert len(report) == 9
    print("\n".join(report))
    if weights == "preset":  # really through the cached preset
        assert (tmp_path / "keras_home" / "stdfusion_tf" / "presets" /
                "stdfusionnet_jiayima_29" / "model.weights.h5").is_file()
        assert not (tmp_path / "checkpoint").exists()
    timings = (out / "timings.csv").read_text().splitlines()
    assert timings[0] == "name,height,width,seconds" and len(timings) == 10


def test_keras_weights_and_clip_mode(upstream, jiayi_weights, tmp_path):
    proc, out = _fuse(tmp_path, upstream / "Test_ir", upstream / "Test_vi",
                      "--save_mode=clip", checkpoint=jiayi_weights)
    assert proc.returncode == 0, proc.stderr
    ref = np.asarray(Image.open(upstream / "STDFusionNet_Results" / "09.bmp"))
    got = np.asarray(Image.open(out / "09.bmp"))
    # clip keeps the network's own range: not the stretched 0..255
    assert got.min() > 0 or got.max() < 255
    assert np.abs(got.astype(int) - ref.astype(int)).max() > 1


def test_color_keeps_visible_chroma(upstream, tmp_path):
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    for d, src in ((ir, "Test_ir"), (vi, "Test_vi")):
        d.mkdir()
        shutil.copy(upstream / src / "04.bmp", d / "04.jpg")
    proc, gray_out = _fuse(tmp_path, ir, vi, name="gray")
    assert proc.returncode == 0, proc.stderr
    proc, color_out = _fuse(tmp_path, ir, vi, "--color", name="color")
    assert proc.returncode == 0, proc.stderr
    color = Image.open(color_out / "04.bmp")
    assert color.mode == "RGB"
    ycbcr = np.asarray(color.convert("YCbCr")).astype(int)
    gray = np.asarray(Image.open(gray_out / "04.bmp")).astype(int)
    vis = np.asarray(Image.open(vi / "04.jpg").convert("YCbCr")).astype(int)
    assert np.abs(ycbcr[..., 0] - gray).mean() < 1.0       # fused luma
    assert np.abs(ycbcr[..., 1:] - vis[..., 1:]).mean() < 1.5  # visible chroma
    assert np.abs(ycbcr[..., 1:] - 128).mean() > 2          # really colour


def test_default_run_fetches_assets_from_a_mirror(upstream, tmp_path):
    """`python test.py` with no flags: weights + test pairs from the mirror,
    hash-checked, then the authors' images."""
    proc = run_cli(ROOT / "test.py", cwd=tmp_path,
                   env={"STDFUSION_MIRROR": str(upstream)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "checkpoint" / "Fusion.model-29.index").is_file()
    assert len(list((tmp_path / "Test_ir").iterdir())) == 9
    got = np.asarray(Image.open(tmp_path / "STDFusionNet_Results" / "06.bmp"))
    ref = np.asarray(Image.open(upstream / "STDFusionNet_Results" / "06.bmp"))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_corrupt_mirror_file_is_an_error(upstream, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream / "Test_ir", mirror / "Test_ir")
    shutil.copytree(upstream / "Test_vi", mirror / "Test_vi")
    shutil.copytree(upstream / "checkpoints" / "jiayi-ma",
                    mirror / "checkpoints" / "jiayi-ma")
    bad = mirror / "checkpoints" / "jiayi-ma" / "Fusion.model-29.data-00000-of-00001"
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(ROOT / "test.py", "--mirror", mirror, cwd=work)
    assert_one_line_error(proc, bad, "cannot fetch", "hash")
    assert not (work / "checkpoint" / bad.name).exists()
    assert not (work / "STDFusionNet_Results").exists()
    # an existing local copy with the wrong hash is replaced, not trusted
    good = upstream / "checkpoints" / "jiayi-ma" / bad.name
    (work / "checkpoint").mkdir(exist_ok=True)
    (work / "checkpoint" / bad.name).write_bytes(bytes(data))
    proc = run_cli(ROOT / "test.py", "--mirror", upstream, "--ir_dir",
                   upstream / "Test_ir", "--vi_dir", upstream / "Test_vi",
                   cwd=work)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256((work / "checkpoint" / bad.name).read_bytes())
    assert digest.hexdigest() == hashlib.sha256(good.read_bytes()).hexdigest()


# ------------------------------------------------------------- bad input --

@pytest.fixture
def pairs(tmp_path):
    """Two small valid pairs in ir/ and vi/."""
    rng = np.random.default_rng(0)
    for stem in ("1", "2"):
        write_gray(tmp_path / "ir" / f"{stem}.png",
                   rng.integers(0, 256, (24, 20)))
        write_gray(tmp_path / "vi" / f"{stem}.png",
                   rng.integers(0, 256, (24, 20)))
    return tmp_path / "ir", tmp_path / "vi"


def _bad_run(tmp_path, ir, vi, *needles, checkpoint=None):
    proc, out = _fuse(tmp_path, ir, vi, checkpoint=checkpoint)
    assert_one_line_error(proc, *needles)
    assert not out.exists(), list(out.iterdir())


def test_unpaired_names(pairs, tmp_path, jiayi_weights):
    ir, vi = pairs
    (vi / "2.png").rename(vi / "3.png")
    _bad_run(tmp_path, ir, vi, ir / "2.png", "unpaired",
             checkpoint=jiayi_weights)


def test_size_mismatch(pairs, tmp_path, jiayi_weights):
    ir, vi = pairs
    write_gray(vi / "2.png", np.zeros((24, 21)))
    _bad_run(tmp_path, ir, vi, vi / "2.png", "size mismatch", "24x21",
             "24x20", checkpoint=jiayi_weights)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_unreadable_image(pairs, tmp_path, jiayi_weights, kind):
    ir, vi = pairs
    target = vi / "2.png"
    if kind == "garbage":
        target.write_text("this is not an image")
    elif kind == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    else:
        target.write_bytes(b"")
    _bad_run(tmp_path, ir, vi, target, checkpoint=jiayi_weights)


def test_empty_and_missing_folders(pairs, tmp_path, jiayi_weights):
    ir, vi = pairs
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad_run(tmp_path, ir, empty, empty, "no images",
             checkpoint=jiayi_weights)
    _bad_run(tmp_path, tmp_path / "nope", vi, tmp_path / "nope",
             "no such folder", checkpoint=jiayi_weights)


def test_bad_checkpoint(pairs, tmp_path, jiayi_weights):
    ir, vi = pairs
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(open(jiayi_weights, "rb").read()[:5000])
    _bad_run(tmp_path, ir, vi, bad, "truncated", checkpoint=bad)
    _bad_run(tmp_path, ir, vi, tmp_path / "ckpt", "does not exist",
             checkpoint=tmp_path / "ckpt" / "Fusion.model-3")
