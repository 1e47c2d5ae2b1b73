"""fileio.StagedOutputs: the one staged-output mechanism of the folder runs
(STDFusionNet's fusion and UMF-CMGR's pipeline)."""

import os

import pytest

from stdfusion_tf.errors import InputError
from stdfusion_tf.fileio import StagedOutputs


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
