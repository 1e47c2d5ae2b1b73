"""stdfusion-register (stdfusion_tf/commands/register.py): pairs of different
sizes -> the infrared image in the visible frame, its flow and transform;
bad input -> one line, nothing written; untrusted pairs named."""

import json

import numpy as np
import pytest

from conftest import SHARED, assert_one_line_error, run_cli, write_gray

TNO = SHARED / "datasets" / "TNO42"
REGISTER = ("-m", "stdfusion_tf.commands.register")
# A similarity (rotation 4 deg, scale 0.8, shift) from visible pixels
# (x, y, 1) to infrared pixels, and the infrared camera's frame size.
ANGLE, SCALE, SHIFT = np.deg2rad(4.0), 0.8, (14.0, -6.0)
IR_SIZE = (200, 240)  # H, W
VI_SIZE = (256, 320)


def true_matrix():
    c, s = SCALE * np.cos(ANGLE), SCALE * np.sin(ANGLE)
    return np.array([[c, -s, SHIFT[0]], [s, c, SHIFT[1]], [0, 0, 1.0]])


def read_gray8(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A TNO pair: the visible image reduced to 320x256, the infrared one
    seen by a camera with another size, rotation, scale and offset."""
    import cv2

    if not TNO.is_dir():
        pytest.skip("../shared/datasets/TNO42 is not beside the project")
    vi = cv2.resize(read_gray8(TNO / "vi" / "01.png"), VI_SIZE[::-1],
                    interpolation=cv2.INTER_AREA)
    ir_aligned = cv2.resize(read_gray8(TNO / "ir" / "01.png"), VI_SIZE[::-1],
                            interpolation=cv2.INTER_AREA)
    # infrared pixel q shows the aligned infrared at visible pixel M^-1 q
    ir = cv2.warpAffine(ir_aligned, true_matrix()[:2], IR_SIZE[::-1],
                        flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)
    root = tmp_path_factory.mktemp("pair")
    write_gray(root / "ir" / "p01.png", ir)
    write_gray(root / "vi" / "p01.png", vi)
    return root


@pytest.fixture(scope="module")
def registered(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg") / "out"
    proc = run_cli(*REGISTER, "--ir_dir", pair / "ir", "--vi_dir",
                   pair / "vi", "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_writes_the_three_files_of_the_contract(registered):
    out, proc = registered
    png = read_gray8(out / "p01.png")
    assert png.shape == VI_SIZE and png.dtype == np.uint8
    flow = np.load(out / "flow" / "p01.npy")
    assert flow.dtype == np.float32 and flow.shape == (2,) + VI_SIZE
    record = json.loads((out / "transform" / "p01.json").read_text())
    assert np.asarray(record["matrix"]).shape == (3, 3)
    assert isinstance(record["confidence"], float)
    assert isinstance(record["fallback"], bool)
    assert record["visible_size"] == list(VI_SIZE)
    assert record["model"] == "auto"
    assert record["infrared_size"] == list(IR_SIZE)
    assert "Registered 1 pairs" in proc.stdout
    # nothing else: no temporary files left behind
    assert sorted(p.name for p in out.rglob("*")) == [
        "flow", "p01.json", "p01.npy", "p01.png", "transform"]


def test_flow_reproduces_the_png(pair, registered):
    from stdfusion_tf import images
    from stdfusion_tf.registration import apply_flow

    out, _ = registered
    ir = images.read_gray(pair / "ir" / "p01.png") / 255.0
    flow = np.load(out / "flow" / "p01.npy")
    again = np.clip(np.rint(apply_flow(ir, flow) * 255.0), 0, 255)
    diff = np.abs(again - read_gray8(out / "p01.png").astype(float))
    assert diff.max() <= 1


def test_recovers_the_similarity(registered):
    """The matrix and the flow map the visible grid to where the infrared
    camera saw it: a mean error of a few infrared pixels at most (a check of
    the conventions end to end -- a swapped axis, an inverted matrix or an
    off-by-half would cost tens of pixels; the accuracy itself is
    benchmarked in docs/registration.md)."""
    out, _ = registered
    record = json.loads((out / "transform" / "p01.json").read_text())
    assert not record["fallback"], record
    ys, xs = np.mgrid[16:VI_SIZE[0] - 16:16, 16:VI_SIZE[1] - 16:16]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    def where(m):
        q = np.asarray(m) @ grid
        return q[:2] / q[2]
    error = np.linalg.norm(where(record["matrix"]) - where(true_matrix()),
                           axis=0)
    assert error.mean() < 3.0, error.mean()
    # the dense flow agrees with it (p + flow(p) = M p, give or take the
    # dense residual)
    flow = np.load(out / "flow" / "p01.npy")
    q = np.stack([xs.ravel() + flow[1][ys.ravel(), xs.ravel()],
                  ys.ravel() + flow[0][ys.ravel(), xs.ravel()]])
    assert np.linalg.norm(q - where(true_matrix()), axis=0).mean() < 3.0


def _bad(tmp_path, ir, vi, *needles):
    """One line naming the file, non-zero exit, no output folder."""
    write_gray(tmp_path / "ir" / "a.png", ir) if isinstance(
        ir, np.ndarray) else None
    write_gray(tmp_path / "vi" / "a.png", vi) if isinstance(
        vi, np.ndarray) else None
    out = tmp_path / "out"
    proc = run_cli(*REGISTER, "--ir_dir", tmp_path / "ir", "--vi_dir",
                   tmp_path / "vi", "--output_dir", out)
    assert_one_line_error(proc, *needles)
    assert not out.exists()
    return proc


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    return cv2.GaussianBlur(rng.uniform(0, 255, (h, w)), (0, 0), 2)


def test_featureless_image_is_one_line(tmp_path):
    _bad(tmp_path, texture(64, 80), np.full((64, 80), 128),
         tmp_path / "vi" / "a.png", "featureless")


def test_pair_too_small_is_one_line(tmp_path):
    _bad(tmp_path, texture(8, 8), texture(8, 8, 1),
         tmp_path / "ir" / "a.png", "too small")


def test_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _bad(tmp_path, None, texture(64, 80), tmp_path / "ir" / "a.png")


def test_a_failure_half_way_leaves_the_previous_outputs(tmp_path,
                                                        monkeypatch):
    """Outputs are staged and renamed together: when the second pair fails
    (here: the registration raises), the first pair's new files do not
    appear and an earlier run's file is untouched."""
    from stdfusion_tf import registering
    from stdfusion_tf.errors import InputError

    for name, seed in (("a", 0), ("b", 1)):
        write_gray(tmp_path / "ir" / f"{name}.png", texture(64, 80, seed))
        write_gray(tmp_path / "vi" / f"{name}.png", texture(64, 80, seed))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"previous")
    real = registering.register

    def failing(ir, vi, method="auto", name=None, report=None,
                model="auto"):
        if str(name).endswith("b.png"):
            raise InputError(name, "simulated failure")
        return real(ir, vi, "none", name, report, model)

    monkeypatch.setattr(registering, "register", failing)
    with pytest.raises(InputError, match="simulated"):
        registering.register_folders(tmp_path / "ir", tmp_path / "vi", out,
                                     verbose=0)
    assert [p.name for p in out.rglob("*")] == ["a.png"]
    assert (out / "a.png").read_bytes() == b"previous"


def test_unrelated_pair_falls_back_and_is_named(tmp_path):
    """A visible image that shows something else: not trusted, the
    infrared image is resized (not warped) and the pair is named."""
    import cv2

    if not TNO.is_dir():
        pytest.skip("../shared/datasets/TNO42 is not beside the project")
    ir = read_gray8(TNO / "ir" / "05.png")
    write_gray(tmp_path / "ir" / "odd.png", ir)
    vi = read_gray8(TNO / "vi" / "06.png")
    write_gray(tmp_path / "vi" / "odd.png", vi)
    out = tmp_path / "out"
    proc = run_cli(*REGISTER, "--ir_dir", tmp_path / "ir", "--vi_dir",
                   tmp_path / "vi", "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "transform" / "odd.json").read_text())
    assert record["fallback"] is True
    assert "odd" in proc.stderr and "fell back" in proc.stderr
    assert "fell back" in proc.stdout and "odd" in proc.stdout
    resized = cv2.resize(ir.astype(np.float32), vi.shape[::-1],
                         interpolation=cv2.INTER_LINEAR)
    png = read_gray8(out / "odd.png").astype(np.float32)
    assert np.abs(png - resized).mean() < 3
