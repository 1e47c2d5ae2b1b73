"""Registration metrics (upstream Evaluation/metrics.py), umf.evaluate_reg."""

import csv

import numpy as np
import pytest
from scipy import ndimage

from conftest import assert_one_line_error, run_cli, write_gray
from stdfusion_tf import metrics as fusion_metrics
from stdfusion_tf.errors import InputError
from stdfusion_tf.umf import deform, reg_evaluation, reg_metrics as R

@pytest.fixture(scope="session")
def roadscene(umf):
    return umf / "RoadScene"


def _pair(seed=0, shape=(40, 52)):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    gt = np.clip(128 + 600 * smooth + rng.normal(0, 6, shape), 0, 255)
    image = np.clip(np.roll(gt, 1, axis=1) + rng.normal(0, 10, shape), 0, 255)
    return gt.astype(np.uint8), image.astype(np.uint8)


def test_scaling_is_u8_over_255_in_float64():
    u8 = np.arange(256, dtype=np.uint8)
    assert np.array_equal(R.to_float(u8), (u8 / 255.0).astype(np.float32))
    assert R.to_float(u8).dtype == np.float32


def test_mse_and_ncc_against_numpy_formulas():
    gt, im = _pair()
    g, x = gt / 255.0, im / 255.0
    assert R.mse(gt, im) == pytest.approx(np.mean((g - x) ** 2), rel=1e-6)
    # upstream's asymmetric guards: (var_gt + 1e-5) (var_image + 1e-6)
    cov = np.mean((g - g.mean()) * (x - x.mean()))
    want = cov / np.sqrt((g.var() + 1e-5) * (x.var() + 1e-6))
    assert R.ncc(gt, im) == pytest.approx(want, rel=1e-5)
    assert R.ncc(gt, gt) == pytest.approx(1.0, abs=1e-3)
    assert R.ncc(gt, 255 - gt) == pytest.approx(-1.0, abs=1e-3)
    assert R.mse(gt, gt) == 0.0


def test_window_sums_are_zero_padded_box_sums():
    x = np.arange(35, dtype=np.float32).reshape(5, 7)
    got = R.window_sums(x, 3)
    want = np.zeros_like(x)
    for i in range(5):
        for j in range(7):
            want[i, j] = x[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].sum()
    assert np.array_equal(got, want)
    with pytest.raises(ValueError):
        R.window_sums(x, 4)


def test_lncc_against_float64_formula():
    """Independent float64 local NCC (box means over 17 x 17, zero padding,
    n = 289 everywhere); float32 differs only by rounding here (textured
    images: no near-zero variances)."""
    gt, im = _pair()
    i, j = gt / 255.0, im / 255.0
    n = 17 * 17

    def box(a):
        return ndimage.uniform_filter(a, 17, mode="constant") * n

    cross = box(i * j) - box(i) * box(j) / n
    var_i = box(i * i) - box(i) ** 2 / n
    var_j = box(j * j) - box(j) ** 2 / n
    want = np.mean(cross ** 2 / (var_i * var_j + 1e-5))
    assert R.lncc(gt, im) == pytest.approx(want, rel=2e-4)
    # a brightness/contrast change keeps the local correlation
    assert R.lncc(gt, gt) == pytest.approx(
        np.mean(var_i ** 2 / (var_i ** 2 + 1e-5)), rel=2e-4)


def test_mi_and_epe():
    gt, im = _pair()
    h = fusion_metrics.entropy
    joint = np.bincount(np.minimum(gt.ravel(), 254).astype(int) * 256
                        + np.minimum(im.ravel(), 254), minlength=65536)
    p = joint[joint > 0] / joint.sum()
    want = h(gt) + h(im) + np.sum(p * np.log2(p))
    assert R.mutual_information(gt, im) == pytest.approx(want, rel=1e-12)
    # MI(A, A) = H(A) (no 255s: the MATLAB bin quirk does not apply)
    a = np.minimum(gt, 250)
    assert R.mutual_information(a, a) == pytest.approx(h(a), rel=1e-12)
    flow = np.zeros((2, 4, 5), np.float32)
    true = flow.copy()
    true[0], true[1] = 3.0, 4.0
    assert R.end_point_error(flow, true) == 5.0
    true[:, :2] = 0  # 2 of 4 rows exact
    assert R.end_point_error(flow, true) == pytest.approx(2.5)


def test_roadscene_acceptance(roadscene, tmp_path):
    """Upstream's registration table (metric side): the stored deformed (ir_warp) and
    registered (ir_reg) RoadScene images against ir_256, all 221 pairs, equal
    upstream's float32 figures (README of ../shared/umf-cmgr)."""
    out = tmp_path / "report"
    proc = run_cli("-m", "umf.evaluate_reg",
                   "--warped_dir", roadscene / "ir_warp",
                   "--registered_dir", roadscene / "ir_reg",
                   "--gt_dir", roadscene / "ir_256", "--out_dir", out)
    assert proc.returncode == 0, proc.stderr
    means = {r["method"]: r for r in csv.DictReader(open(out / "mean.csv"))}
    want = {"warped": (0.010862, 0.88515, 0.46757),
            "registered": (0.0047011, 0.94955, 0.59264)}
    for method, values in want.items():
        assert means[method]["images"] == "221"
        for metric, value in zip(("MSE", "NCC", "LNCC"), values):
            got = float(means[method][metric])
            assert f"{got:.5g}" == f"{value:.5g}", (method, metric, got)
        assert 1.5 < float(means[method]["MI"]) < 3.5
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 442
    assert list(rows[0]) == ["method", "name", "MSE", "NCC", "LNCC", "MI"]
    assert "| warped | 0.010862 ± " in proc.stdout
    assert "**0.59264 ± " in proc.stdout  # the better LNCC in bold
    assert (out / "table.md").read_text() in proc.stdout


