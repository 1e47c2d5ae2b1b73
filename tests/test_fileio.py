"""fileio and its users: output paths that collide and full disks: every
command ends with one line naming the path, exit 1, nothing written and
nothing earlier lost.

Unwritable locations are real failures, not permission bits (the tests run
as root, which ignores them): a path under a regular file (ENOTDIR), a
folder under /proc (the kernel refuses new files there, even to root), and
a full disk simulated in-process by making the image/checkpoint writer fail
with ENOSPC half-way through a file.  (The same runs were also checked by
hand on a real 64 KB tmpfs.)
"""

import errno
import os
import pathlib

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli, write_gray
from stdfusion_tf import fileio
from stdfusion_tf.fileio import StagedOutputs
from stdfusion_tf.errors import InputError

PROC = pathlib.Path("/proc/stdfusion-no-such-folder")


def _tree(folder):
    """{relative path: bytes} of every file under ``folder`` (None: dirs)."""
    folder = pathlib.Path(folder)
    if not folder.exists():
        return None
    if folder.is_file():
        return folder.read_bytes()
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file()
                                         else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def pairs(tmp_path):
    rng = np.random.default_rng(3)
    for stem in ("1", "2"):
        write_gray(tmp_path / "ir" / f"{stem}.png",
                   rng.integers(0, 256, (30, 26)))
        write_gray(tmp_path / "vi" / f"{stem}.png",
                   rng.integers(0, 256, (30, 26)))
    return tmp_path / "ir", tmp_path / "vi"


def _fuse(cwd, ir, vi, out, weights, *flags):
    return run_cli(ROOT / "test.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--output_dir", out, "--checkpoint", weights, *flags,
                   cwd=cwd)


# -------------------------------------------------------------- test.py --

def test_fuse_output_collisions(pairs, tmp_path, jiayi_weights):
    ir, vi = pairs
    # 1. --output_dir is an existing file (was a FileExistsError traceback)
    blocker = tmp_path / "fused.txt"
    blocker.write_text("keep me")
    proc = _fuse(tmp_path, ir, vi, blocker, jiayi_weights)
    assert_one_line_error(proc, blocker, "not a folder")
    assert blocker.read_text() == "keep me"
    # 2. --output_dir below a file
    proc = _fuse(tmp_path, ir, vi, blocker / "out", jiayi_weights)
    assert_one_line_error(proc, blocker / "out", "is a file")
    # 3. an output image path is a folder; the earlier outputs survive
    out = tmp_path / "out"
    (out / "2.bmp").mkdir(parents=True)
    (out / "1.bmp").write_bytes(b"an earlier result")
    before = _tree(out)
    proc = _fuse(tmp_path, ir, vi, out, jiayi_weights)
    assert_one_line_error(proc, out / "2.bmp", "is a folder")
    assert _tree(out) == before
    # 4. a folder nobody may create files in, root included
    proc = _fuse(tmp_path, ir, vi, PROC / "out", jiayi_weights)
    assert_one_line_error(proc, PROC / "out", "cannot write")
    assert not (tmp_path / "checkpoint").exists()


