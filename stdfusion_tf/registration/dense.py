"""Dense stage: a smooth residual field on top of the global matrix.

The infrared image, warped by the global matrix (and the field so far), is
compared with the visible image patch by patch on the doubled-angle
features (:mod:`.matching`).  Patch shifts whose correlation peak is
clear are kept, outliers (far from the median of their neighbours)
dropped, and the rest spread into a field by normalised convolution with a
Gaussian: ``field = G * (w s) / (G * w + prior)``.  The ``prior`` term pulls
the field towards zero (the global matrix) where few patches are trusted,
which is the smoothness prior.  Three rounds, with smaller patches each.
"""

import cv2
import numpy as np

from . import features, geometry, matching

DENSE_WORK = 640
# (patch, search, stride) as fractions of the working long side
ROUNDS = ((0.10, 0.016, 0.05), (0.06, 0.008, 0.03), (0.045, 0.006, 0.02))
# Patch shifts are weighted by how far their correlation peak exceeds
# MIN_QUALITY, and spread with a Gaussian of SPREAD grid cells.  Cross-modal
# peaks are low, and the weak ones still carry the field; spread wider, their
# noise averages out.  Against 0.3 and 1.2 cells, these values lowered every
# benchmark row (RoadScene easy 2.80 -> 2.67 px, hard 2.66 -> 2.56,
# RoadScene_raw 2.50 -> 2.41); the lower threshold alone helped the
# synthetic rows but not the real pairs (2.53).  The cost is detail where
# peaks are sharp: a deformed infrared image registered onto its own
# original (one modality) goes from 0.60 to 1.04 px.  Smaller patches or a
# fourth round gained under 0.05 px for 10 % more time.
MIN_QUALITY = 0.1
SPREAD = 2.0


def _spread(ys, xs, values, weights, shape, stride, prior=0.05):
    """Values on the patch grid -> a smooth field of ``shape`` (a Gaussian
    of ``SPREAD`` grid cells)."""
    ny, nx = len(np.unique(ys)), len(np.unique(xs))
    v = values.reshape(ny, nx).astype(np.float32)
    wgt = weights.reshape(ny, nx).astype(np.float32)
    # outliers: far from the weighted median of the 3x3 neighbourhood
    med = cv2.medianBlur(np.ascontiguousarray(v), 3) if min(ny, nx) >= 3 \
        else v
    wgt = np.where(np.abs(v - med) > 1.0 + 0.25 * np.abs(med), 0.0, wgt)
    num = cv2.GaussianBlur(v * wgt, (0, 0), SPREAD,
                           borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(wgt, (0, 0), SPREAD,
                           borderType=cv2.BORDER_REPLICATE)
    grid = num / (den + prior)
    # grid cell (i, j) sits at pixel (ys[0] + i stride, xs[0] + j stride)
    h, w = shape
    y0, x0 = float(ys.min()), float(xs.min())
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(grid, (xx - x0) / stride, (yy - y0) / stride,
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def residual(ir_pyr, vw, fv, m_work):
    """A residual field [2, h, w] (working pixels) such that the infrared at
    ``m_work (p + field(p))`` matches the visible at ``p``, or None."""
    h, w = vw.shape
    side = max(h, w)
    field = np.zeros((2, h, w), np.float32)
    used = False
    for psize, srch, strd in ROUNDS:
        patch = max(12, int(round(psize * side)) // 2 * 2)
        search = max(2, int(round(srch * side)))
        stride = max(4, int(round(strd * side)))
        warped = warp_with(ir_pyr, m_work, field)
        fi = features.orientation(warped, 1.0)
        ys, xs, dy, dx, q, _ = matching.match(fv, fi, patch, search, stride)
        if len(q) < 4 or (q > MIN_QUALITY).sum() < 4:
            break
        wgt = np.clip((q - MIN_QUALITY) / (1 - MIN_QUALITY), 0, 1)
        field[0] += _spread(ys, xs, dy, wgt, (h, w), stride)
        field[1] += _spread(ys, xs, dx, wgt, (h, w), stride)
        used = True
    return field if used else None


def learned_residual(model, ir_pyr, vw, m_work):
    """The residual field of :func:`residual` predicted by the learned
    refinement (:mod:`.refine_net`) instead of matched patch by patch."""
    from . import refine_net

    h, w = vw.shape
    warped = warp_with(ir_pyr, m_work, np.zeros((2, h, w), np.float32))
    return refine_net.predict_field(model, warped, vw)


def warp_with(ir_pyr, m_work, field):
    """The infrared at ``m_work (p + field(p))`` on the working grid."""
    h, w = field.shape[1:]
    flow = geometry.compose_flow_matrix(m_work, field)
    scale = geometry.scale_of(m_work)
    level = int(np.clip(np.floor(np.log2(max(scale, 1e-6))), 0,
                        len(ir_pyr.levels) - 1))
    lv = ir_pyr.levels[level]
    to_level = geometry.resize_matrix(lv.shape, ir_pyr.shape)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = geometry.apply_matrix(to_level, xx + flow[1], yy + flow[0])
    return cv2.remap(lv, x.astype(np.float32), y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
