"""DIFN, UMF-CMGR's dual-path interaction fusion network, as Keras 3 layers.

Upstream ``models/fusion_net.py`` ``FusionNet(nfeats=64)`` exactly as coded
(the code made the released weights; where the paper's text differs, the code
wins):

* head: one stem per modality, ``conv1_1`` (infrared) and ``conv2_1``
  (visible): 3x3 conv 1 -> 64 + LeakyReLU(0.2);
* body: one residual dense block (RDB) per path (``ir_path.0``,
  ``vi_path.0``): three dense layers (3x3 conv, no bias, ReLU, each output
  concatenated after its input: 64 -> 128 -> 192 -> 256 channels), a 1x1
  conv (no bias) back to 64, plus the block input;
* the interaction fusion module ``fuse`` as coded, which is not the paper's
  IFM (Eq. 5-7): query and key are 3x3 convs (with bias) of the infrared and
  the visible features, the attention is ``sigmoid(q * k)`` (element-wise,
  no softmax, no spatial/channel pooling), both feature maps are multiplied
  by the same attention map, and each path is mixed with its attended
  version by two learned per-pixel gates, ``gamma1`` / ``gamma2`` (3x3 conv
  128 -> 2 of ``[features, attended]``):
  ``out = features * gamma[0] + attended * gamma[1]``;
* ``fuse_res``: 3x3 conv of ``[ir_out, vi_out]`` (128 -> 64), then
  ``out_conv`` 3x3 64 -> 1 and tanh (no residual to the inputs).

Upstream builds the fusion module as ``FuseModule()`` -- its default width
64 -- whatever ``nfeats`` is, so only ``nfeats=64`` runs upstream; here too.

Every conv is stride 1 with "same" padding (zeros), so DIFN has no size
constraint: any H x W fuses (no padding or cropping is needed, and none is
done).  Upstream's test script fuses the 256 x 256 RoadScene pairs only
because its data are that size.

Inputs, as upstream's ``Test/test_fuse.py`` (``FuseTestData``): gray images
read with ``cv2.IMREAD_GRAYSCALE`` (``images.read_gray_cv2``), ``u8 / 255.``
in float64, then float32 (:func:`scale_in`).  The output (tanh, so in
[-1, 1]; values below 0 are possible) is saved ``x * 255`` in float32 and
converted by OpenCV's ``saturate_cast`` (round half to even, then clip to
0..255): :func:`to_uint8`.
"""

import keras
import numpy as np
from keras import ops

from stdfusion_tf.umf.layers import (
    Conv2d, LeakyReLU, Sequential, TorchModule, torch_variables)

