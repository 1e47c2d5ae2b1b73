"""The Keras model: TF1 variable mapping, shapes, initialisation, backends."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from stdfusion_tf.model import ResBlock, STDFusionNet


@pytest.fixture(scope="module")
def model():
    return STDFusionNet()


def test_72_variables_named_like_the_release(model, released_arrays):
    names = model.tf1_variables()
    assert len(names) == 72
    for release in (("jiayi-ma", 29), ("Linfeng-Tang", 29)):
        arrays = released_arrays[release][1]
        assert set(names) == set(arrays)
        for name, var in names.items():
            assert tuple(var.shape) == arrays[name].shape, name


def test_every_tf1_name_maps_to_exactly_one_keras_variable(model):
    variables = model.tf1_variables()
    assert len({id(v) for v in variables.values()}) == 72
    assert {id(v) for v in variables.values()} == {id(v) for v in model.weights}
    # The Keras paths are the TF1 scopes too (root = model name).
    for name, var in variables.items():
        assert var.path == f"STDFusion_model/{name}"


def test_one_resblock_class_and_the_released_exception(model):
    blocks = [b for net in model.children() for b in net.children()
              if isinstance(b, ResBlock)]
    assert len(blocks) == 10
    names = model.tf1_variables()
    # Extraction block1 adds its input directly (no identity_conv) ...
    for branch in ("vi", "ir"):
        assert f"{branch}_extraction_network/block1/identity_conv/w" not in names
        assert f"{branch}_extraction_network/block2/identity_conv/w" in names
    # ... and identity convs have no bias.
    assert not [n for n in names if "identity_conv/b" in n]
    activations = [b.activation for b in model.reconstruction_network.blocks]
    assert activations == ["elu", "elu", "lrelu", "tanh"]  # as released
    plain = STDFusionNet(paper_activations=True)
    assert [b.activation for b in plain.reconstruction_network.blocks] == [
        "lrelu", "lrelu", "lrelu", "tanh"]


@pytest.mark.parametrize("shape", [(1, 9, 13), (3, 32, 17), (2, 1, 1)])
def test_fully_convolutional(model, shape):
    rng = np.random.default_rng(1)
    ir, vi = (rng.uniform(-1, 1, shape + (1,)).astype("float32")
              for _ in range(2))
    out = np.asarray(model((ir, vi)))
    assert out.shape == shape + (1,)
    assert out.dtype == np.float32
    assert np.all(np.abs(out) <= 1)


def test_upstream_initialisation():
    model = STDFusionNet()
    for name, var in model.tf1_variables().items():
        value = np.asarray(var)
        if name.endswith("/b"):
            assert not value.any(), name
        else:
            # truncated normal, stddev 1e-3: within 2 sigma, not all zero
            assert np.abs(value).max() <= 2e-3 + 1e-9, name
            assert value.std() > 0, name
    w = np.concatenate([np.asarray(v).ravel() for n, v in
                        model.tf1_variables().items() if n.endswith("/w")])
    # std of a normal truncated at 2 sigma is 0.88 sigma
    assert 0.8e-3 < w.std() < 0.95e-3


def test_paper_activations_change_the_output(released_arrays):
    from stdfusion_tf.checkpoints import assign_weights

    arrays = released_arrays["jiayi-ma", 29][1]
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (1, 24, 24, 1)).astype("float32")
    a = np.asarray(assign_weights(STDFusionNet(), arrays)((x, x)))
    b = np.asarray(assign_weights(STDFusionNet(paper_activations=True),
                                  arrays)((x, x)))
    assert np.abs(a - b).max() > 1e-4


def test_model_code_imports_tensorflow_only_behind_the_backend_check():
    """model.py is Keras + keras.ops; TensorFlow appears only inside `_tf()`,
    which returns None unless TensorFlow is the Keras backend (the JAX test
    below runs the model with TensorFlow never imported)."""
    import ast

    tree = ast.parse((ROOT / "stdfusion_tf" / "model.py").read_text())
    guard = next(n for n in tree.body
                 if isinstance(n, ast.FunctionDef) and n.name == "_tf")
    inside = set(map(id, ast.walk(guard)))
    imported = set()
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            # (relative imports are the package's own, e.g. the lazy
            # ``from . import presets`` of from_preset)
            imported.add(node.module.split(".")[0])
    assert imported <= {"keras"}, imported
    assert ast.unparse(guard.body[1]).startswith(
        "if keras.backend.backend() != 'tensorflow'")


def test_runs_on_the_jax_backend_without_tensorflow(jiayi_weights):
    """Same weights, same output on Keras' JAX backend; TF never imported."""
    from stdfusion_tf.loading import load_model

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 2, 21, 19, 1)).astype("float32")
    expected = np.asarray(load_model(jiayi_weights)((x[0], x[1])))
    code = f"""
import sys, numpy as np, keras
assert keras.backend.backend() == "jax"
from stdfusion_tf.model import STDFusionNet
model = STDFusionNet()
model.load_weights({str(jiayi_weights)!r})
x = np.load(sys.argv[1])
np.save(sys.argv[2], np.asarray(model((x[0], x[1]))))
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
"""
    tmp = pathlib.Path(jiayi_weights).parent
    np.save(tmp / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", code, tmp / "x.npy", tmp / "y.npy"],
        env={"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT),
             "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp / "y.npy")
    assert np.abs(got - expected).max() <= 1e-5
