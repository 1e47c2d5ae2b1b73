"""Registration before fusion (stdfusion_tf/registering.py used by
``stdfusion-fuse --register`` and the UMF-CMGR commands'
``--registration``): a pair of different sizes is fused in the visible
frame; without registration the size mismatch is still an error."""

import numpy as np
import pytest

from conftest import SHARED, assert_one_line_error, run_cli, write_gray

TNO = SHARED / "datasets" / "TNO42"
UMF = SHARED / "umf-cmgr"
IR_SIZE, VI_SIZE = (96, 120), (120, 152)  # H, W: small, the fusers are slow


def read(path):
    from PIL import Image

    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """TNO pair 01 shrunk: the visible image 152x120, the infrared one a
    rotated, shifted, smaller view (120x96)."""
    import cv2

    if not TNO.is_dir():
        pytest.skip("../shared/datasets/TNO42 is not beside the project")
    vi = cv2.resize(read(TNO / "vi" / "01.png"), VI_SIZE[::-1],
                    interpolation=cv2.INTER_AREA)
    ir = cv2.resize(read(TNO / "ir" / "01.png"), VI_SIZE[::-1],
                    interpolation=cv2.INTER_AREA)
    if vi.ndim == 3:
        vi, ir = vi[..., 0], ir[..., 0]
    c, s = 0.8 * np.cos(np.deg2rad(3)), 0.8 * np.sin(np.deg2rad(3))
    ir = cv2.warpAffine(ir, np.array([[c, -s, 4.0], [s, c, -2.0]]),
                        IR_SIZE[::-1], borderMode=cv2.BORDER_REFLECT)
    root = tmp_path_factory.mktemp("pair")
    write_gray(root / "ir" / "t1.png", ir)
    write_gray(root / "vi" / "t1.png", vi)
    return root


def test_fuse_register_auto_fuses_in_the_visible_frame(pair, tmp_path,
                                                       jiayi_weights):
    out = tmp_path / "fused"
    proc = run_cli("test.py", "--checkpoint", jiayi_weights, "--ir_dir",
                   pair / "ir", "--vi_dir", pair / "vi", "--output_dir", out,
                   "--register", "auto")
    assert proc.returncode == 0, proc.stderr
    assert read(out / "t1.bmp").shape == VI_SIZE


def test_fuse_without_registration_keeps_the_size_error(pair, tmp_path,
                                                        jiayi_weights):
    out = tmp_path / "fused"
    proc = run_cli("test.py", "--checkpoint", jiayi_weights, "--ir_dir",
                   pair / "ir", "--vi_dir", pair / "vi", "--output_dir", out)
    assert_one_line_error(proc, "size mismatch", pair / "vi" / "t1.png")
    assert not out.exists()


def test_fuse_register_refuses_a_featureless_image(tmp_path, jiayi_weights):
    rng = np.random.default_rng(0)
    write_gray(tmp_path / "ir" / "a.png", rng.integers(0, 255, (64, 64)))
    write_gray(tmp_path / "vi" / "a.png", np.zeros((80, 96)))
    out = tmp_path / "fused"
    proc = run_cli("test.py", "--checkpoint", jiayi_weights, "--ir_dir",
                   tmp_path / "ir", "--vi_dir", tmp_path / "vi",
                   "--output_dir", out, "--register", "auto")
    assert_one_line_error(proc, tmp_path / "vi" / "a.png", "featureless")
    assert not out.exists()


@pytest.fixture(scope="module")
def difn_weights():
    path = UMF / "weights" / "fus_0200.pth"
    if not path.is_file():
        pytest.skip("../shared/umf-cmgr is not beside the project")
    return path


@pytest.mark.slow  # two DIFN runs; umf.test_reg_fusion below is the quick one
def test_umf_fuse_registration_auto(pair, tmp_path, difn_weights):
    out = tmp_path / "fused"
    proc = run_cli("-m", "umf.test_fuse", "--ir_dir", pair / "ir",
                   "--vi_dir", pair / "vi", "--checkpoint", difn_weights,
                   "--output_dir", out, "--registration", "auto")
    assert proc.returncode == 0, proc.stderr
    assert read(out / "t1.png").shape == VI_SIZE
    # without registration: the size mismatch, nothing written
    proc = run_cli("-m", "umf.test_fuse", "--ir_dir", pair / "ir",
                   "--vi_dir", pair / "vi", "--checkpoint", difn_weights,
                   "--output_dir", tmp_path / "plain")
    assert_one_line_error(proc, "size mismatch")
    assert not (tmp_path / "plain").exists()


def test_umf_reg_fusion_registration_auto(pair, tmp_path, difn_weights):
    import json

    out = tmp_path / "out"
    proc = run_cli("-m", "umf.test_reg_fusion", "--ir_dir", pair / "ir",
                   "--vi_dir", pair / "vi", "--checkpoint_fuse", difn_weights,
                   "--output_dir", out, "--registration", "auto")
    assert proc.returncode == 0, proc.stderr
    assert read(out / "fused" / "t1.png").shape == VI_SIZE
    assert read(out / "reg" / "t1.png").shape == VI_SIZE
    flow = np.load(out / "reg" / "flow" / "t1.npy")
    assert flow.shape == (2,) + VI_SIZE and flow.dtype == np.float32
    record = json.loads((out / "reg" / "transform" / "t1.json").read_text())
    assert np.asarray(record["matrix"]).shape == (3, 3)
    # MRRN's flags make no sense with it: one line
    proc = run_cli("-m", "umf.test_reg_fusion", "--ir_dir", pair / "ir",
                   "--vi_dir", pair / "vi", "--checkpoint_fuse", difn_weights,
                   "--output_dir", tmp_path / "x", "--registration", "auto",
                   "--target_dir", pair / "vi")
    assert_one_line_error(proc, "--target_dir")


def test_method_and_model_names_match_the_library():
    """The command layer keeps its own copies of the names (it imports the
    registration library only when it registers); they must not drift."""
    from stdfusion_tf import registering, registration

    assert registering.METHODS == registration.METHODS
    assert registering.MODELS == registration.MODELS
