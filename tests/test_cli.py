"""cli.run: SIGTERM and SIGINT end a run with one line (how many outputs were
written), a non-zero exit, no temporary files and earlier files intact; the
temporary files of a SIGKILLed run are removed by the next run into its
output folder.  (fileio's signal handlers and pid-tagged temporaries.)"""

import shutil
import signal

import pytest

from conftest import ROOT, run_cli, signal_when, temporaries, write_gray


@pytest.fixture(scope="module")
def many_pairs(tmp_path_factory):
    """400 small pairs (a run long enough to be interrupted after its first
    output is staged), and one pair alone."""
    import numpy as np

    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for i in range(400):
        for folder in ("Test_ir", "Test_vi"):
            write_gray(root / folder / f"{i:03d}.png",
                       rng.integers(0, 256, (48, 64)))
    for folder in ("Test_ir", "Test_vi"):
        (root / "one" / folder).mkdir(parents=True)
        shutil.copy(root / folder / "000.png", root / "one" / folder)
    return root


def _fuse_args(pairs, out, weights):
    return [ROOT / "test.py", "--ir_dir", pairs / "Test_ir", "--vi_dir",
            pairs / "Test_vi", "--output_dir", out, "--checkpoint", weights]


def _earlier(out):
    """Files of an earlier run in ``out``: must come through intact."""
    out.mkdir()
    earlier = {"keep.txt": b"an earlier file",
               "000.bmp": b"an earlier result of the same name"}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    return earlier


@pytest.mark.parametrize("sig", [
    signal.SIGTERM,
    # the same handler; in the slow run only
    pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_signal_ends_a_fuse_run_with_one_line(many_pairs, tmp_path,
                                              jiayi_weights, sig):
    out = tmp_path / "out"
    earlier = _earlier(out)
    proc = signal_when(_fuse_args(many_pairs, out, jiayi_weights),
                       lambda: bool(temporaries(out)), sig, cwd=tmp_path)
    assert proc.signalled, proc.stdout + proc.stderr
    assert proc.returncode == 128 + sig, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "interrupted" in l]
    assert lines == [f"test.py: interrupted ({sig.name}): 0 output file(s) "
                     "written; partial outputs and temporary files removed, "
                     "earlier files intact"], proc.stderr
    assert temporaries(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(earlier)
    for name, data in earlier.items():
        assert (out / name).read_bytes() == data


def test_killed_runs_temporaries_go_with_the_next_run(many_pairs, tmp_path,
                                                      jiayi_weights):
    out = tmp_path / "out"
    earlier = _earlier(out)
    proc = signal_when(_fuse_args(many_pairs, out, jiayi_weights),
                       lambda: bool(temporaries(out)), signal.SIGKILL,
                       cwd=tmp_path)
    assert proc.signalled and proc.returncode == -signal.SIGKILL
    left = temporaries(out)
    assert left and all(n.startswith(".tmp-stdf") for n in left), left
    proc = run_cli(*_fuse_args(many_pairs / "one", out, jiayi_weights),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert temporaries(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*earlier, "timings.csv"])
    assert (out / "keep.txt").read_bytes() == earlier["keep.txt"]
    assert (out / "000.bmp").read_bytes()[:2] == b"BM"  # this run's result
