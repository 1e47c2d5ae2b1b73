"""Dense warping and flow resizing of MRRN, PyTorch's arithmetic in keras.ops.

UMF-CMGR's registration network (``models/layers.py`` upstream) warps with
``SpatialTransformer``: the pixel flow is added to an ``ij`` meshgrid
(channel 0 = rows / dy, channel 1 = columns / dx), normalised to [-1, 1]
with ``2 * (loc / (size - 1) - 0.5)`` and handed to
``F.grid_sample(mode='bilinear', padding_mode='border', align_corners=True)``.
``ResizeTransform(1/2)`` doubles a flow: it multiplies by 2 **then** resizes
with ``F.interpolate(scale_factor=2, mode='bilinear', align_corners=True)``.

Upstream builds its grids once for 256x256 (``shape`` in
``deformable_net.py``); here every grid and every interpolation table is
built from the input's size, so any H x W works.  Keras' own
``ops.image.resize`` has no ``align_corners``, so the resize is written out
(two gathers and a lerp per axis, PyTorch's separable order: width first,
then height).

Tensors are NHWC; only ``keras.ops`` is used (any Keras backend).
"""

from keras import ops


def _linear_taps(in_size, out_size):
    """Source rows (i0, i1) and weights (w0, w1) of an align_corners=True
    linear resize along one axis, computed as PyTorch's CPU kernel does in
    float32: ``scale = (in - 1) / (out - 1)``, ``src = scale * dst``,
    ``i0 = int(src)``, ``i1 = i0 + (i0 < in - 1)``, ``w1 = src - i0``."""
    in_f = ops.cast(in_size, "float32")
    out_f = ops.cast(out_size, "float32")
    # divide_no_nan: 0 for a 1-pixel output, as PyTorch; and a true division
    # in a TensorFlow graph too (see ``_divide``).
    scale = ops.divide_no_nan(in_f - 1, out_f - 1)
    src = scale * ops.cast(ops.arange(out_size), "float32")
    i0 = ops.minimum(ops.cast(ops.floor(src), "int32"), in_size - 1)
    i1 = ops.minimum(i0 + 1, in_size - 1)
    w1 = ops.clip(src - ops.cast(i0, "float32"), 0.0, 1.0)
    return i0, i1, 1.0 - w1, w1


def resize_align_corners(x, out_h, out_w):
    """``F.interpolate(x, size=(out_h, out_w), mode='bilinear',
    align_corners=True)`` for an NHWC tensor."""
    h, w = ops.shape(x)[1], ops.shape(x)[2]
    c0, c1, cw0, cw1 = _linear_taps(w, out_w)
    x = (ops.take(x, c0, axis=2) * ops.reshape(cw0, (1, 1, -1, 1))
         + ops.take(x, c1, axis=2) * ops.reshape(cw1, (1, 1, -1, 1)))
    r0, r1, rw0, rw1 = _linear_taps(h, out_h)
    return (ops.take(x, r0, axis=1) * ops.reshape(rw0, (1, -1, 1, 1))
            + ops.take(x, r1, axis=1) * ops.reshape(rw1, (1, -1, 1, 1)))


def upsample_flow(x, factor=2):
    """Upstream's ``ResizeTransform(1 / factor)``: ``factor * x`` first,
    then an align_corners=True bilinear resize to ``floor(factor * size)``.

    As released upstream MRRN also passes its 16-channel decoder features
    through this (``upfeat2 = self.resize(x)``), so those are doubled too.
    """
    h, w = ops.shape(x)[1], ops.shape(x)[2]
    return resize_align_corners(factor * x, h * factor, w * factor)


