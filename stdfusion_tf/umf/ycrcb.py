"""Colour for UMF-CMGR's fused images: OpenCV's 8-bit YCrCb conversions
(fixed point, 14 fractional bits), which upstream's
``data/fuse_Ycbcr_rgb.py`` uses to put the visible image's chroma back on
the fused luma."""

import numpy as np

from .image_io import read_rgb_u8

_SHIFT = 14
_HALF = 1 << (_SHIFT - 1)


def _descale(x):
    return (x + _HALF) >> _SHIFT


def rgb_to_ycrcb(rgb):
    """uint8 RGB [H, W, 3] -> uint8 (Y, Cr, Cb) [H, W, 3] as
    ``cv2.cvtColor(bgr, COLOR_BGR2YCrCb)``."""
    r, g, b = (np.asarray(rgb, np.int64)[..., i] for i in range(3))
    y = _descale(r * 4899 + g * 9617 + b * 1868)
    delta = 128 << _SHIFT
    cr = _descale((r - y) * 11682 + delta)
    cb = _descale((b - y) * 9241 + delta)
    return np.clip(np.stack([y, cr, cb], -1), 0, 255).astype(np.uint8)


def ycrcb_to_rgb(ycrcb):
    """uint8 (Y, Cr, Cb) -> uint8 RGB as ``cv2.cvtColor(.., COLOR_YCrCb2BGR)``
    (returned in RGB order)."""
    y, cr, cb = (np.asarray(ycrcb, np.int64)[..., i] for i in range(3))
    cr, cb = cr - 128, cb - 128
    r = y + _descale(cr * 22987)
    g = y + _descale(cb * -5636 + cr * -11698)
    b = y + _descale(cb * 29049)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def merge_color(fused_u8, vi_path):
    """Upstream's ``fuse_Ycbcr_rgb.py``: the fused gray image as Y, the
    visible image's Cr/Cb (OpenCV YCrCb) kept, back to RGB."""
    ycrcb = rgb_to_ycrcb(read_rgb_u8(vi_path))
    ycrcb[..., 0] = fused_u8
    return ycrcb_to_rgb(ycrcb)
