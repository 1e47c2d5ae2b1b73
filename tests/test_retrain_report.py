"""scripts/retrain_figures.py (used by scripts/retrain_report.sh) reads the
log lines the Trainer writes and judges the retrain by the report's criteria."""

import csv
import subprocess
import sys

from conftest import ROOT
from stdfusion_tf import training


def _log(path, epoch_means):
    """An upstream-format log.txt: windows of 50, 50, 50, 50, 16 steps."""
    log = training.LossLog(path.parent, enabled=False)
    lines = []
    for epoch, mean in enumerate(epoch_means):
        for step in (49, 99, 149, 199, 215):
            m = {k: mean / 5 for k in training.LOSS_TERMS}
            m["total"] = mean
            lines.append(log.lines(m, 1e-3, epoch, len(epoch_means), step,
                                   216, 1.0)[1])
    path.write_text("\n".join(lines) + "\n")


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" /
                                                "retrain_figures.py"),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_curves_read_the_trainers_log(tmp_path):
    _log(tmp_path / "log.txt", [1.5, 0.75, 0.5])
    proc = _run("curves", "--log", tmp_path / "log.txt", "--out",
                tmp_path / "c.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "15 windows, up to epoch 3.00; epoch means 1.5000, 0.7500, " \
        "0.5000" in proc.stdout
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_beside_another_run(tmp_path):
    """--compare_log draws another run's epoch means in the same picture;
    this run's figures are still the ones printed."""
    _log(tmp_path / "log.txt", [1.5, 0.75])
    _log(tmp_path / "f32.txt", [1.4, 0.7, 0.6])
    proc = _run("curves", "--log", tmp_path / "log.txt", "--compare_log",
                tmp_path / "f32.txt", "--out", tmp_path / "c.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "10 windows, up to epoch 2.00; epoch means 1.5000, 0.7500" \
        in proc.stdout
    bad = _run("curves", "--log", tmp_path / "log.txt", "--compare_log",
               tmp_path / "none.txt", "--out", tmp_path / "d.png")
    assert bad.returncode != 0 and not (tmp_path / "d.png").exists()


def test_curves_of_a_resumed_run(tmp_path):
    """Killed in epoch 2 after two windows, resumed from epoch 2's start:
    the repeated windows count once (the resumed run's values)."""
    _log(tmp_path / "a.txt", [1.5, 9.0])
    _log(tmp_path / "b.txt", [1.5, 0.75, 0.5])
    a = (tmp_path / "a.txt").read_text().splitlines()
    b = (tmp_path / "b.txt").read_text().splitlines()
    (tmp_path / "log.txt").write_text("\n".join(b[:5] + a[5:7] + b[5:])
                                      + "\n")
    proc = _run("curves", "--log", tmp_path / "log.txt", "--out",
                tmp_path / "c.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "15 windows, up to epoch 3.00; epoch means 1.5000, 0.7500, " \
        "0.5000" in proc.stdout


def test_verdict_within_one_std(tmp_path):
    rows = [("released", f"{i:02d}", 1.0 + i, 5.0) for i in range(4)]
    rows += [("retrained", f"{i:02d}", 1.5 + i, 9.0 + i) for i in range(4)]
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "name", "EN", "MI"])
        w.writerows(rows)
    proc = _run("verdict", "--metrics_csv", tmp_path / "metrics.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    # EN: 3.0 vs 2.5 +- 1.29 -> within; MI: 10.5 vs 5 +- 0 -> outside
    assert out[0].startswith("EN") and out[0].endswith("within one std")
    assert out[1].startswith("MI") and "OUTSIDE" in out[1]
    assert out[2] == ("1 of 2 metric means within one per-image std of the "
                      "release's (4 pairs)")
