"""bench/registration_dense_alternatives.py: the two other dense estimators
it measures the dense stage against find a known field where there is no
modality gap, so their cross-modal figures measure the modality gap, not a
broken estimator."""

import importlib.util

import cv2
import numpy as np
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_dense_alternatives",
        ROOT / "bench" / "registration_dense_alternatives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shifted_pair():
    """A textured image and a copy shifted by (dy, dx) = (1.5, -2.0) px:
    ``fixed(p) = moving(p + (1.5, -2.0))``."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32),
                            (0, 0), 3.0)
    base = (base - base.min()) / (base.max() - base.min())
    m = np.float32([[1, 0, -2.0], [0, 1, 1.5]])  # fixed(p) = base(p + t)
    fixed = cv2.warpAffine(base, m, (320, 240),
                           flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    return base, fixed


@pytest.mark.parametrize("name", ["mind", "variational"])
def test_estimators_find_a_shift_within_one_modality(bench, shifted_pair,
                                                     name):
    moving, fixed = shifted_pair
    if name == "mind":
        field = bench.mind_field(moving, fixed)
    else:
        field = bench.variational_field(moving, fixed, 5.0)
    assert field.shape == (2,) + fixed.shape
    inner = field[:, 40:-40, 40:-40]
    err = np.hypot(inner[0] - 1.5, inner[1] + 2.0)
    # no field at all would be 2.5 px off
    assert float(np.median(err)) < 0.4, (name, float(np.median(err)))
