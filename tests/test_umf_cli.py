"""UMF-CMGR command lines: umf.test_reg, umf.test_fuse, umf.test_reg_fusion.

End to end through the command lines, against the lossless references of
the upstream PyTorch code (``../shared/umf-cmgr/reference``), at any size,
with STDFusionNet as the fuser, and every bad input as one line."""

import os
import shutil

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli, write_gray

NAMES = ("01", "02", "03", "04")
FIXTURES = ROOT / "tests" / "fixtures"


def _read(path):
    import imageio.v3 as iio

    return iio.imread(path).astype(np.int64)


def assert_reproduces(ours, ref, min_identical=0.999):
    a, b = _read(ours), _read(ref)
    assert a.shape == b.shape, (ours, a.shape, b.shape)
    assert np.abs(a - b).max() <= 1, ours
    assert (a == b).mean() >= min_identical, (ours, (a == b).mean())


@pytest.fixture(scope="module")
def pairs(umf, tmp_path_factory):
    """A few RoadScene pairs: every folder the commands read."""
    root = tmp_path_factory.mktemp("roadscene")
    for folder in ("ir_warp", "pseudo_ir", "vi_256", "ir_reg", "ir_256"):
        (root / folder).mkdir()
        for name in NAMES:
            src = umf / "RoadScene" / folder / f"{name}.jpg"
            shutil.copy(src, root / folder / src.name)
    return root


