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
* ``confidence``: the fraction (0-1) of the visible image's structured
  patches whose gradient-orientation match agrees with the result to 1.5
  px (at the working size); ``fallback``: True when the result was not
  clearly better than the plain resize (or too few patches agree) and the
  resize is returned;
* ``method``: what was used ("global", "global+dense", "dense", "none");
  ``seconds``: wall time.

Methods: ``auto`` (global + dense), ``global``, ``dense`` (dense only, for
pairs of one size), ``none`` (resize the infrared image to the visible
size: the no-registration baseline).  ``model``: the global stage's
transform, ``similarity`` (rotation, one scale, shift), ``affine``,
``projective`` or ``auto`` (the default: the similarity, or an affine where
clearly more patches agree with it; :data:`MODELS`).  See
docs/registration.md.
"""

import dataclasses
import time

import cv2
import numpy as np

from ..errors import InputError
from . import dense as _dense
from . import features, geometry, search
from .geometry import apply_flow

__all__ = ["Registration", "register_pair", "apply_flow", "METHODS",
           "MODELS"]

METHODS = ("auto", "global", "dense", "none")
MODELS = search.MODELS
MIN_SIDE = 16
# the result must agree with this many structured patches, this fraction
# of those inside the infrared image, and with more patches than the plain
# resize does (by 2 or 10 %)
MIN_AGREE = 8
MIN_CONSENSUS = 0.15
# the dense field must add this much similarity to be used
DENSE_GAIN = 0.003
# the global result (with its dense field) must be this much more similar
# (at DENSE_WORK px) than the plain resize with its own dense field
KEEP_MARGIN = 0.02
# the plain resize's dense field is used only where the result is this
# similar to the visible image (unrelated images score below 0.1)
MIN_DENSE_SIMILARITY = 0.12
# a confident global result this far (mean, infrared px) from the plain
# resize is compared with the plain resize without its dense field
FAR = 20.0


@dataclasses.dataclass
class Registration:
    warped: np.ndarray
    flow: np.ndarray
    matrix: np.ndarray
    confidence: float
    fallback: bool
    method: str
    seconds: float
    score: float = 0.0           # similarity of the result (-1..1)
    baseline_score: float = 0.0  # similarity of the plain resize


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
            base_score, confidence=0.0):
    if residual_full is None:
        flow = geometry.matrix_flow(m, vi_shape)
    else:
        flow = geometry.compose_flow_matrix(m, residual_full)
    warped = apply_flow(ir, flow)
    np.clip(warped, 0.0, 1.0, out=warped)
    return Registration(warped, flow, np.asarray(m, np.float64),
                        float(confidence), bool(fallback), method,
                        time.perf_counter() - t0, float(score),
                        float(base_score))


def register_pair(ir, vi, method="auto", model="auto", dense="patches"):
    """Register the infrared image ``ir`` to the visible image ``vi``
    (see the module docstring).  Raises InputError for a featureless or
    too small image.  ``dense``: how the dense stage finds its field,
    ``patches`` (patch matching, no weights: the default) or the path of a
    ``.weights.h5`` of the learned refinement (:mod:`.refine_net`; an
    experiment, not better than ``patches`` so far: docs/registration.md)."""
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InputError(None, f"unknown registration method {method!r} "
                         f"(one of {', '.join(METHODS)})")
    if model not in MODELS:
        raise InputError(None, f"unknown global model {model!r} "
                         f"(one of {', '.join(MODELS)})")
    net = _dense_network(dense)
    ir = _prepare(ir, "infrared")
    vi = _prepare(vi, "visible")
    base = geometry.resize_matrix(ir.shape, vi.shape)
    if method == "none":
        return _result(ir, vi.shape, base, None, 0.0, False, "none", t0,
                       0.0)
    if method == "dense" and ir.shape != vi.shape:
        raise InputError(None, "method 'dense' needs images of one size "
                         f"(infrared {ir.shape[1]}x{ir.shape[0]}, visible "
                         f"{vi.shape[1]}x{vi.shape[0]}); use 'auto'")
    # matching sees noisy images smoothed (a dark night frame); the result
    # resamples the infrared image as given
    ir_in = ir
    ir, vi = features.denoised(ir)[0], features.denoised(vi)[0]
    pyr = search.Pyramid(ir)
    vw, to_vi = search.reduced(vi, search.WORK)
    fv = features.orientation(vw, search.SIGMA)
    base_w = base @ to_vi
    base_score = search.frame_score(pyr, fv, base_w, vw.shape)[0]

    vd, to_vd = search.reduced(vi, _dense.DENSE_WORK)
    fvd = features.orientation(vd, 1.0)

    def similarity_at(md, field=None):
        """Feature similarity at DENSE_WORK px of the infrared warped by
        ``md`` (and ``field``) to the visible image."""
        if field is None:
            field = np.zeros((2,) + vd.shape, np.float32)
        return features.score(fvd, features.orientation(
            _dense.warp_with(pyr, md, field), 1.0))

    def with_dense(m_full):
        """(field or None, similarity without it, with it) at DENSE_WORK
        px, the field kept only when it adds DENSE_GAIN."""
        md = m_full @ to_vd
        if net is None:
            field = _dense.residual(pyr, vd, fvd, md)
        else:
            field = _dense.learned_residual(net, pyr, vd, md)
        before = similarity_at(md)
        if field is None:
            return None, before, before
        after = similarity_at(md, field)
        if after > before + DENSE_GAIN:
            return field, before, after
        return None, before, before

    base_agree = None
    if method != "dense":
        starts = search.starts(ir.shape, vi.shape)
        score, m_w, _, _ = search.refine(
            pyr, vw, fv, [m0 @ to_vi for m0 in starts],
            unshifted=len(search.START_ANGLES),
            shifted=len(starts) - len(search.START_ANGLES),
            more=lambda: [m @ to_vi for _, m in
                          search.coarse_candidates(pyr, vi)],
            model=model,
            last=[m0 @ to_vi for m0 in search.turned_starts(ir.shape,
                                                            vi.shape)])
        m = m_w @ np.linalg.inv(to_vi)
        # a last round at up to DENSE_WORK px, where a pixel is finer
        if vd.shape != vw.shape:
            fvd_g = features.orientation(vd, search.SIGMA)
            md = search.refine_round(pyr, vd, fvd_g, m @ to_vd, len(
                search.ROUNDS), search.fitted_model(m_w, model),
                setting=search.FINE_ROUND)
            if md is not None:
                s_old = search.frame_score(pyr, fvd_g, m @ to_vd,
                                           vd.shape)[0]
                s_new = search.frame_score(pyr, fvd_g, md, vd.shape)[0]
                if s_new > s_old:
                    m = md @ np.linalg.inv(to_vd)
                    m_w = m @ to_vi
                    score = search.frame_score(pyr, fv, m_w, vw.shape)[0]
        agree, count = search.consensus(pyr, vw, fv, m_w)
        base_agree, base_count = search.consensus(pyr, vw, fv, base_w)
        global_ok = _clear(agree, count, base_count)
        if not global_ok:
            # an infrared field much narrower than the visible one: the
            # search the other way round (its agreement counted in the
            # infrared frame, which the visible image covers)
            rev = search.reverse(ir, vi, model)
            if (rev is not None
                    and _clear(*rev["agree"], rev["base"][1])
                    and search.agreed(*rev["verify"], search.REVERSE_AGREE)):
                m = rev["matrix"]
                agree, count = rev["verify"]
                m_w = m @ to_vi
                score = search.frame_score(pyr, fv, m_w, vw.shape)[0]
                global_ok = True
        if method == "global":
            if not global_ok:
                return _result(ir_in, vi.shape, base, None, base_score, True,
                               "none", t0, base_score, base_agree)
            return _result(ir_in, vi.shape, m, None, score, False, "global",
                           t0, base_score, agree)
    else:
        global_ok = False

    def global_result(field_a, s_g, s_a):
        used = "global+dense" if field_a is not None else "global"
        res = None if field_a is None else _upsample_field(
            field_a, to_vd, vi.shape)
        return _result(ir_in, vi.shape, m, res, score + (s_a - s_g), False,
                       used, t0, base_score, agree)

    dense_a = None
    if (global_ok and search.agreed(agree, count, search.CONFIDENT)
            and _distance(m, base, vi.shape) > FAR):
        # a confident result far from the plain resize: the plain resize
        # cannot come close with its small dense field, so it is compared
        # without one (its dense field is the stage's costliest part)
        dense_a = with_dense(m)
        s_a = dense_a[2]
        if s_a > similarity_at(base @ to_vd) + KEEP_MARGIN:
            return global_result(*dense_a)

    # the plain resize with a dense residual: the result to beat
    field_b, s_plain, s_b = with_dense(base)
    if base_agree is None:
        base_agree = search.consensus(pyr, vw, fv, base_w)[0]
    if global_ok:
        if dense_a is None:
            dense_a = with_dense(m)
        field_a, s_g, s_a = dense_a
        # the global result must be clearly more similar than the plain
        # resize (with its own dense residual) to be used
        if s_a > max(s_b, s_plain) + KEEP_MARGIN:
            return global_result(field_a, s_g, s_a)
    if (field_b is not None and ir.shape == vi.shape
            and s_b >= MIN_DENSE_SIMILARITY):
        return _result(ir_in, vi.shape, base, _upsample_field(
            field_b, to_vd, vi.shape), base_score + (s_b - s_plain), False,
            "dense", t0, base_score, base_agree)
    return _result(ir_in, vi.shape, base, None, base_score, True, "none", t0,
                   base_score, base_agree)


def _clear(agree, count, base_count):
    """Whether a global result's agreement (fraction, count) is enough, and
    clearly more than the plain resize's count."""
    return not (count < MIN_AGREE or agree < MIN_CONSENSUS
                or count < base_count + max(2, 0.1 * base_count))