# FusionNet's width: the released weights' and the only one upstream runs
# (its FuseModule is always built 64 wide).
NFEATS = 64
# Dense layers per residual dense block (upstream ``nDenselayer``).
DENSE_LAYERS = 3
# LeakyReLU slope of the two stems.
STEM_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class DenseLayer(TorchModule):
    """Upstream ``make_dense``: ``cat([x, relu(conv3x3(x))])`` (no bias)."""

    def __init__(self, growth_rate, **kwargs):
        super().__init__(**kwargs)
        self.growth_rate = growth_rate
        self.conv = Conv2d(growth_rate, 3, padding=1, use_bias=False,
                           name="conv", dtype=self.dtype_policy)

    def call(self, x):
        return ops.concatenate([x, ops.relu(self.conv(x))], axis=-1)

    def torch_children(self):
        return [("conv", self.conv)]

    def get_config(self):
        return {**super().get_config(), "growth_rate": self.growth_rate}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class RDB(TorchModule):
    """Residual dense block: ``dense_layers`` (``DENSE_LAYERS`` x
    :class:`DenseLayer`), ``conv_1x1`` back to ``channels`` (no bias), plus
    the input."""

    def __init__(self, channels, dense_layers=DENSE_LAYERS, growth_rate=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.n_dense = dense_layers
        self.growth_rate = growth_rate or channels
        dtype = self.dtype_policy
        self.dense_layers = Sequential(
            [DenseLayer(self.growth_rate, name=str(i), dtype=dtype)
             for i in range(dense_layers)],
            name="dense_layers", dtype=dtype)
        self.conv_1x1 = Conv2d(channels, 1, use_bias=False, name="conv_1x1",
                               dtype=dtype)

    def call(self, x):
        return self.conv_1x1(self.dense_layers(x)) + x

    def torch_children(self):
        return [("dense_layers", self.dense_layers),
                ("conv_1x1", self.conv_1x1)]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "dense_layers": self.n_dense, "growth_rate": self.growth_rate}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class FuseModule(TorchModule):
    """Upstream ``FuseModule`` (the interaction fusion module as coded).

    ``call((x, prior))`` with ``x`` the infrared and ``prior`` the visible
    features -> ``(x_out, prior_out)``::

        attention = sigmoid(query_conv(x) * key_conv(prior))
        ax, ap = x * attention, prior * attention
        g1 = gamma1(cat[x, ax]);     x_out = x * g1[0] + ax * g1[1]
        g2 = gamma2(cat[prior, ap]); prior_out = prior * g2[0] + ap * g2[1]
    """

    def __init__(self, in_dim=NFEATS, **kwargs):
        super().__init__(**kwargs)
        self.in_dim = in_dim
        dtype = self.dtype_policy

        def conv(filters, name):
            return Conv2d(filters, 3, padding=1, name=name, dtype=dtype)

        self.query_conv = conv(in_dim, "query_conv")
        self.key_conv = conv(in_dim, "key_conv")
        self.gamma1 = conv(2, "gamma1")
        self.gamma2 = conv(2, "gamma2")

    @staticmethod
    def _gate(features, attended, gamma):
        # gamma[:, [0]] / gamma[:, [1]] upstream: one gate map per term,
        # broadcast over the channels.
        g = gamma(ops.concatenate([features, attended], axis=-1))
        return features * g[..., 0:1] + attended * g[..., 1:2]

    def call(self, inputs):
        x, prior = inputs
        attention = ops.sigmoid(self.query_conv(x) * self.key_conv(prior))
        attention_x = x * attention
        attention_p = prior * attention
        return (self._gate(x, attention_x, self.gamma1),
                self._gate(prior, attention_p, self.gamma2))

    def torch_children(self):
        return [("query_conv", self.query_conv), ("key_conv", self.key_conv),
                ("gamma1", self.gamma1), ("gamma2", self.gamma2)]

    def get_config(self):
        return {**super().get_config(), "in_dim": self.in_dim}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class DIFN(keras.Model):
    """UMF-CMGR's fusion network (upstream ``FusionNet``).

    ``model((ir, vi))`` -> fused image: float32 tensors [N, H, W, 1] in
    [0, 1] (:func:`scale_in`), any H x W; the output has the same shape, in
    [-1, 1] (tanh), saved with :func:`to_uint8`.  ``torch_variables()``
    maps upstream's state_dict keys (``ir_path.0.dense_layers.2.conv.weight``,
    ...) to the variables.
    """

    def __init__(self, nfeats=NFEATS, **kwargs):
        kwargs.setdefault("name", "DIFN")
        super().__init__(**kwargs)
        if nfeats != NFEATS:
            # Upstream's FuseModule() is 64 wide whatever nfeats is: any
            # other width fails there at the first product q * x.
            raise ValueError(f"DIFN is built with nfeats={NFEATS} upstream "
                             f"(its fusion module is fixed at {NFEATS}), "
                             f"got {nfeats}")
        self.nfeats = nfeats
        dtype = self.dtype_policy

        def stem(name):
            return Sequential(
                [Conv2d(nfeats, 3, padding=1, name="0", dtype=dtype),
                 LeakyReLU(STEM_SLOPE, name="1", dtype=dtype)],
                name=name, dtype=dtype)

        def path(name):
            # ``nn.Sequential`` of one RDB upstream (``for i in range(1)``).
            return Sequential([RDB(nfeats, name="0", dtype=dtype)],
                              name=name, dtype=dtype)

        # Attribute order = upstream's registration order (state_dict order).
        self.conv1_1 = stem("conv1_1")
        self.conv2_1 = stem("conv2_1")
        self.ir_path = path("ir_path")
        self.vi_path = path("vi_path")
        self.fuse = FuseModule(name="fuse", dtype=dtype)
        self.fuse_res = Conv2d(nfeats, 3, padding=1, name="fuse_res",
                               dtype=dtype)
        self.out_conv = Conv2d(1, 3, padding=1, name="out_conv", dtype=dtype)
        # Build now (every layer is size-agnostic; a tiny pair creates all
        # the variables), so weights can be assigned before the first call.
        tiny = np.zeros((1, 4, 4, 1), np.float32)
        self((tiny, tiny))

    def call(self, inputs):
        ir, vi = inputs
        ir_dfeats = self.ir_path(self.conv1_1(ir))
        vi_dfeats = self.vi_path(self.conv2_1(vi))
        fuse_ir, fuse_vi = self.fuse((ir_dfeats, vi_dfeats))
        fused = self.fuse_res(ops.concatenate([fuse_ir, fuse_vi], axis=-1))
        return ops.tanh(self.out_conv(fused))

    def torch_children(self):
        return [("conv1_1", self.conv1_1), ("conv2_1", self.conv2_1),
                ("ir_path", self.ir_path), ("vi_path", self.vi_path),
                ("fuse", self.fuse), ("fuse_res", self.fuse_res),
                ("out_conv", self.out_conv)]

    def torch_params(self):
        return []

    def torch_variables(self):
        """{upstream state_dict key: keras.Variable} (24 entries)."""
        return torch_variables(self)

    def get_config(self):
        return {**super().get_config(), "nfeats": self.nfeats}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


def scale_in(gray_u8):
    """uint8 [..., H, W] -> float32 in [0, 1] as upstream reads images:
    ``u8 / 255.`` in float64, then float32 (not ``u8 * (1 / 255)``, which
    rounds differently for some values)."""
    return (np.asarray(gray_u8, np.uint8) / 255.).astype(np.float32)


def to_uint8(fused):
    """DIFN output -> uint8 as upstream saves it: ``kornia.tensor_to_image(
    x) * 255.`` (float32), then ``cv2.imwrite``'s conversion to 8 bits
    (``saturate_cast``: round half to even, then clip to 0..255; negative
    tanh outputs become 0)."""
    scaled = np.asarray(fused, np.float32) * np.float32(255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
