"""DIFN (UMF-CMGR's fusion network) against upstream's PyTorch outputs.

``../shared/umf-cmgr/reference/fused_*`` are upstream's ``FusionNet`` with
``fus_0200.pth`` run on CPU, saved losslessly as upstream converts (x 255,
round half even, clip).  The suite checks 40 of the 120 (every third name,
a different third per folder); ``pytest -m slow`` checks all 120.
"""

import numpy as np
import pytest

# reference folder -> the infrared input it was made from (vi = vi_256)
REFERENCES = {"fused_reg": "ir_reg", "fused_noreg": "ir_warp",
              "fused_orig": "ir_256"}
BATCH = 8  # 256 x 256 pairs per call (~2 GB of activations)


@pytest.fixture(scope="session")
def difn(umf):
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf.difn import DIFN
    from stdfusion_tf.umf.layers import from_torch_layout

    state = load_pth(umf / "weights" / "fus_0200.pth")
    model = DIFN()
    variables = model.torch_variables()
    assert list(variables) == list(state)  # same keys, same order
    for key, var in variables.items():
        var.assign(from_torch_layout(state[key]))
    return model


def read(path):
    from stdfusion_tf.images import read_gray_cv2
    from stdfusion_tf.umf.difn import scale_in

    return scale_in(read_gray_cv2(path))[..., None]


def fuse(model, ir, vi):
    out = [np.asarray(model((ir[i:i + BATCH], vi[i:i + BATCH])))
           for i in range(0, len(ir), BATCH)]
    return np.concatenate(out)[..., 0]


def test_state_dict_keys_and_shapes(umf):
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf.difn import DIFN
    from stdfusion_tf.umf.layers import from_torch_layout

    state = load_pth(umf / "weights" / "fus_0200.pth")
    variables = DIFN().torch_variables()
    assert len(variables) == 24
    assert list(variables) == list(state)
    for key, var in variables.items():
        assert tuple(var.shape) == from_torch_layout(state[key]).shape, key
        # The Keras variable path mirrors the key (DIFN/ir_path/0/...).
        assert var.path == "DIFN/" + key.replace(".", "/"), var.path


def test_to_uint8_is_opencv_saturate_cast():
    from stdfusion_tf.umf.difn import to_uint8

    x = np.array([-0.5, -0.001, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.999,
                  1.0], np.float32)
    # x * 255 in float32, then round half to even and clip.
    expected = np.clip(np.rint(x * np.float32(255)), 0, 255)
    assert to_uint8(x).tolist() == expected.astype(np.uint8).tolist()
    assert to_uint8(x).tolist()[:5] == [0, 0, 0, 2, 2]


@pytest.mark.parametrize(
    "k,reference,full",
    [(k, r, False) for k, r in enumerate(REFERENCES)]
    + [pytest.param(k, r, True, marks=pytest.mark.slow)
       for k, r in enumerate(REFERENCES)])
def test_reproduces_upstream(difn, umf, k, reference, full):
    from PIL import Image
    from stdfusion_tf.umf.difn import to_uint8

    names = sorted(p.stem for p in (umf / "reference" / reference).iterdir())
    assert len(names) == 40
    if not full:
        names = names[k::3]
    road = umf / "RoadScene"
    ir = np.stack([read(road / REFERENCES[reference] / f"{n}.jpg")
                   for n in names])
    vi = np.stack([read(road / "vi_256" / f"{n}.jpg") for n in names])
    fused = to_uint8(fuse(difn, ir, vi))
    worst = []
    for name, ours in zip(names, fused):
        ref = np.asarray(Image.open(umf / "reference" / reference
                                    / f"{name}.png"))
        diff = np.abs(ours.astype(int) - ref)
        worst.append((int(diff.max()), float((diff == 0).mean()), name))
        assert diff.max() <= 1, (name, diff.max())
        assert (diff == 0).mean() >= 0.999, (name, (diff == 0).mean())
    print(reference, len(names), "images; max diff",
          max(w[0] for w in worst), "; fewest identical",
          min(worst, key=lambda w: w[1]))


def test_any_size_is_the_same_computation(difn, umf):
    """DIFN has only stride-1 'same' convs (receptive radius 8 px): a 300 x
    517 pair fuses to 300 x 517, and a 256 x 256 pair embedded in it fuses
    to what the pair alone gives, 8 px inside its border (so 256 x 256, the
    reference size, needs and gets no size handling)."""
    road = umf / "RoadScene"
    ir = read(road / "ir_256" / "01.jpg")[None]
    vi = read(road / "vi_256" / "01.jpg")[None]
    top, left = 20, 100
    pads = ((0, 0), (top, 300 - 256 - top), (left, 517 - 256 - left), (0, 0))
    big_ir, big_vi = (np.pad(a, pads, mode="reflect") for a in (ir, vi))
    big = fuse(difn, big_ir, big_vi)[0]
    small = fuse(difn, ir, vi)[0]
    assert big.shape == (300, 517)
    assert np.isfinite(big).all() and np.abs(big).max() <= 1
    r = 8
    inside = big[top + r:top + 256 - r, left + r:left + 256 - r]
    np.testing.assert_allclose(inside, small[r:-r, r:-r], rtol=0, atol=1e-5)