def _dense_network(dense):
    """None for the patch-matching dense stage, else the learned one."""
    if dense == "patches":
        return None
    from . import refine_net

    if str(dense).endswith(".weights.h5"):
        return refine_net.load(dense)
    raise InputError(None, f"unknown dense stage {dense!r} ('patches', or "
                     "a .weights.h5 of the registration network)")


def _distance(m1, m2, shape, step=16):
    """Mean distance (infrared px) between where two matrices send the
    visible pixels of a grid."""
    h, w = shape
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    x1, y1 = geometry.apply_matrix(m1, xx, yy)
    x2, y2 = geometry.apply_matrix(m2, xx, yy)
    return float(np.mean(np.hypot(x1 - x2, y1 - y2)))


def _upsample_field(field, to_small, shape):
    """A field in reduced pixels -> full-resolution pixels.  ``to_small``
    maps reduced pixel -> full pixel (a pure scale + offset)."""
    if field.shape[1:] == tuple(shape):
        return field
    sx, sy = to_small[0, 0], to_small[1, 1]
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # full pixel -> reduced pixel, then sample the field there
    rx = ((xx - to_small[0, 2]) / sx).astype(np.float32)
    ry = ((yy - to_small[1, 2]) / sy).astype(np.float32)
    fy = cv2.remap(field[0], rx, ry, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE) * sy
    fx = cv2.remap(field[1], rx, ry, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE) * sx
    return np.stack([fy, fx]).astype(np.float32)
