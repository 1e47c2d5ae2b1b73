"""MRRN, UMF-CMGR's multi-level refinement registration network, in Keras 3.

As released upstream (``models/deformable_net.py`` ``DeformableNet`` and
``models/layers.py``; the code wins where the paper differs):

* a shared two-level encoder ``enc.0``-``enc.5``: ``conv_block`` = Conv2d
  (4x4 stride 2 padding 1 where it downsamples, else 3x3 padding 1) +
  LeakyReLU(0.2); 1 -> 16 (/2) -> 16 -> 16 -> 32 (/4) -> 32 -> 32 channels,
  run on the source (distorted infrared) and on the target (pseudo-infrared);
* level 2 (1/4 size): the L1 matching cost over channels
  ``sum_c |f_tgt - f_src|`` (``MatchCost``), concatenated with the target
  features, three ``conv_block``s (48, 32, 16) and ``predict_flow2a`` (a plain
  3x3 conv to 2 channels) give a coarse flow; the dilated refinement
  ``dc_conv2_*`` (3x3, dilation 1, 2, 4, LeakyReLU(0.1)) on that flow alone
  and ``predict_flow2b`` add a residual;
* level 1 (1/2 size): the flow is doubled (``ResizeTransform``: times 2,
  then bilinear align_corners=True), the source features are warped with it,
  the matching cost, target features, that flow and the doubled level-2
  decoder features (``upfeat2``: multiplied by 2 as well, as coded) go
  through ``conv1_*`` and ``predict_flow1a`` (a residual on the up-sampled
  flow), then the same dilated refinement;
* the level-1 flow doubled to full size is the output flow; no flow
  integration (upstream's ``VecInt`` lines are commented out).  The source is
  warped with it, the target with its negation (``f_warp``).

Warping is ``warp.warp`` (grid_sample, bilinear, border, align_corners=True).

Beyond upstream: any H x W.  Upstream hard-codes 256 x 256 grids; here they
are built per input.  The two stride-2 levels need sizes divisible by 4:
other sizes are padded (replicate, at the bottom and right, so that pixel
coordinates and the flow keep their meaning) to the next multiple of 4 and
the registered image, the reverse-warped target and the flow are cropped
back.  A multiple of 4 (upstream's 256 x 256 included) is not padded at all.

``torch_variables()`` lists the variables under upstream's state_dict keys,
derived from the layer structure: ``enc.0.main.weight`` ...
``conv2_0.main.weight``, ``dc_conv2_0.0.weight``, ``predict_flow2a.weight``.
Upstream's state_dict also holds ``enc.6``-``enc.21`` (the decoder layers
appended to the ``enc`` ModuleList a second time: aliases of ``conv2_0``
...) and the two ``spatial_transform*.grid`` buffers; neither is a variable
here.
"""

import keras
from keras import ops

from . import layers, warp

# conv_block's LeakyReLU slope and conv2D's (the dilated refinement).
BLOCK_SLOPE = 0.2
DILATED_SLOPE = 0.1

# Sizes must be multiples of this (two stride-2 levels).
SIZE_MULTIPLE = 4


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class ConvBlock(layers.TorchModule):
    """Upstream's ``conv_block(dim=2, in, out, stride)``: ``main`` =
    Conv2d(3x3, stride 1 or 4x4, stride 2; padding 1) + LeakyReLU(0.2)."""

    def __init__(self, in_channels, filters, stride=1, **kwargs):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.in_channels = in_channels
        self.filters = filters
        self.stride = stride
        self.main = layers.Conv2d(filters, 3 if stride == 1 else 4,
                                  stride=stride, padding=1, name="main",
                                  dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.main.build((None, None, None, self.in_channels))

    def call(self, x):
        return ops.leaky_relu(self.main(x), negative_slope=BLOCK_SLOPE)

    def torch_children(self):
        return [("main", self.main)]

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels,
                "filters": self.filters, "stride": self.stride}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class DilatedConv(layers.TorchModule):
    """Upstream's ``conv2D``: ``nn.Sequential(Conv2d(3x3, padding =
    dilation), LeakyReLU(0.1))``; the conv is the Sequential's ``0``."""

    def __init__(self, in_channels, filters, dilation=1, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = in_channels
        self.filters = filters
        self.dilation = dilation
        self.conv = layers.Conv2d(filters, 3, padding=dilation,
                                  dilation=dilation, name="0",
                                  dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.in_channels))

    def call(self, x):
        return ops.leaky_relu(self.conv(x), negative_slope=DILATED_SLOPE)

    def torch_children(self):
        return [("0", self.conv)]

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels,
                "filters": self.filters, "dilation": self.dilation}


