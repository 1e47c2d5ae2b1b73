"""The learned dense refinement (stdfusion_tf.registration.refine_net): its
correlation layer, any input size, foreign weights files, that the
committed training checkpoint registers a held-out pair, and that the
training script resumes."""

import json
import sys

import numpy as np
import pytest

from conftest import ROOT

from stdfusion_tf.errors import InputError
from stdfusion_tf.registration import benchmark as B
from stdfusion_tf.registration import refine_net, register_pair

CHECKPOINT = ROOT / "weights" / "registration_refine" / "last.weights.h5"
# a pair of the held-out subset (every 8th RoadScene pair: never trained on)
HELD_OUT = "FLIR_07365"


def test_correlation_is_the_product_at_each_shift():
    rng = np.random.default_rng(0)
    fixed = rng.standard_normal((2, 6, 7, 5)).astype(np.float32)
    moving = rng.standard_normal((2, 6, 7, 5)).astype(np.float32)
    layer = refine_net._correlation_layer()(2)
    out = np.asarray(layer(fixed, moving))
    assert out.shape == (2, 6, 7, 25)
    padded = np.pad(moving, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for k, (dy, dx) in enumerate((a, b) for a in range(-2, 3)
                                 for b in range(-2, 3)):
        want = (fixed * padded[:, 2 + dy:8 + dy, 2 + dx:9 + dx]).sum(-1)
        np.testing.assert_allclose(out[..., k], want, rtol=1e-5, atol=1e-5)


def test_any_size_gives_a_finite_field_of_that_size():
    model = refine_net.build()
    rng = np.random.default_rng(1)
    a, b = rng.random((37, 53), np.float32), rng.random((37, 53), np.float32)
    field = refine_net.predict_field(model, a, b)
    assert field.shape == (2, 37, 53) and field.dtype == np.float32
    assert np.isfinite(field).all()


def test_a_file_that_is_not_the_network_is_one_line(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an h5 file")
    with pytest.raises(InputError) as err:
        refine_net.load(str(bad))
    assert "\n" not in str(err.value) and "bad.weights.h5" in str(err.value)
    with pytest.raises(InputError) as err:
        refine_net.load(str(tmp_path / "absent.weights.h5"))
    assert "no such weights file" in str(err.value)
    with pytest.raises(InputError):
        register_pair(np.ones((32, 32)), np.ones((32, 32)), dense="other")


def test_registers_a_held_out_pair():
    """A RoadScene pair of the held-out subset at the easy level (upstream's
    deformation): the committed checkpoint's dense stage lowers the error
    well below no registration."""
    stem, ir_path, vi_path = next(p for p in B.pairs("roadscene")
                                  if p[0] == HELD_OUT)
    ir, f, mask = B.synthetic_case(ir_path, stem, "easy")
    vi = B.read01(vi_path)
    none = B.epe(register_pair(ir, vi, "none").flow, f, mask)
    net = register_pair(ir, vi, "auto", dense=str(CHECKPOINT))
    err = B.epe(net.flow, f, mask)
    assert none > 6.0
    assert err < 0.6 * none, (err, none)


def test_training_resumes_where_it_stopped(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_registration_net as T
    finally:
        sys.path.pop(0)
    out = tmp_path / "run"
    T.main(["--out", str(out), "--steps", "2", "--batch", "1",
            "--save_every", "1", "--curriculum", "0"])
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2
    before = refine_net.build()
    before.load_weights(str(out / "last.weights.h5"))
    T.main(["--out", str(out), "--steps", "3", "--batch", "1",
            "--save_every", "1", "--curriculum", "0"])
    assert json.loads((out / "state.json").read_text())["step"] == 3
    after = refine_net.build()
    after.load_weights(str(out / "last.weights.h5"))
    moved = [np.abs(a - b).max() for a, b in zip(before.get_weights(),
                                                   after.get_weights())]
    assert max(moved) > 0
    # a sample depends only on (seed, step)
    data = T.load(T.training_stems()[:3])
    x1, y1, _ = T.batch(0, 5, data, 2)
    x2, y2, _ = T.batch(0, 5, data, 2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
