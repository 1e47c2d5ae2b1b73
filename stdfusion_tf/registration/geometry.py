"""Pixel-grid conventions, matrices and flow warping of the registration.

Every coordinate here is a 0-based pixel *centre*: pixel (row i, column j)
sits at (x, y) = (j, i).  That is OpenCV's convention for ``cv2.remap`` and
``cv2.warpAffine(..., WARP_INVERSE_MAP)`` (``dst(x, y) = src(map(x, y))``),
so a matrix or flow written in it is handed to OpenCV unchanged.

Resizing an image of width W to width W' (``cv2.resize``, any
interpolation) aligns pixel *areas*, not centres: output centre x' shows
input position ``(x' + 0.5) W / W' - 0.5``.  :func:`resize_matrix` is that
map; the "no registration" baseline is this matrix from the visible frame
to the infrared frame.

Matrices are float64 3x3 acting on (x, y, 1) column vectors and map the
*output* frame to the *input* frame (backward warping), as the public
``Registration.matrix`` (visible pixel -> infrared pixel).  Flows are
float32 [2, H, W], channel 0 = rows (dy), channel 1 = columns (dx):
``registered(p) = image(p + flow(p))``.
"""

import cv2
import numpy as np


def resize_matrix(src_shape, dst_shape):
    """Map a pixel of an image of ``dst_shape`` (H, W) to the position it
    shows in an image of ``src_shape`` when ``src`` is resized to ``dst``
    (pixel areas aligned, as ``cv2.resize``)."""
    sy = src_shape[0] / dst_shape[0]
    sx = src_shape[1] / dst_shape[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5],
                     [0.0, sy, 0.5 * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def similarity(scale, angle_deg, centre_out, centre_in, shift=(0.0, 0.0)):
    """Output pixel -> input pixel: ``in = scale R(angle) (out - c_out) +
    c_in + shift`` (x, y order; the angle turns x towards y)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m[:2, 2] = (np.asarray(centre_in, np.float64) + np.asarray(shift)
                - m[:2, :2] @ np.asarray(centre_out, np.float64))
    return m


def scale_of(m):
    """The mean linear scale of a matrix's 2x2 part (sqrt |det|): how many
    input pixels one output pixel spans along a side."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m)[:2, :2]))))


def translation(dx, dy):
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def apply_matrix(m, x, y):
    """(x', y') of ``m`` applied to coordinate arrays (projective divide)."""
    m = np.asarray(m, np.float64)
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return ((m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w,
            (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w)


def warp_matrix(image, m, out_shape, border=cv2.BORDER_REPLICATE):
    """``out(p) = image(m p)``, bilinear (float32).  Affine matrices go
    through ``warpAffine``, projective ones through ``warpPerspective``;
    both with ``WARP_INVERSE_MAP`` because ``m`` maps output -> input."""
    h, w = out_shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    image = np.asarray(image, np.float32)
    if np.allclose(m[2], [0.0, 0.0, 1.0]):
        return cv2.warpAffine(image, np.ascontiguousarray(m[:2], np.float64),
                              (w, h), flags=flags, borderMode=border)
    return cv2.warpPerspective(image, m, (w, h), flags=flags,
                               borderMode=border)


def _grid_positions(m, h, w, dy=None, dx=None):
    """(x, y) float32 of ``m (p + residual)`` over an h x w grid.  Affine
    matrices are applied as outer sums of the row and column terms (no
    full-size index arrays); projective ones through :func:`apply_matrix`."""
    m = np.asarray(m, np.float64)
    cols = np.arange(w, dtype=np.float32)[None, :]
    rows = np.arange(h, dtype=np.float32)[:, None]
    if dy is None and np.allclose(m[2], [0.0, 0.0, 1.0]):
        x = np.float32(m[0, 0]) * cols + (np.float32(m[0, 1]) * rows
                                          + np.float32(m[0, 2]))
        y = np.float32(m[1, 0]) * cols + (np.float32(m[1, 1]) * rows
                                          + np.float32(m[1, 2]))
        return x, y
    xx = np.broadcast_to(cols, (h, w)).astype(np.float64)
    yy = np.broadcast_to(rows, (h, w)).astype(np.float64)
    if dy is not None:
        xx = xx + dx
        yy = yy + dy
    x, y = apply_matrix(m, xx, yy)
    return x.astype(np.float32), y.astype(np.float32)


def matrix_flow(m, out_shape):
    """The flow [2, H, W] of a matrix: ``p + flow(p) = m p``."""
    h, w = out_shape
    x, y = _grid_positions(m, h, w)
    return np.stack([y - np.arange(h, dtype=np.float32)[:, None],
                     x - np.arange(w, dtype=np.float32)[None, :]])


def apply_flow(image, flow, border="replicate"):
    """Resample ``image`` ([Hi, Wi] or [Hi, Wi, C]) with ``flow`` (float32
    [2, Hv, Wv], rows then columns, pixels): ``out(p) = image(p +
    flow(p))``, bilinear, ``p`` a 0-based pixel centre of the output and
    ``p + flow(p)`` a position in ``image``'s own pixel grid.  Outside the
    image: the nearest border pixel (``border='replicate'``, as MRRN's
    grid_sample with padding 'border') or 0 (``'zeros'``).  Returns
    float32 [Hv, Wv(, C)]."""
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be [2, H, W], got {flow.shape}")
    _, h, w = flow.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xx + flow[1]
    map_y = yy + flow[0]
    mode = {"replicate": cv2.BORDER_REPLICATE,
            "zeros": cv2.BORDER_CONSTANT}[border]
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[2] > 4:  # remap handles <= 4 planes
        return np.stack([apply_flow(image[..., c], flow, border)
                         for c in range(image.shape[2])], axis=-1)
    out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=mode,
                    borderValue=0)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def compose_flow_matrix(m, residual):
    """The flow of ``p -> m (p + residual(p))``: a dense residual measured
    in the frame warped by ``m``, composed with ``m``."""
    _, h, w = residual.shape
    x, y = _grid_positions(m, h, w, residual[0], residual[1])
    return np.stack([y - np.arange(h, dtype=np.float32)[:, None],
                     x - np.arange(w, dtype=np.float32)[None, :]])
