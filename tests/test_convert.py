"""convert.from_tf1 / convert.to_tf1 and the checkpoint readers."""

import os
import shutil

import h5py
import numpy as np
import pytest

from conftest import RELEASES, assert_one_line_error, run_cli
from stdfusion_tf.checkpoints import (assign_weights, read_keras_weights,
                                      read_tf1_weights, save_keras_weights,
                                      write_tf1_checkpoint)
from stdfusion_tf.model import STDFusionNet, tf1_variable_shapes
from stdfusion_tf.reference import max_abs_diff

CHECKPOINTS = [(r, e) for r in RELEASES for e in (28, 29)]


@pytest.mark.parametrize("release,epoch", CHECKPOINTS)
def test_release_matches_the_tf1_graph(released_arrays, release, epoch):
    root, arrays = released_arrays[release, epoch]
    assert root == {"jiayi-ma": "STMFusion_model",
                    "Linfeng-Tang": "STDFusion_model"}[release]
    model = assign_weights(STDFusionNet(), arrays)
    diff = max_abs_diff(model, arrays, shape=(2, 67, 45), seed=epoch)
    assert diff <= 1e-5


def test_validation_is_not_vacuous(released_arrays):
    """A model with one perturbed weight fails the same check."""
    arrays = released_arrays["jiayi-ma", 29][1]
    wrong = dict(arrays)
    name = "reconstruction_network/block3/conv2/w"
    wrong[name] = arrays[name] * 1.01
    model = assign_weights(STDFusionNet(), wrong)
    assert max_abs_diff(model, arrays) > 1e-5


@pytest.mark.parametrize("release,epoch", CHECKPOINTS)
def test_round_trip_keras_tf1_keras_is_bitwise(released_arrays, tmp_path,
                                               release, epoch):
    arrays = released_arrays[release, epoch][1]
    model = assign_weights(STDFusionNet(), arrays)
    h5 = save_keras_weights(model, tmp_path / "a.weights.h5")
    back = read_keras_weights(h5, STDFusionNet)
    prefix = write_tf1_checkpoint(
        tmp_path / "tf1" / "Fusion.model-7",
        {f"STMFusion_model/{k}": v for k, v in back.items()})
    root, again, _ = read_tf1_weights(tmp_path / "tf1", tf1_variable_shapes())
    assert root == "STMFusion_model" and prefix.endswith("Fusion.model-7")
    for name in arrays:
        assert again[name].dtype == arrays[name].dtype
        assert np.array_equal(again[name], arrays[name]), name


def test_cli_converts_validates_and_round_trips(tmp_path):
    dst = tmp_path / "out" / "m.weights.h5"
    proc = run_cli("-m", "convert.from_tf1", "--src",
                   RELEASES["Linfeng-Tang"] / "Fusion.model-28", "--dst", dst)
    assert proc.returncode == 0, proc.stderr
    assert "under 'STDFusion_model/'" in proc.stdout
    diff = float(proc.stdout.split("max abs diff = ")[1].split()[0])
    assert diff <= 1e-5
    proc = run_cli("-m", "convert.to_tf1", "--src", dst, "--dst",
                   tmp_path / "tf1" / "Fusion.model-28", "--root",
                   "STMFusion_model")
    assert proc.returncode == 0, proc.stderr
    assert "bitwise equal" in proc.stdout
    state = (tmp_path / "tf1" / "checkpoint").read_text()
    assert 'model_checkpoint_path: "Fusion.model-28"' in state
    dst2 = tmp_path / "again.weights.h5"
    proc = run_cli("-m", "convert.from_tf1", "--src", tmp_path / "tf1",
                   "--dst", dst2)
    assert proc.returncode == 0, proc.stderr
    assert "under 'STMFusion_model/'" in proc.stdout
    a, b = read_keras_weights(dst, STDFusionNet), read_keras_weights(dst2, STDFusionNet)
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------- bad input --

def _copy_release(tmp_path, name="ckpt"):
    folder = tmp_path / name
    folder.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(RELEASES["jiayi-ma"] / f"Fusion.model-29{suffix}", folder)
    return folder / "Fusion.model-29"


def _variant(tmp_path, arrays, change):
    tensors = {f"STMFusion_model/{k}": v for k, v in arrays.items()}
    change(tensors)
    return write_tf1_checkpoint(tmp_path / "bad" / "Fusion.model-1", tensors,
                                update_state=False)