def match_cost(features_t, features_s):
    """Upstream's ``MatchCost``: ``torch.norm(t - s, p=1, dim=1)``, the L1
    distance over channels, as one channel [N, H, W, 1]."""
    return ops.sum(ops.abs(features_t - features_s), axis=-1, keepdims=True)


def pad_to_multiple(x, multiple):
    """Replicate-pad the bottom and right of an NHWC tensor to the next
    multiple of ``multiple`` (PyTorch's ``ReplicationPad2d``), also for
    sizes only known at run time.  Padding at the bottom/right keeps the
    pixel coordinates of the original image, so a flow computed on the
    padded image, cropped back, is a flow of the original."""
    h, w = ops.shape(x)[1], ops.shape(x)[2]
    rows = ops.minimum(ops.arange(((h + multiple - 1) // multiple)
                                  * multiple), h - 1)
    cols = ops.minimum(ops.arange(((w + multiple - 1) // multiple)
                                  * multiple), w - 1)
    return ops.take(ops.take(x, rows, axis=1), cols, axis=2)


# (in channels, out channels, stride) of the shared encoder.
ENCODER = ((1, 16, 2), (16, 16, 1), (16, 16, 1),
           (16, 32, 2), (32, 32, 1), (32, 32, 1))
# Decoder at one level: conv_blocks, flow head, dilated refinement.
DECODER_BLOCKS = (48, 32, 16)
DILATED = ((48, 1), (48, 2), (32, 4))


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class MRRN(keras.Model):
    """UMF-CMGR's registration network (upstream ``DeformableNet``).

    ``model((tgt, src))`` -> ``(registered, tgt_warped, flow)``:

    * ``tgt``: the registration target (pseudo-infrared), ``src``: the
      distorted infrared; float32 [N, H, W, 1] in [0, 1], any H x W
      (see the module docstring for sizes not divisible by 4);
    * ``registered``: ``src`` warped with ``flow`` (upstream ``m_warp``);
    * ``tgt_warped``: ``tgt`` warped with ``-flow`` (upstream ``f_warp``,
      used by the training loss);
    * ``flow`` [N, H, W, 2] in pixels, channel 0 = rows (dy), 1 = columns
      (dx); ``registered[i, j] = src[i + dy, j + dx]`` (bilinear).

    ``division``: how the grid normalisation ``loc / (size - 1)`` is
    rounded -- ``'cpu'`` (default) as PyTorch on CPU (a true division: the
    lossless references in ../shared), ``'cuda'`` as PyTorch on a GPU (a
    multiplication by the float32 reciprocal: what made the released and
    stored ``ir_reg`` outputs).  One ulp in a sample coordinate; it moves a
    few pixels by one gray level (see the tests for the figures).

    ``return_pyramid=True`` also returns upstream's ``int_flow1`` (1/2 size)
    and ``int_flow2`` (1/4 size) -- of the padded input when it was padded --
    which the training loss needs.
    """

    def __init__(self, division="cpu", **kwargs):
        kwargs.setdefault("name", "mrrn")
        super().__init__(**kwargs)
        if division not in warp.DIVISIONS:
            raise ValueError(f"division must be one of {warp.DIVISIONS}, "
                             f"got {division!r}")
        self.division = division
        dtype = self.dtype_policy
        self.enc = [ConvBlock(i, o, s, name=f"enc_{k}", dtype=dtype)
                    for k, (i, o, s) in enumerate(ENCODER)]
        # Level 2 input: matching cost (1) + target features (32).
        # Level 1 input: cost (1) + target features (16) + flow (2) +
        # up-sampled level-2 decoder features (16).
        for level, width in ((2, 1 + 32), (1, 1 + 16 + 2 + 16)):
            for k, filters in enumerate(DECODER_BLOCKS):
                setattr(self, f"conv{level}_{k}", ConvBlock(
                    width, filters, name=f"conv{level}_{k}", dtype=dtype))
                width = filters
            setattr(self, f"predict_flow{level}a", layers.Conv2d(
                2, 3, padding=1, name=f"predict_flow{level}a", dtype=dtype))
            width = 2
            for k, (filters, dilation) in enumerate(DILATED):
                setattr(self, f"dc_conv{level}_{k}", DilatedConv(
                    width, filters, dilation, name=f"dc_conv{level}_{k}",
                    dtype=dtype))
                width = filters
            setattr(self, f"predict_flow{level}b", layers.Conv2d(
                2, 3, padding=1, name=f"predict_flow{level}b", dtype=dtype))
        self.build()

    def _level(self, level):
        """The decoder layers of one level, in upstream's order."""
        return {
            "blocks": [getattr(self, f"conv{level}_{k}")
                       for k in range(len(DECODER_BLOCKS))],
            "flow_a": getattr(self, f"predict_flow{level}a"),
            "dilated": [getattr(self, f"dc_conv{level}_{k}")
                        for k in range(len(DILATED))],
            "flow_b": getattr(self, f"predict_flow{level}b"),
        }

    def build(self, input_shape=None):
        for block in self.enc:
            block.build()
        for level in (2, 1):
            parts = self._level(level)
            for block in parts["blocks"] + parts["dilated"]:
                block.build()
            parts["flow_a"].build((None, None, None, DECODER_BLOCKS[-1]))
            parts["flow_b"].build((None, None, None, DILATED[-1][0]))
        self.built = True

    def _encode(self, x):
        x = self.enc[2](self.enc[1](self.enc[0](x)))
        return x, self.enc[5](self.enc[4](self.enc[3](x)))

    def _estimate(self, level, x):
        """Decoder blocks and flow head of one level: (decoder features,
        flow)."""
        parts = self._level(level)
        for block in parts["blocks"]:
            x = block(x)
        flow = parts["flow_a"](x)
        return x, flow

    def _refine(self, level, flow):
        """Dilated refinement of one level: a residual on the flow, computed
        from the flow alone."""
        parts = self._level(level)
        y = flow
        for block in parts["dilated"]:
            y = block(y)
        return parts["flow_b"](y) + flow

    def call(self, inputs, training=None, return_pyramid=False):
        del training  # no dropout or normalisation
        tgt, src = inputs
        tgt = ops.cast(tgt, "float32")
        src = ops.cast(src, "float32")
        h, w = ops.shape(src)[1], ops.shape(src)[2]
        # Static sizes (eager, JAX, a traced fixed shape): pad only when
        # needed.  Unknown sizes (a graph traced for any H x W): always go
        # through the padding path, a no-op gather for multiples of 4.
        static = isinstance(h, int) and isinstance(w, int)
        padded = not static or bool(h % SIZE_MULTIPLE or w % SIZE_MULTIPLE)
        if padded:
            tgt = pad_to_multiple(tgt, SIZE_MULTIPLE)
            src = pad_to_multiple(src, SIZE_MULTIPLE)

        c11, c12 = self._encode(src)
        c21, c22 = self._encode(tgt)

        # Level 2 (1/4 size).
        x = ops.concatenate([match_cost(c22, c12), c22], axis=-1)
        x, flow2 = self._estimate(2, x)
        upfeat2 = warp.upsample_flow(x)
        int_flow2 = self._refine(2, flow2)
        up_int_flow2 = warp.upsample_flow(int_flow2)
        features_s_warped = warp.warp(c11, up_int_flow2, self.division)

        # Level 1 (1/2 size): the head predicts a residual on the up-sampled
        # level-2 flow.
        x = ops.concatenate([match_cost(c21, features_s_warped), c21,
                             up_int_flow2, upfeat2], axis=-1)
        x, flow1 = self._estimate(1, x)
        flow1 = flow1 + up_int_flow2
        int_flow1 = self._refine(1, flow1)

        # Full size.
        flow = warp.upsample_flow(int_flow1)
        registered = warp.warp(src, flow, self.division)
        tgt_warped = warp.warp(tgt, -flow, self.division)
        if padded:
            registered = registered[:, :h, :w, :]
            tgt_warped = tgt_warped[:, :h, :w, :]
            flow = flow[:, :h, :w, :]
        if return_pyramid:
            return registered, tgt_warped, flow, int_flow1, int_flow2
        return registered, tgt_warped, flow

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[1])
        return shape, shape, shape[:-1] + (2,)

    def get_config(self):
        return {**super().get_config(), "division": self.division}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)

    def torch_params(self):
        return []

    def torch_children(self):
        """(state_dict prefix, module) in upstream's registration order:
        the encoder ``enc.0``-``enc.5``, then each decoder layer under its
        own attribute name (not its ``enc.6``-``enc.21`` alias)."""
        out = [(f"enc.{k}", block) for k, block in enumerate(self.enc)]
        for level in (2, 1):
            parts = self._level(level)
            out += [(b.name, b) for b in parts["blocks"]]
            out.append((parts["flow_a"].name, parts["flow_a"]))
            out += [(b.name, b) for b in parts["dilated"]]
            out.append((parts["flow_b"].name, parts["flow_b"]))
        return out

    def torch_variables(self):
        """{upstream state_dict key: keras.Variable} (aliases and grid
        buffers left out)."""
        return layers.torch_variables(self)
