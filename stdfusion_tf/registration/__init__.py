"""Infrared-to-visible registration without learned weights.

    from stdfusion_tf.registration import register_pair, apply_flow
    r = register_pair(ir, vi, method="auto")

``ir`` [Hi, Wi] and ``vi`` [Hv, Wv]: 2-D float gray images (any sizes, any
range; [0, 1] expected).  The result:

* ``warped``: float32 [Hv, Wv], the infrared image resampled into the
  visible frame, clipped to [0, 1];
* ``flow``: float32 [2, Hv, Wv], channel 0 rows (dy), channel 1 columns
  (dx), pixels: ``warped(p) = ir(p + flow(p))`` for every visible pixel
  ``p`` (0-based pixel centres), ``p + flow(p)`` in the infrared image's
  own pixel grid;
* ``matrix``: float64 3x3, visible pixel (x, y, 1) -> infrared pixel (the
  global stage; the plain resize when it fell back);
* ``confidence``: the doubled-angle gradient similarity of the result
  (in [-1, 1], higher is better); ``fallback``: True when the result was
  not clearly better than the plain resize and the resize is returned;
* ``method``: what was used ("global", "global+dense", "dense", "none");
  ``seconds``: wall time.

Methods: ``auto`` (global + dense), ``global``, ``dense`` (dense only, for
pairs of one size), ``none`` (resize the infrared image to the visible
size: the no-registration baseline).  See docs/registration.md.
"""

import dataclasses
import time

import cv2
import numpy as np

from ..errors import InputError
from . import dense as _dense
from . import features, geometry, search
from .geometry import apply_flow

__all__ = ["Registration", "register_pair", "apply_flow", "METHODS"]

METHODS = ("auto", "global", "dense", "none")
MIN_SIDE = 16
# the result must beat the plain resize by this much similarity ...
MIN_GAIN = 0.01
# ... and reach this much (unrelated images score ~0.0-0.1)
MIN_SCORE = 0.12
# the dense field must add this much similarity to be used
DENSE_GAIN = 0.003


@dataclasses.dataclass
class Registration:
    warped: np.ndarray
    flow: np.ndarray
    matrix: np.ndarray
    confidence: float
    fallback: bool
    method: str
    seconds: float
    baseline_score: float = float("nan")


def _prepare(image, name):
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise InputError(None, f"the {name} image must be 2-D gray, got "
                         f"shape {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InputError(None, f"the {name} image has non-finite values")
    if min(x.shape) < MIN_SIDE:
        raise InputError(None, f"the {name} image is too small to register "
                         f"({x.shape[1]}x{x.shape[0]}, at least "
                         f"{MIN_SIDE}x{MIN_SIDE} px needed)")
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-6 or features.structure_energy(
            (x - lo) / (hi - lo)) < 1e-7:
        raise InputError(None, f"the {name} image is featureless "
                         "(constant), nothing to register on")
    return x


def _result(ir, vi_shape, m, residual_full, score, fallback, method, t0,
            base_score):
    if residual_full is None:
        flow = geometry.matrix_flow(m, vi_shape)
    else:
        flow = geometry.compose_flow_matrix(m, residual_full)
    warped = apply_flow(ir, flow)
    np.clip(warped, 0.0, 1.0, out=warped)
    return Registration(warped, flow, np.asarray(m, np.float64),
                        float(score), bool(fallback), method,
                        time.perf_counter() - t0, float(base_score))


def register_pair(ir, vi, method="auto"):
    """Register the infrared image ``ir`` to the visible image ``vi``
    (see the module docstring).  Raises InputError for a featureless or
    too small image."""
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InputError(None, f"unknown registration method {method!r} "
                         f"(one of {', '.join(METHODS)})")
    ir = _prepare(ir, "infrared")
    vi = _prepare(vi, "visible")
    base = geometry.resize_matrix(ir.shape, vi.shape)
    if method == "none":
        return _result(ir, vi.shape, base, None, float("nan"), False,
                       "none", t0, float("nan"))
    if method == "dense" and ir.shape != vi.shape:
        raise InputError(None, "method 'dense' needs images of one size "
                         f"(infrared {ir.shape[1]}x{ir.shape[0]}, visible "
                         f"{vi.shape[1]}x{vi.shape[0]}); use 'auto'")
    pyr = search.Pyramid(ir)
    vw, to_vi = search.reduced(vi, search.WORK)
    fv = features.orientation(vw, 1.0)
    base_w = base @ to_vi
    base_score = search.frame_score(pyr, fv, base_w, vw.shape)[0]

    if method == "dense":
        m_w, m, score = base_w, base, base_score
    else:
        starts = [m for _, m in search.coarse_candidates(pyr, vi)]
        starts.append(base)
        best = (-2.0, None)
        for m0 in starts:
            m_w = search.refine(pyr, vw, fv, m0 @ to_vi)
            s = search.frame_score(pyr, fv, m_w, vw.shape)[0]
            if s > best[0]:
                best = (s, m_w)
        score, m_w = best
        m = m_w @ np.linalg.inv(to_vi)
        if score < base_score + MIN_GAIN or score < MIN_SCORE:
            return _result(ir, vi.shape, base, None, base_score, True,
                           "none", t0, base_score)
        if method == "global":
            return _result(ir, vi.shape, m, None, score, False, "global",
                           t0, base_score)

    # dense residual, at up to DENSE_WORK px
    vd, to_vd = search.reduced(vi, _dense.DENSE_WORK)
    fvd = features.orientation(vd, 1.0)
    md = m @ to_vd
    field = _dense.residual(pyr, vd, fvd, md)
    used = "global" if method != "dense" else "none"
    residual_full = None
    if field is not None:
        before = features.score(fvd, features.orientation(
            _dense.warp_with(pyr, md, np.zeros_like(field)), 1.0))
        after = features.score(fvd, features.orientation(
            _dense.warp_with(pyr, md, field), 1.0))
        if after > before + DENSE_GAIN:
            residual_full = _upsample_field(field, to_vd, vi.shape)
            used = "global+dense" if method != "dense" else "dense"
            score = score + (after - before)
    if method == "dense" and residual_full is None:
        return _result(ir, vi.shape, base, None, base_score, True, "none",
                       t0, base_score)
    return _result(ir, vi.shape, m, residual_full, score, False, used, t0,
                   base_score)


def _upsample_field(field, to_small, shape):
    """A field in reduced pixels -> full-resolution pixels.  ``to_small``
    maps reduced pixel -> full pixel (a pure scale + offset)."""
    if field.shape[1:] == tuple(shape):
        return field
    sx, sy = to_small[0, 0], to_small[1, 1]
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # full pixel -> reduced pixel, then sample the field there
    rx = (xx - to_small[0, 2]) / sx
    ry = (yy - to_small[1, 2]) / sy
    fy = cv2.remap(field[0], rx, ry, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE) * sy
    fx = cv2.remap(field[1], rx, ry, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE) * sx
    return np.stack([fy, fx]).astype(np.float32)