@pytest.fixture
def small(tmp_path):
    """Aligned originals, their seeded deformation, a 'registration' that
    is the exact inverse flow, as the command lines lay them out."""
    rng = np.random.default_rng(1)
    for stem in ("a", "b"):
        gt = ndimage.gaussian_filter(rng.normal(size=(36, 44)), 2)
        write_gray(tmp_path / "gt" / f"{stem}.png",
                   np.clip(128 + 500 * gt, 0, 255))
    proc = run_cli("-m", "umf.make_misaligned", "--ir_dir", tmp_path / "gt",
                   "--output_dir", tmp_path / "mis", "--seed", 3,
                   "--alpha", 8)
    assert proc.returncode == 0, proc.stderr
    for stem in ("a", "b"):
        d = np.load(tmp_path / "mis" / "flow" / f"{stem}.npy")
        (tmp_path / "reg" / "flow").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "reg" / "flow" / f"{stem}.npy",
                deform.invert_displacement(d))
        (tmp_path / "reg" / f"{stem}.png").write_bytes(
            (tmp_path / "gt" / f"{stem}.png").read_bytes())
    return tmp_path


def _evaluate_reg(root, *extra, out=True):
    args = ["-m", "umf.evaluate_reg", "--warped_dir", root / "mis",
            "--registered_dir", root / "reg", "--gt_dir", root / "gt"]
    if out:
        args += ["--out_dir", root / "out"]
    return run_cli(*args, *extra)


def test_epe_from_make_misaligned_flows(small):
    proc = _evaluate_reg(small, "--true_flow_dir", small / "mis" / "flow")
    assert proc.returncode == 0, proc.stderr
    rows = {(r["method"], r["name"]): r
            for r in csv.DictReader(open(small / "out" / "metrics.csv"))}
    for stem in ("a", "b"):
        undo = deform.invert_displacement(
            np.load(small / "mis" / "flow" / f"{stem}.npy"))
        # no registration: the EPE of a zero flow; the exact inverse: 0
        assert float(rows["warped", stem]["EPE"]) == pytest.approx(
            np.hypot(*undo.astype(np.float64)).mean(), rel=1e-9)
        assert float(rows["warped", stem]["EPE"]) > 0.5
        assert float(rows["registered", stem]["EPE"]) < 1e-6
        assert float(rows["registered", stem]["MSE"]) == 0.0
    # the registration's flow the wrong way round (library call) is far off
    for stem in ("a", "b"):
        np.save(small / "reg" / "flow" / f"{stem}.npy",
                -np.load(small / "reg" / "flow" / f"{stem}.npy"))
    rows, columns, _ = reg_evaluation.evaluate_folders(
        small / "mis", small / "reg", small / "gt", small / "reg" / "flow",
        small / "mis" / "flow")
    assert columns[-1] == "EPE"
    assert all(r["EPE"] > 1.0 for r in rows)


def test_bad_input(small):
    """One line, exit 1, nothing written: unpaired names, mismatched sizes,
    an empty folder (command line); bad flows (library, same errors)."""
    def bad(needle):
        proc = _evaluate_reg(small)
        assert_one_line_error(proc, needle)
        assert not (small / "out").exists()

    gt_a = (small / "gt" / "a.png").read_bytes()
    (small / "reg" / "c.png").write_bytes(gt_a)
    bad("unpaired")  # c only among the registered images
    proc = _evaluate_reg(small, "--allow_missing", out=False)
    assert proc.returncode == 0 and "Skipped 1 name(s)" in proc.stdout
    (small / "reg" / "c.png").unlink()
    write_gray(small / "reg" / "b.png", np.zeros((36, 45)))
    bad("size mismatch")
    gt_b = (small / "gt" / "b.png").read_bytes()
    (small / "reg" / "b.png").write_bytes(gt_b)
    (small / "empty").mkdir()
    proc = run_cli("-m", "umf.evaluate_reg", "--warped_dir", small / "empty",
                   "--registered_dir", small / "reg", "--gt_dir",
                   small / "gt", "--out_dir", small / "out")
    assert_one_line_error(proc, "no images")
    assert not (small / "out").exists()

    def bad_flow(needle, flow_dir=small / "reg" / "flow"):
        with pytest.raises(InputError, match=needle):
            reg_evaluation.evaluate_folders(
                small / "mis", small / "reg", small / "gt", flow_dir,
                small / "mis" / "flow")

    with pytest.raises(InputError, match="--true_flow_dir"):
        reg_evaluation.evaluate_folders(small / "mis", small / "reg",
                                        small / "gt", small / "reg" / "flow")
    np.save(small / "reg" / "flow" / "a.npy", np.zeros((2, 44, 36)))
    bad_flow(r"a\.npy: flow of shape \[2, 44, 36\]")
    (small / "reg" / "flow" / "a.npy").write_bytes(b"not an array")
    bad_flow(r"a\.npy: not a NumPy")
    np.save(small / "reg" / "flow" / "a.npy",
            np.full((2, 36, 44), np.nan, np.float32))
    bad_flow("NaN")
    (small / "reg" / "flow" / "a.npy").unlink()
    bad_flow(r"a\.npy: no such file")
