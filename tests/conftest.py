"""Shared fixtures.  Data comes from ../shared (never copied into the repo)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
UPSTREAM = SHARED / "upstream"
UMF = SHARED / "umf-cmgr"  # UMF-CMGR's weights, RoadScene set, references
RELEASES = {  # release -> checkpoint folder in ../shared
    "jiayi-ma": UPSTREAM / "checkpoints" / "jiayi-ma",
    "Linfeng-Tang": UPSTREAM / "checkpoints" / "Linfeng-Tang",
}


@pytest.fixture(scope="session")
def upstream():
    if not UPSTREAM.is_dir():
        pytest.skip("../shared/upstream is not beside the project")
    return UPSTREAM


@pytest.fixture(scope="session")
def umf():
    """../shared/umf-cmgr (the UMF-CMGR tests' data), else the test is
    skipped."""
    if not UMF.is_dir():
        pytest.skip("../shared/umf-cmgr is not beside the project")
    return UMF


@pytest.fixture(scope="session")
def released_arrays(upstream):
    """{(release, epoch): (root, {TF1 name: array})} of the 4 checkpoints."""
    from stdfusion_tf.checkpoints import read_tf1_weights
    from stdfusion_tf.model import tf1_variable_shapes

    shapes = tf1_variable_shapes()
    out = {}
    for release, folder in RELEASES.items():
        for epoch in (28, 29):
            root, arrays, _ = read_tf1_weights(
                folder / f"Fusion.model-{epoch}", shapes)
            out[release, epoch] = root, arrays
    return out


@pytest.fixture(scope="session")
def jiayi_weights(released_arrays, tmp_path_factory):
    """The jiayi-ma model-29 weights as a .weights.h5 file."""
    from stdfusion_tf.checkpoints import assign_weights, save_keras_weights
    from stdfusion_tf.model import STDFusionNet

    model = assign_weights(STDFusionNet(),
                           released_arrays["jiayi-ma", 29][1])
    return save_keras_weights(
        model, tmp_path_factory.mktemp("w") / "jiayi-ma-29.weights.h5")


def run_cli(*args, cwd=None, env=None):
    """Run a command line of the project (``test.py`` or ``-m convert.x``)
    in a fresh interpreter; returns CompletedProcess with text output."""
    full_env = {k: v for k, v in os.environ.items()
                if k != "STDFUSION_MIRROR"}  # each test says where data is
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True,
                          timeout=600)


def kill_once_written(args, path, cwd, timeout=600):
    """Start ``python <args>`` in ``cwd``, SIGKILL it as soon as ``path``
    exists (the first resumable state), and wait; True if ``path`` exists."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "STDFUSION_MIRROR"}
    child = subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not path.exists() and child.poll() is None and \
            time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return path.exists()


def signal_when(args, ready, sig, cwd, env=None, timeout=600):
    """Start ``python <args>`` in ``cwd``, send it ``sig`` as soon as
    ``ready()`` is true, and wait; returns a CompletedProcess (text output)
    with ``signalled`` set to whether the signal was sent."""
    import time

    full_env = {k: v for k, v in os.environ.items()
                if k != "STDFUSION_MIRROR"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    out, err = (open(os.path.join(str(cwd), f".signal_when.{n}"), "w+")
                for n in ("out", "err"))
    with out, err:
        child = subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd,
                                 env=full_env, stdout=out, stderr=err,
                                 text=True)
        deadline = time.time() + timeout
        while not ready() and child.poll() is None and \
                time.time() < deadline:
            time.sleep(0.02)
        signalled = child.poll() is None
        if signalled:
            child.send_signal(sig)
        child.wait(timeout)
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(args, child.returncode,
                                           out.read(), err.read())
    for n in ("out", "err"):
        os.remove(os.path.join(str(cwd), f".signal_when.{n}"))
    proc.signalled = signalled
    return proc


def temporaries(folder):
    """The hidden temporary files (and folders) in ``folder``."""
    folder = pathlib.Path(folder)
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".tmp-")) if folder.is_dir() else []


def error_lines(proc):
    """Our one-line errors (TensorFlow's start-up log lines aside)."""
    return [l for l in proc.stderr.splitlines() if ": error: " in l]


def assert_one_line_error(proc, *needles):
    """Non-zero exit, exactly one error line, naming every needle, and no
    Python traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


def write_gray(path, array):
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path
