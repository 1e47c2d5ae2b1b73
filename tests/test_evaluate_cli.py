"""evaluate.py: the report files and bad input."""

import csv

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli, write_gray
from stdfusion_tf import metrics as M
from stdfusion_tf.evaluation import read_u8


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(5)
    for stem in ("1", "2", "10"):
        ir = rng.integers(0, 256, (30, 40))
        vi = rng.integers(0, 256, (30, 40))
        write_gray(tmp_path / "ir" / f"{stem}.png", ir)
        write_gray(tmp_path / "vi" / f"{stem}.bmp", vi)
        write_gray(tmp_path / "good" / f"{stem}.png", (ir + vi) // 2)
        write_gray(tmp_path / "bad" / f"{stem}.png", ir // 4)
        write_gray(tmp_path / "mid" / f"{stem}.png", (3 * ir + vi) // 4)
    (tmp_path / "good" / "timings.csv").write_text(
        "name,height,width,seconds\n1,30,40,0.5\n2,30,40,0.7\n10,30,40,0.6\n")
    return tmp_path


def _evaluate(tmp_path, *args):
    out = tmp_path / "report"
    return run_cli(ROOT / "evaluate.py", "--ir_dir", tmp_path / "ir",
                   "--vi_dir", tmp_path / "vi", "--out_dir", out, *args,
                   cwd=tmp_path), out


def test_report(folders):
    proc, out = _evaluate(folders, "--fused", f"Good={folders / 'good'}",
                          "--fused", f"Bad={folders / 'bad'}", "--fused",
                          f"Mid={folders / 'mid'}")
    assert proc.returncode == 0, proc.stderr
    table = (out / "table.md").read_text()
    assert "| Method | EN | MI | VIF | SF |" in table
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 9
    assert list(rows[0]) == ["method", "name", "EN", "MI", "VIF", "SF",
                             "SF255"]
    assert [r["name"] for r in rows[:3]] == ["1", "1", "1"]
    # values are the library's on the same files
    f = read_u8(folders / "good" / "10.png")
    a = read_u8(folders / "ir" / "10.png")
    b = read_u8(folders / "vi" / "10.bmp")
    row = next(r for r in rows if r["method"] == "Good" and r["name"] == "10")
    want = M.evaluate(f, a, b, ["EN", "MI", "VIF", "SF"])
    for k, v in want.items():
        assert float(row[k]) == v
    # means ± sample std, best bold, second italic, per column
    vif = {m: [float(r["VIF"]) for r in rows if r["method"] == m]
           for m in ("Good", "Bad", "Mid")}
    best = max(vif, key=lambda m: np.mean(vif[m]))
    second = sorted(vif, key=lambda m: np.mean(vif[m]))[-2]
    line = next(l for l in table.splitlines() if l.startswith(f"| {best} "))
    cell = f"{np.mean(vif[best]):.4f} ± {np.std(vif[best], ddof=1):.4f}"
    assert f"**{cell}**" in line.split("|")[4]
    line = next(l for l in table.splitlines() if l.startswith(f"| {second} "))
    assert line.split("|")[4].strip().startswith("_")
    # runtime table from test.py's timings.csv
    assert "| Good | 3 | 0.6000 ± 0.1000 |" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_metrics_and_jpeg_in_bmp(upstream, tmp_path):
    out = tmp_path / "r"
    proc = run_cli(ROOT / "evaluate.py", "--ir_dir", upstream / "Test_ir",
                   "--vi_dir", upstream / "Test_vi", "--fused",
                   f"STDFusionNet={upstream / 'STDFusionNet_Results'}",
                   "--metrics", "all", "--out_dir", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 9
    assert list(rows[0])[2:] == list(M.ALL_METRICS)


def test_unpaired_names(folders):
    (folders / "bad" / "2.png").unlink()
    proc, out = _evaluate(folders, "--fused", f"Bad={folders / 'bad'}")
    assert_one_line_error(proc, "unpaired", "'2.*'", folders / "bad")
    assert not out.exists()
    proc, out = _evaluate(folders, "--fused", f"Bad={folders / 'bad'}",
                          "--allow_missing")
    assert proc.returncode == 0, proc.stderr
    assert "Skipped 1 name(s) missing from some folder: 2" in proc.stdout
    assert "2 image pairs" in (out / "table.md").read_text()


def test_size_mismatch(folders):
    write_gray(folders / "bad" / "10.png", np.zeros((30, 41)))
    proc, out = _evaluate(folders, "--fused", f"Good={folders / 'good'}",
                          "--fused", f"Bad={folders / 'bad'}")
    assert_one_line_error(proc, folders / "bad" / "10.png", "size mismatch")
    assert not out.exists()


def test_unreadable_and_empty(folders):
    (folders / "good" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc, out = _evaluate(folders, "--fused", f"Good={folders / 'good'}")
    assert_one_line_error(proc, folders / "good" / "2.png")
    assert not out.exists()
    (folders / "empty").mkdir()
    proc, out = _evaluate(folders, "--fused", f"E={folders / 'empty'}")
    assert_one_line_error(proc, folders / "empty", "no images")
    assert not out.exists()


def test_bad_flags(folders):
    proc, _ = _evaluate(folders, "--fused", "nodir")
    assert_one_line_error(proc, "NAME=DIR")
    proc, _ = _evaluate(folders, "--fused", f"G={folders / 'good'}",
                        "--metrics", "EN,FOO")
    assert_one_line_error(proc, "FOO")