def grid_sample(image, rows, cols):
    """``F.grid_sample(image, grid, mode='bilinear', padding_mode='border',
    align_corners=True)`` with the grid given as *normalised* row and column
    coordinates [N, H_out, W_out] in [-1, 1].

    Unnormalised as PyTorch's CPU kernel does (``(g + 1) * (size - 1) / 2``),
    clamped to the border, bilinear with weights ``(1 - dy)(1 - dx)``, ...
    in PyTorch's summation order (nw, ne, sw, se).
    """
    shape = ops.shape(image)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    y = (rows + 1.0) * (ops.cast(h - 1, "float32") / 2.0)
    x = (cols + 1.0) * (ops.cast(w - 1, "float32") / 2.0)
    y = ops.clip(y, 0.0, ops.cast(h - 1, "float32"))
    x = ops.clip(x, 0.0, ops.cast(w - 1, "float32"))
    y0f, x0f = ops.floor(y), ops.floor(x)
    dy, dx = y - y0f, x - x0f
    y0, x0 = ops.cast(y0f, "int32"), ops.cast(x0f, "int32")
    # At the last row/column the +1 neighbour has weight 0 (PyTorch skips
    # it as out of bounds); clamping its index gives the same sum.
    y1, x1 = ops.minimum(y0 + 1, h - 1), ops.minimum(x0 + 1, w - 1)

    flat = ops.reshape(image, (n, h * w, c))

    def tap(yi, xi):
        idx = ops.reshape(yi * w + xi, (n, -1, 1))
        return ops.reshape(ops.take_along_axis(flat, idx, axis=1),
                           (n, ops.shape(yi)[1], ops.shape(yi)[2], c))

    wy1, wx1 = dy[..., None], dx[..., None]
    wy0, wx0 = 1.0 - wy1, 1.0 - wx1
    return (tap(y0, x0) * (wy0 * wx0) + tap(y0, x1) * (wy0 * wx1)
            + tap(y1, x0) * (wy1 * wx0) + tap(y1, x1) * (wy1 * wx1))


def identity_grid(h, w):
    """The ``ij`` meshgrid [1, h, w, 2] (channel 0 = row, 1 = column) that
    upstream's ``SpatialTransformer`` registers as its ``grid`` buffer, built
    here for the size at hand."""
    rows, cols = ops.meshgrid(ops.cast(ops.arange(h), "float32"),
                              ops.cast(ops.arange(w), "float32"),
                              indexing="ij")
    return ops.stack([rows, cols], axis=-1)[None]


# How upstream's ``new_locs / (size - 1)`` is rounded, per PyTorch device:
# on CPU a true float32 division; on CUDA (``div_true_kernel_cuda`` with a
# scalar) a multiplication by the float32 reciprocal ``1 / (size - 1)``, one
# ulp off for some values.  The lossless references in ../shared were made
# on CPU; the released/stored outputs (``RoadScene/ir_reg``) on a GPU.
DIVISIONS = ("cpu", "cuda")


def _divide(x, size, division="cpu"):
    """``x / size`` rounded as PyTorch on ``division`` ('cpu' or 'cuda').

    'cpu' uses ``divide_no_nan``: a plain ``/`` by a constant is rewritten by
    TensorFlow's graph optimiser (grappler constant folding) into the
    reciprocal multiply, so a ``tf.function`` (Keras' ``predict``) would not
    be PyTorch-CPU's division any more; ``divide_no_nan`` is left alone (and
    ``size`` is never 0 here)."""
    size = ops.cast(size, "float32")
    if division == "cuda":
        return x * ops.divide_no_nan(ops.ones_like(size), size)
    if division != "cpu":
        raise ValueError(f"division must be one of {DIVISIONS}, got "
                         f"{division!r}")
    return ops.divide_no_nan(x, size)


def warp(image, flow, division="cpu"):
    """Upstream's ``SpatialTransformer(image, flow)[0]``.

    ``image`` [N, H, W, C]; ``flow`` [N, H, W, 2] in pixels, channel 0 =
    rows (dy), channel 1 = columns (dx): output pixel (i, j) samples the
    image at (i + dy, j + dx), bilinear, clamped to the border.  The
    location goes through upstream's normalisation ``2 * (loc / (size - 1)
    - 0.5)`` and grid_sample's unnormalisation, as coded (a float round
    trip, kept so that the sample points are upstream's to the last bit as
    far as possible; ``division`` picks PyTorch-CPU's or PyTorch-CUDA's
    rounding of it, see ``DIVISIONS``).
    """
    h, w = ops.shape(flow)[1], ops.shape(flow)[2]
    locs = identity_grid(h, w) + flow
    rows = 2.0 * (_divide(locs[..., 0], h - 1, division) - 0.5)
    cols = 2.0 * (_divide(locs[..., 1], w - 1, division) - 0.5)
    return grid_sample(image, rows, cols)