ENOSPC_AT_SECOND_IMAGE = r"""
import errno, runpy, sys
import imageio.v3 as iio
real, calls = iio.imwrite, []
def imwrite(uri, image, **kwargs):
    calls.append(uri)
    if len(calls) == 2:   # the disk fills up half-way through image 2
        with open(uri, "wb") as f:
            f.write(b"BM half an image")
        raise OSError(errno.ENOSPC, "No space left on device", str(uri))
    return real(uri, image, **kwargs)
iio.imwrite = imwrite
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_fuse_full_disk_keeps_the_previous_results(pairs, tmp_path,
                                                   jiayi_weights):
    """ENOSPC while saving image 2 of 2: one line naming it, exit 1, no
    temporary or half-written file, and the results of an earlier run
    (1.bmp, 2.bmp, timings.csv) are still the earlier ones."""
    ir, vi = pairs
    out = tmp_path / "out"
    proc = _fuse(tmp_path, ir, vi, out, jiayi_weights)
    assert proc.returncode == 0, proc.stderr
    before = _tree(out)
    assert sorted(before) == ["1.bmp", "2.bmp", "timings.csv"]
    proc = run_cli("-c", ENOSPC_AT_SECOND_IMAGE, ROOT / "test.py",
                   "--ir_dir", ir, "--vi_dir", vi, "--output_dir", out,
                   "--checkpoint", jiayi_weights, "--save_mode", "clip",
                   cwd=tmp_path)
    assert_one_line_error(proc, out / "2.bmp", "No space left on device")
    assert _tree(out) == before
    # the same into a new folder: nothing is left behind, not even it
    proc = run_cli("-c", ENOSPC_AT_SECOND_IMAGE, ROOT / "test.py",
                   "--ir_dir", ir, "--vi_dir", vi, "--output_dir",
                   tmp_path / "new", "--checkpoint", jiayi_weights,
                   cwd=tmp_path)
    assert_one_line_error(proc, "No space left on device")
    assert not (tmp_path / "new").exists()


def test_atomic_output_on_a_full_disk(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("previous")
    with pytest.raises(InputError, match="report.md: cannot write "
                       r"\(No space left on device\)"):
        with fileio.atomic_output(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["report.md"]
    with pytest.raises(InputError, match="is a folder"):
        with fileio.atomic_output(tmp_path):
            pass
    with pytest.raises(InputError, match="cannot write"):
        with fileio.atomic_output(target / "below_a_file.md"):
            pass


def test_checkpoint_write_on_a_full_disk(tmp_path, monkeypatch):
    """SaveV2 failing (TF raises its own error type on ENOSPC): one-line
    InputError, the earlier checkpoint of that name intact, no temporary
    folder left."""
    import tensorflow as tf

    from stdfusion_tf import checkpoints

    prefix = tmp_path / "run" / "Fusion.model-0"
    checkpoints.write_tf1_checkpoint(prefix, {"a": np.ones(3, np.float32)})
    before = _tree(tmp_path / "run")

    def full(**kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "ckpt.data-00000-of-00001; No space left on device")

    monkeypatch.setattr(tf.raw_ops, "SaveV2", full)
    with pytest.raises(InputError, match="Fusion.model-0: cannot write"):
        checkpoints.write_tf1_checkpoint(prefix,
                                         {"a": np.zeros(3, np.float32)})
    assert _tree(tmp_path / "run") == before
    with pytest.raises(InputError, match="not a folder"):
        checkpoints.write_tf1_checkpoint(
            tmp_path / "run" / "checkpoint" / "x", {})


# ------------------------------------------- train, evaluate, export, convert --

def test_train_summary_and_checkpoint_dir_collisions(tmp_path):
    """train.py where `log` (default --summary_dir) or `checkpoint` is a
    file: one line, exit 1, nothing fetched or written."""
    (tmp_path / "log").write_text("not a folder")
    proc = run_cli(ROOT / "train.py", "--epoch", "1", cwd=tmp_path)
    assert_one_line_error(proc, tmp_path / "log", "not a folder")
    assert sorted(os.listdir(tmp_path)) == ["log"]
    (tmp_path / "log").unlink()
    (tmp_path / "checkpoint").write_text("not a folder")
    proc = run_cli(ROOT / "train.py", "--epoch", "1", cwd=tmp_path)
    assert_one_line_error(proc, tmp_path / "checkpoint")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]


def test_evaluate_output_collisions(pairs, tmp_path):
    ir, vi = pairs
    blocker = tmp_path / "report"
    blocker.write_text("keep")
    proc = run_cli(ROOT / "evaluate.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--fused", f"X={ir}", "--out_dir", blocker, cwd=tmp_path)
    assert_one_line_error(proc, blocker, "not a folder")
    assert blocker.read_text() == "keep"
    out = tmp_path / "r"
    (out / "metrics.csv").mkdir(parents=True)
    (out / "table.md").write_text("earlier")
    proc = run_cli(ROOT / "evaluate.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--fused", f"X={ir}", "--out_dir", out, cwd=tmp_path)
    assert_one_line_error(proc, out / "metrics.csv", "is a folder")
    assert (out / "table.md").read_text() == "earlier"
    proc = run_cli(ROOT / "evaluate.py", "--ir_dir", ir, "--vi_dir", vi,
                   "--fused", f"X={ir}", "--out_dir", PROC, cwd=tmp_path)
    assert_one_line_error(proc, PROC, "cannot write")


def test_export_and_convert_collisions(tmp_path, jiayi_weights):
    blocker = tmp_path / "export"
    blocker.write_text("keep")
    proc = run_cli("-m", "stdfusion_tf.commands.export", "--checkpoint",
                   jiayi_weights, "--output_dir", blocker, cwd=tmp_path)
    assert_one_line_error(proc, blocker, "not a folder")
    assert blocker.read_text() == "keep"
    proc = run_cli("-m", "convert.to_tf1", "--src", jiayi_weights, "--dst",
                   blocker / "Fusion.model-1", cwd=tmp_path)
    assert_one_line_error(proc, blocker, "not a folder")
    proc = run_cli("-m", "convert.to_tf1", "--src", jiayi_weights, "--dst",
                   PROC / "Fusion.model-1", cwd=tmp_path)
    assert_one_line_error(proc, "cannot write")
    (tmp_path / "w.weights.h5").mkdir()
    proc = run_cli("-m", "convert.from_tf1", "--src",
                   ROOT.parent / "shared" / "upstream" / "checkpoints"
                   / "jiayi-ma", "--dst", tmp_path / "w.weights.h5",
                   cwd=tmp_path)
    assert_one_line_error(proc, tmp_path / "w.weights.h5", "is a folder")
    assert blocker.read_text() == "keep"


def test_asset_folder_collision(tmp_path):
    (tmp_path / "checkpoint").write_text("not a folder")
    from stdfusion_tf import assets

    with pytest.raises(InputError, match="not a folder"):
        assets.fetch("jiayi-ma-29", root=tmp_path,
                     mirror=str(ROOT.parent / "shared" / "upstream"))
    assert (tmp_path / "checkpoint").read_text() == "not a folder"


def test_outputs_get_the_usual_permissions(tmp_path):
    """Temporary files are 0600; the renamed outputs are 0666 & ~umask."""
    with fileio.atomic_output(tmp_path / "a.txt") as tmp:
        open(tmp, "w").write("x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~fileio.UMASK


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    """Temporary files are tagged with their writer's process id; those of
    runs no longer alive go, a live run's and other programs' stay."""
    import subprocess
    import sys

    from stdfusion_tf import fileio

    dead = subprocess.run([sys.executable, "-c", "import os; "
                           "print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    folder = tmp_path / "out"
    folder.mkdir()
    stale = folder / f".tmp-stdf{dead}-01.bmp-abc.bmp"
    stale.write_bytes(b"half")
    (folder / f".tmp-stdf{dead}-ckpt-xyz").mkdir()
    (folder / f".tmp-stdf{dead}-ckpt-xyz" / "ckpt.index").write_bytes(b"")
    live = folder / f".tmp-stdf{os.getpid()}-02.bmp-def.bmp"
    live.write_bytes(b"mine")
    other = folder / ".tmp-someone-else"
    other.write_bytes(b"not ours")
    (folder / "01.bmp").write_bytes(b"an output")
    fileio.check_writable(folder)  # what every command does first
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [live.name, other.name, "01.bmp"])
    # atomic_output's own temporary file carries this process's tag
    with fileio.atomic_output(folder / "x.txt") as tmp:
        assert os.path.basename(tmp).startswith(f".tmp-stdf{os.getpid()}-")
        with open(tmp, "w") as f:
            f.write("x")
    assert (folder / "x.txt").read_text() == "x"


# ------------------------------------------------------ StagedOutputs --

def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_commit_puts_every_file_in_place(tmp_path):
    out = StagedOutputs(tmp_path / "out")
    with out:
        _write(out.stage(out.path("a.txt")), "a")
        _write(out.stage(out.path("sub", "deep", "b.txt")), "b")
        assert not os.path.exists(out.path("a.txt"))  # staged, not yet there
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert (tmp_path / "out" / "sub" / "deep" / "b.txt").read_text() == "b"
    assert sorted(os.listdir(tmp_path / "out")) == ["a.txt", "sub"]


def test_rollback_keeps_earlier_outputs_and_removes_what_it_made(tmp_path):
    (tmp_path / "out").mkdir()
    _write(tmp_path / "out" / "a.txt", "earlier")
    out = StagedOutputs(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        with out:
            _write(out.stage(out.path("a.txt")), "new")
            _write(out.stage(out.path("sub", "deep", "b.txt")), "b")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "out") == ["a.txt"]
    assert (tmp_path / "out" / "a.txt").read_text() == "earlier"
    fresh = StagedOutputs(tmp_path / "new")
    fresh.makedirs()
    _write(fresh.stage(fresh.path("x.txt")), "x")
    fresh.rollback()
    assert not (tmp_path / "new").exists()


def test_a_failed_write_names_the_target(tmp_path):
    out = StagedOutputs(tmp_path)
    target = out.path("x.png")
    with pytest.raises(InputError) as info:
        with out, out.writing(target) as tmp:
            raise InputError(tmp, "cannot write (No space left on device)")
    assert info.value.path == target
    (tmp_path / "d.png").mkdir()  # a folder where the file goes
    out = StagedOutputs(tmp_path)
    with pytest.raises(InputError) as info:
        with out:
            _write(out.stage(out.path("d.png")), "x")
    assert "d.png" in str(info.value)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp")] == []
