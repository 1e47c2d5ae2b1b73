"""bench/umf.py's upstream side without PyTorch: skipped with a message, or a
one-line error when a --torch_python was asked for.  Cheap: no network is
built, no TensorFlow model traced (the full benchmark is run by hand)."""

import importlib.util
import sys

import numpy as np
import pytest

from conftest import ROOT



@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_umf",
                                                  ROOT / "bench" / "umf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines no flags (only under __main__)
    return module


@pytest.fixture(scope="module")
def upstream_src(umf):
    return str(umf / "upstream_src")


def test_default_python_without_torch_is_skipped(bench, monkeypatch):
    assert bench.upstream_python("/some/python") == "/some/python"
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name: None)
    assert bench.upstream_python(None) is None
    assert bench.SKIPPED == "upstream PyTorch not importable: skipped"


def test_worker_without_torch_is_unavailable(bench, upstream_src, tmp_path):
    """The worker started with a Python whose ``import torch`` fails: the
    reason comes back as Unavailable (printed after the skip message)."""
    blocker = tmp_path / "blocker"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text(
        "raise ImportError('No module named torch (test)')\n")
    npz = tmp_path / "inputs.npz"
    z = np.zeros((1, 4, 4), np.float32)
    np.savez(npz, target=z, source=z, ir=z, vi=z)
    env = {"PYTHONPATH": str(blocker)}
    with pytest.raises(bench.Unavailable, match="No module named torch"):
        bench.Upstream(sys.executable, upstream_src, "reg.pth", "fus.pth",
                       str(npz), 2, env=env)
    with pytest.raises(bench.Unavailable, match="cannot start"):
        bench.Upstream(str(tmp_path / "no-python"), upstream_src, "r", "f",
                       str(npz), 2)
    with pytest.raises(bench.Unavailable, match="no upstream code"):
        bench.Upstream(sys.executable, str(tmp_path), "r", "f", str(npz), 2)