def _truncate(path, fraction=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * fraction)])


def _missing(t):
    del t["STMFusion_model/ir_extraction_network/block3/conv2/b"]


def _extra(t):
    t["STMFusion_model/reconstruction_network/block5/conv1/w"] = \
        np.zeros((1, 1, 1, 1), np.float32)


def _shape(t):
    t["STMFusion_model/vi_extraction_network/conv1/w"] = \
        np.zeros((3, 3, 1, 16), np.float32)


def _other_network(t):
    t.clear()
    t["generator/conv1/w"] = np.zeros((3, 3, 1, 8), np.float32)
    t["generator/conv1/b"] = np.zeros((8,), np.float32)


@pytest.mark.parametrize("change,needles", [
    (_missing, ["1 missing variable", "ir_extraction_network/block3/conv2/b"]),
    (_extra, ["unexpected variable", "reconstruction_network/block5/conv1/w"]),
    (_shape, ["shape mismatch", "vi_extraction_network/conv1/w",
              "(3, 3, 1, 16)", "(5, 5, 1, 16)"]),
    (_other_network, ["not an STDFusionNet checkpoint", "generator/conv1"]),
])
def test_from_tf1_rejects_wrong_variables(released_arrays, tmp_path, change,
                                          needles):
    prefix = _variant(tmp_path, released_arrays["jiayi-ma", 29][1], change)
    dst = tmp_path / "out.weights.h5"
    proc = run_cli("-m", "convert.from_tf1", "--src", prefix, "--dst", dst)
    assert_one_line_error(proc, prefix, *needles)
    assert not dst.exists() and not list(tmp_path.glob("*.weights.h5"))


@pytest.mark.parametrize("case", ["data", "index", "no_state", "bad_state",
                                  "nothing", "no_data"])
def test_from_tf1_rejects_unreadable_checkpoints(tmp_path, case):
    prefix = _copy_release(tmp_path)
    src, needles = prefix, []
    if case == "data":
        _truncate(f"{prefix}.data-00000-of-00001")
        needles = ["truncated"]
    elif case == "index":
        _truncate(f"{prefix}.index", 0.3)
        needles = ["truncated"]
    elif case == "no_state":
        src, needles = prefix.parent, ["no 'checkpoint' state file"]
    elif case == "bad_state":
        (prefix.parent / "checkpoint").write_text(
            'model_checkpoint_path: "Fusion.model-5"\n')
        src, needles = prefix.parent, ["Fusion.model-5", "does not exist"]
    elif case == "nothing":
        src, needles = tmp_path / "nope" / "Fusion.model-3", ["does not exist"]
    elif case == "no_data":
        os.remove(f"{prefix}.data-00000-of-00001")
        needles = ["without its data file"]
    dst = tmp_path / "out.weights.h5"
    proc = run_cli("-m", "convert.from_tf1", "--src", src, "--dst", dst)
    line = assert_one_line_error(proc, *needles)
    assert str(tmp_path) in line
    assert not dst.exists()


def test_to_tf1_rejects_bad_keras_files(jiayi_weights, tmp_path):
    # truncated .weights.h5
    bad = tmp_path / "trunc.weights.h5"
    shutil.copy(jiayi_weights, bad)
    _truncate(bad)
    dst = tmp_path / "tf1" / "Fusion.model-1"
    proc = run_cli("-m", "convert.to_tf1", "--src", bad, "--dst", dst)
    assert_one_line_error(proc, bad, "truncated")
    # one variable with a wrong shape
    wrong = tmp_path / "shape.weights.h5"
    shutil.copy(jiayi_weights, wrong)
    with h5py.File(wrong, "a") as f:
        names = []
        f.visititems(lambda n, o: names.append(n)
                     if isinstance(o, h5py.Dataset) else None)
        target = next(n for n in names if f[n].shape == (5, 5, 1, 16))
        del f[target]
        f[target] = np.zeros((5, 5, 1, 8), np.float32)
    proc = run_cli("-m", "convert.to_tf1", "--src", wrong, "--dst", dst)
    assert_one_line_error(proc, wrong, "shape mismatch", "conv1/w",
                          "(5, 5, 1, 8)")
    assert not dst.parent.exists() or not list(dst.parent.iterdir())