@pytest.fixture(scope="module")
def registered(umf, pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg") / "reg"
    proc = run_cli("-m", "umf.test_reg", "--ir_dir", pairs / "ir_warp",
                   "--target_dir", pairs / "pseudo_ir", "--checkpoint",
                   umf / "weights" / "reg_0800.pth", "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "Registered 4 images" in proc.stdout
    assert "\x1b" not in proc.stdout  # plain progress into a pipe
    return out


def test_reg_reproduces_upstream(umf, registered):
    for name in NAMES:
        assert_reproduces(registered / f"{name}.png",
                          umf / "reference" / "reg" / f"{name}.png")
        flow = np.load(registered / "flow" / f"{name}.npy")
        assert flow.dtype == np.float32 and flow.shape == (2, 256, 256)
        ref = np.load(umf / "reference" / "flow" / f"{name}.npy")
        assert np.abs(flow - ref).max() <= 1e-3
        picture = _read(registered / "flow_rgb" / f"{name}.png")
        assert picture.shape == (256, 256, 3) and picture.std() > 0


def test_flow_picture_is_upstreams_flow2rgb():
    from stdfusion_tf.umf.pipeline import flow_to_rgb

    flow = np.zeros((2, 2, 3), np.float32)
    flow[0, 0, 0], flow[1, 1, 2] = 4.0, -2.0  # peak |f| = 4
    rgb = flow_to_rgb(flow)
    # upstream planes (1 + fy, 1 - (fy + fx) / 2, 1 + fx), clipped, x255,
    # truncated; cv2 writes plane 0 as blue -> RGB = planes reversed
    assert rgb[0, 0].tolist() == [255, 127, 255]   # fy = 1
    assert rgb[1, 2].tolist() == [127, 255, 255]   # fx = -0.5
    assert rgb[0, 1].tolist() == [255, 255, 255]   # no motion


def test_fuse_difn_reproduces_upstream(umf, pairs, tmp_path):
    out = tmp_path / "fused"
    proc = run_cli("-m", "umf.test_fuse", "--ir_dir", pairs / "ir_reg",
                   "--vi_dir", pairs / "vi_256", "--checkpoint",
                   umf / "weights" / "fus_0200.pth", "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        assert_reproduces(out / f"{name}.png",
                          umf / "reference" / "fused_reg" / f"{name}.png")


def test_color_merge_is_opencvs():
    """fuse_Ycbcr_rgb.py's OpenCV YCrCb round trip, bit-exact against
    cv2 (fixture made by tests/fixtures/make_ycrcb_fixture.py)."""
    from stdfusion_tf.umf.pipeline import rgb_to_ycrcb, ycrcb_to_rgb

    ref = np.load(FIXTURES / "opencv_ycrcb.npz")
    assert np.array_equal(rgb_to_ycrcb(ref["rgb"]), ref["ycrcb"])
    assert np.array_equal(ycrcb_to_rgb(ref["ycrcb_in"]), ref["rgb_out"])


def test_reg_fusion_in_one_run(umf, pairs, registered, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("-m", "umf.test_reg_fusion", "--ir_dir", pairs / "ir_warp",
                   "--vi_dir", pairs / "vi_256", "--target_dir",
                   pairs / "pseudo_ir", "--checkpoint_reg",
                   umf / "weights" / "reg_0800.pth", "--checkpoint_fuse",
                   umf / "weights" / "fus_0200.pth", "--output_dir", out,
                   "--color")
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        # the registration part is umf.test_reg's, bit for bit
        assert np.array_equal(_read(out / "reg" / f"{name}.png"),
                              _read(registered / f"{name}.png"))
        fused = _read(out / "fused" / f"{name}.png")
        assert fused.shape == (256, 256, 3)


def test_stdfusionnet_as_fuser_equals_test_py(pairs, jiayi_weights,
                                              tmp_path):
    out = tmp_path / "umf"
    proc = run_cli("-m", "umf.test_fuse", "--fuser", "stdfusionnet",
                   "--checkpoint", jiayi_weights, "--ir_dir",
                   pairs / "ir_reg", "--vi_dir", pairs / "vi_256",
                   "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("test.py", "--checkpoint", jiayi_weights, "--ir_dir",
                   pairs / "ir_reg", "--vi_dir", pairs / "vi_256",
                   "--output_dir", tmp_path / "std")
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        assert np.array_equal(_read(out / f"{name}.png"),
                              _read(tmp_path / "std" / f"{name}.bmp"))


def test_any_size_and_cpstn_targets(umf, pairs, tmp_path):
    """A 300 x 517 pair registers and fuses (output at the input's size),
    with the target made by a CPSTN generator (the ngf=8 fixture) from the
    visible image."""
    from PIL import Image

    h, w = 300, 517
    for folder in ("ir_warp", "vi_256"):
        im = Image.open(pairs / folder / "01.jpg").resize((w, h))
        (tmp_path / folder).mkdir()
        im.save(tmp_path / folder / "big.png")
    out = tmp_path / "out"
    proc = run_cli("-m", "umf.test_reg_fusion", "--ir_dir",
                   tmp_path / "ir_warp", "--vi_dir", tmp_path / "vi_256",
                   "--cpstn", FIXTURES / "cpstn_G_ngf8.pth",
                   "--checkpoint_reg", umf / "weights" / "reg_0800.pth",
                   "--checkpoint_fuse", umf / "weights" / "fus_0200.pth",
                   "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert _read(out / "reg" / "big.png").shape == (h, w)
    assert np.load(out / "reg" / "flow" / "big.npy").shape == (2, h, w)
    assert np.isfinite(np.load(out / "reg" / "flow" / "big.npy")).all()
    assert _read(out / "fused" / "big.png").shape == (h, w)


def test_visible_target_fallback(umf, pairs, tmp_path):
    proc = run_cli("-m", "umf.test_reg", "--ir_dir", pairs / "ir_warp",
                   "--vi_dir", pairs / "vi_256", "--target", "visible",
                   "--checkpoint", umf / "weights" / "reg_0800.pth",
                   "--output_dir", tmp_path / "o", "--save_format", "jpg")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "o")) == sorted(
        [f"{n}.jpg" for n in NAMES] + ["flow", "flow_rgb"])


# ------------------------------------------------------------ bad input --
def _bad(tmp_path, umf, *args, needles=()):
    out = tmp_path / "out"
    proc = run_cli(*args, "--output_dir", out)
    assert_one_line_error(proc, *needles)
    assert not out.exists()


def test_bad_input_is_one_line(umf, pairs, tmp_path):
    reg = umf / "weights" / "reg_0800.pth"
    fus = umf / "weights" / "fus_0200.pth"
    unpaired = tmp_path / "unpaired"
    shutil.copytree(pairs / "pseudo_ir", unpaired)
    os.rename(unpaired / "03.jpg", unpaired / "99.jpg")
    _bad(tmp_path, umf, "-m", "umf.test_reg", "--ir_dir", pairs / "ir_warp",
         "--target_dir", unpaired, "--checkpoint", reg,
         needles=("unpaired", "03"))
    small = tmp_path / "small"
    shutil.copytree(pairs / "vi_256", small)
    write_gray(small / "02.png", np.zeros((100, 120)))
    os.remove(small / "02.jpg")
    _bad(tmp_path, umf, "-m", "umf.test_fuse", "--ir_dir", pairs / "ir_reg",
         "--vi_dir", small, "--checkpoint", fus,
         needles=("size mismatch", "02.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(tmp_path, umf, "-m", "umf.test_fuse", "--ir_dir", empty,
         "--vi_dir", pairs / "vi_256", "--checkpoint", fus,
         needles=("no images", str(empty)))
    _bad(tmp_path, umf, "-m", "umf.test_reg", "--ir_dir", pairs / "ir_warp",
         "--checkpoint", reg, needles=("no registration target",))
    # the fusion weights given to the registration network
    _bad(tmp_path, umf, "-m", "umf.test_reg", "--ir_dir", pairs / "ir_warp",
         "--target_dir", pairs / "pseudo_ir", "--checkpoint", fus,
         needles=("fus_0200.pth", "DIFN"))
    # an output folder that is a file: one line, the file untouched
    clash = tmp_path / "clash"
    clash.write_text("keep me")
    proc = run_cli("-m", "umf.test_fuse", "--ir_dir", pairs / "ir_reg",
                   "--vi_dir", pairs / "vi_256", "--checkpoint", fus,
                   "--output_dir", clash)
    assert_one_line_error(proc, str(clash), "existing file")
    assert clash.read_text() == "keep me"


def test_umf_assets_are_pinned(umf, tmp_path):
    """The weights and the RoadScene working set are pinned (origin, commit,
    sha256): fetched from a mirror laid out like ../shared/umf-cmgr, and
    every pinned hash matches the shared copy."""
    import hashlib

    from stdfusion_tf import assets

    paths = assets.fetch("umf_weights", root=tmp_path, mirror=str(umf))
    assert [os.path.basename(p) for p in paths] == ["reg_0800.pth",
                                                   "fus_0200.pth"]
    entries = assets.manifest()["groups"]["umf_roadscene"]
    assert len(entries) == 6 * 221
    for entry in entries:
        data = (umf / entry["mirror"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry
    assert assets.origin(entries[0]).startswith(
        "https://raw.githubusercontent.com/HaodeShi/UMF-CMGR-retrain-and-test/"
        "43f936544856ec91970bc615b29a220556c88cad/dataset/Roadscene/")


def test_reg_fusion_with_the_preset_names(umf, pairs, tmp_path):
    """The two UMF-CMGR presets, fetched from $STDFUSION_UMF_MIRROR into the
    Keras cache, reproduce upstream's registered images."""
    out = tmp_path / "out"
    home = tmp_path / "keras_home"
    proc = run_cli("-m", "umf.test_reg_fusion", "--ir_dir",
                   pairs / "ir_warp", "--vi_dir", pairs / "vi_256",
                   "--target_dir", pairs / "pseudo_ir", "--checkpoint_reg",
                   "umfcmgr_retrain_reg_0800", "--checkpoint_fuse",
                   "umfcmgr_retrain_fus_0200", "--output_dir", out,
                   env={"KERAS_HOME": str(home),
                        "STDFUSION_UMF_MIRROR": str(umf)})
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        assert_reproduces(out / "reg" / f"{name}.png",
                          umf / "reference" / "reg" / f"{name}.png")
        assert (out / "fused" / f"{name}.png").is_file()
    cached = home / "stdfusion_tf" / "checkpoint" / "umf"
    assert sorted(p.name for p in cached.iterdir()) == ["fus_0200.pth",
                                                        "reg_0800.pth"]


def test_help_shows_the_shared_flags_and_the_presets():
    """--help (not only --helpfull) lists the flags defined in _common, and
    usage names the installed command."""
    proc = run_cli("-m", "umf.test_reg", "--help")
    for flag in ("--target_dir", "--target:", "--cpstn", "--save_format",
                 "--checkpoint", "umfcmgr_retrain_reg_0800",
                 "STDFUSION_UMF_MIRROR", "stdfusion-umf test_reg"):
        assert flag in proc.stdout, flag
    proc = run_cli("-m", "stdfusion_tf.commands.umf")
    assert proc.returncode == 1
    for name in ("test_reg", "test_fuse", "test_reg_fusion", "evaluate_reg",
                 "make_misaligned", "make_svs_maps", "train_reg",
                 "train_fuse", "train_cpstn"):
        assert f"  {name} " in proc.stdout, name


@pytest.mark.slow  # the shared layer's handling, tested on fuse by default
def test_sigterm_ends_a_registration_run_with_one_line(umf, tmp_path):
    """The UMF commands share cli.run's signal handling: one line, exit
    128 + 15, this run's outputs rolled back, earlier files intact."""
    import signal

    from conftest import signal_when, temporaries

    names = sorted(p.name for p in (umf / "RoadScene" / "ir_warp").iterdir()
                   )[:60]
    for folder in ("ir_warp", "pseudo_ir"):
        (tmp_path / folder).mkdir()
        for name in names:
            shutil.copy(umf / "RoadScene" / folder / name, tmp_path / folder)
    out = tmp_path / "reg"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier file")
    proc = signal_when(
        ["-m", "umf.test_reg", "--ir_dir", tmp_path / "ir_warp",
         "--target_dir", tmp_path / "pseudo_ir", "--checkpoint",
         umf / "weights" / "reg_0800.pth", "--output_dir", out],
        lambda: any(p.suffix == ".png" for p in out.iterdir()),
        signal.SIGTERM, cwd=tmp_path)
    assert proc.signalled and proc.returncode == 128 + signal.SIGTERM, \
        proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "interrupted" in l]
    assert len(lines) == 1 and "(SIGTERM): 0 output file(s) written" in \
        lines[0], proc.stderr
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["keep.txt"]
