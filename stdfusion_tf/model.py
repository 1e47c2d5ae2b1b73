"""STDFusionNet (Ma et al., IEEE TIM 2021) as Keras 3 layers.

The network, Fig. 2 of the paper, as released upstream:

* two feature-extraction branches with the same architecture and separate
  weights (``vi_extraction_network``, ``ir_extraction_network``): a 5x5 conv
  (1 -> 16) and three residual blocks (16 -> 16 -> 32 -> 64);
* a ``reconstruction_network`` on the channel concatenation
  ``[vi_feature, ir_feature]`` (128 channels): four residual blocks
  (128 -> 64 -> 32 -> 16 -> 1), the last one ending in tanh, so the fused
  image lies in [-1, 1] like the inputs.

Every layer and variable carries the name of its TF1 variable scope, so that
``tf1_variables()`` lists the 72 variables exactly as the released
checkpoints name them (``vi_extraction_network/block2/identity_conv/w``, ...)
without the root scope, which differs between the two releases
(``STMFusion_model`` / ``STDFusion_model``).

Only Keras layers and ``keras.ops`` are used here, so the model runs on any
Keras backend (TensorFlow by default, JAX on machines that only have JAX).
The one exception is how two additions are spelled on TensorFlow at
inference (see ``bias_add`` and ``residual_add``): the same arithmetic,
written so that grappler can fuse it into the convolutions.
"""

import keras
from keras import ops

# Leaky ReLU slope of the released code (tf.nn.leaky_relu's default).
LEAKY_ALPHA = 0.2

# float32_output modes (see STDFusionNet): which part of the reconstruction
# network computes in float32 under a bf16 policy.  "output": the output
# block (block4); "elu": from the ELU of block1 on (block1's activation and
# blocks 2-4), so no ELU output is rounded to bf16.
FLOAT32_OUTPUT_MODES = (False, "output", "elu")


def float32_output_mode(value):
    """``float32_output`` as one of FLOAT32_OUTPUT_MODES (True: "output")."""
    mode = "output" if value is True else value
    if mode not in FLOAT32_OUTPUT_MODES:
        raise ValueError(f"float32_output must be False, True, 'output' or "
                         f"'elu', got {value!r}")
    return mode

# TF1 `truncated_normal_initializer(stddev=1e-3)` for weights, zeros for
# biases: the upstream training initialisation.
WEIGHT_STDDEV = 1e-3


def _tf():
    """TensorFlow if it is the Keras backend, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf
    return tf


def bias_add(y, b, fusable=False):
    """``y + b``.  ``fusable`` (inference) on TensorFlow: spelled
    ``tf.nn.bias_add``, because grappler's oneDNN remapper only fuses a
    Conv2D + BiasAdd + AddN + activation chain into one ``_FusedConv2D``
    (see ``residual_add``) with a real BiasAdd op; upstream's
    ``conv + bias`` (AddV2) stops the chain at the bias."""
    tf = _tf() if fusable else None
    return tf.nn.bias_add(y, b) if tf else y + b


def residual_add(y, shortcut, fusable=False):
    """The residual sum ``y + shortcut`` of a block.  ``fusable`` (inference)
    on TensorFlow: spelled ``tf.math.add_n``.  With AddN (TF 2.21's remapper
    leaves AddV2 alone) conv3's bias, this sum and the block's activation run
    inside conv3's oneDNN kernel instead of as three more passes over the
    feature map: the same arithmetic, ``(conv3 + b) + shortcut``, about 5 %
    faster.  Training keeps upstream's ops (AddV2): there the pre-activation
    values feed the gradient, so nothing could fuse, and the step stays
    op-for-op equal to the TF1 one."""
    tf = _tf() if fusable else None
    return tf.math.add_n([y, shortcut]) if tf else y + shortcut


def lrelu(x):
    return ops.leaky_relu(x, negative_slope=LEAKY_ALPHA)


ACTIVATIONS = {
    "lrelu": lrelu,
    "elu": ops.elu,
    "tanh": ops.tanh,
    None: None,
}

# (block name, output channels, block activation) per network.
EXTRACTION_BLOCKS = (("block1", 16, "lrelu"), ("block2", 32, "lrelu"),
                     ("block3", 64, "lrelu"))
# As released upstream, reconstruction blocks 1 and 2 end in ELU, not in the
# leaky ReLU the paper's Fig. 2 shows; the released weights were trained with
# ELU, so that is the default.  `paper_activations=True` gives the plain
# leaky-ReLU variant (for training from scratch only: it does not match the
# released weights).
RECONSTRUCTION_BLOCKS = (("block1", 64, "elu"), ("block2", 32, "elu"),
                         ("block3", 16, "lrelu"), ("block4", 1, "tanh"))


@keras.saving.register_keras_serializable(package="stdfusion_tf")
class Conv(keras.layers.Layer):
    """Stride-1, SAME (zero) padded convolution with TF1-named variables.

    ``w`` has the TF1 layout [kh, kw, in, out]; ``b`` is [out] (absent for
    the bias-free ``identity_conv``).
    """

    def __init__(self, filters, kernel_size, use_bias=True, activation=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.use_bias = use_bias
        self.activation = activation

    def build(self, input_shape):
        k = self.kernel_size
        self.w = self.add_weight(
            name="w", shape=(k, k, input_shape[-1], self.filters),
            initializer=keras.initializers.TruncatedNormal(stddev=WEIGHT_STDDEV))
        self.b = None
        if self.use_bias:
            self.b = self.add_weight(name="b", shape=(self.filters,),
                                     initializer="zeros")

    def call(self, x, training=None):
        pad = self.kernel_size // 2
        if pad:
            # Zero padding then a VALID convolution -- upstream's
            # feature_padding; the same result as SAME, and faster with
            # oneDNN on CPU than its own SAME border handling.
            x = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        y = ops.conv(x, ops.cast(self.w, x.dtype), strides=1, padding="valid")
        if self.b is not None:
            y = bias_add(y, ops.cast(self.b, x.dtype), fusable=not training)
        act = ACTIVATIONS[self.activation]
        return act(y) if act else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def scoped_variables(self):
        yield "w", self.w
        if self.b is not None:
            yield "b", self.b

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "use_bias": self.use_bias,
                "activation": self.activation}


@keras.saving.register_keras_serializable(package="stdfusion_tf")
class ResBlock(keras.layers.Layer):
    """The residual block of Fig. 2.

    ``conv1`` 1x1 + lrelu -> ``conv2`` 3x3 + lrelu -> ``conv3`` 1x1 (to
    ``filters``), plus a bias-free 1x1 ``identity_conv`` on the block input;
    the sum goes through the block's activation.  ``conv1``/``conv2`` keep the
    input width, as in the released checkpoints.  With
    ``identity_conv=False`` the input is added directly (extraction
    ``block1``, as released upstream).
    """

    def __init__(self, filters, activation="lrelu", identity_conv=True,
                 float32_activation=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.activation = activation
        self.has_identity_conv = identity_conv
        # The block's activation on a float32 cast of the sum (bf16 training:
        # see STDFusionNet's float32_output="elu").
        self.float32_activation = float32_activation
        self.conv1 = self.conv2 = self.conv3 = self.identity_conv = None

    def build(self, input_shape):
        width = input_shape[-1]
        dtype = self.dtype_policy
        self.conv1 = Conv(width, 1, activation="lrelu", name="conv1",
                          dtype=dtype)
        self.conv2 = Conv(width, 3, activation="lrelu", name="conv2",
                          dtype=dtype)
        self.conv3 = Conv(self.filters, 1, name="conv3", dtype=dtype)
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        self.conv3.build(input_shape)
        if self.has_identity_conv:
            self.identity_conv = Conv(self.filters, 1, use_bias=False,
                                      name="identity_conv", dtype=dtype)
            self.identity_conv.build(input_shape)
        elif width != self.filters:
            raise ValueError(
                f"{self.name}: a block without identity_conv needs "
                f"in == out channels, got {width} -> {self.filters}")

    def call(self, x, training=None):
        # `training` reaches the Convs through Keras' call context too.
        y = self.conv3(self.conv2(self.conv1(x)))
        shortcut = self.identity_conv(x) if self.identity_conv else x
        y = residual_add(y, shortcut, fusable=not training)
        if self.float32_activation:
            y = ops.cast(y, "float32")
        return ACTIVATIONS[self.activation](y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def children(self):
        convs = [self.conv1, self.conv2, self.conv3]
        return convs + ([self.identity_conv] if self.identity_conv else [])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "activation": self.activation,
                "identity_conv": self.has_identity_conv,
                "float32_activation": self.float32_activation}


@keras.saving.register_keras_serializable(package="stdfusion_tf")
class ExtractionNetwork(keras.layers.Layer):
    """Feature extraction for one modality: conv1 (5x5, 1 -> 16) + 3 blocks."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dtype = self.dtype_policy
        self.conv1 = Conv(16, 5, activation="lrelu", name="conv1",
                          dtype=dtype)
        # As released upstream, block1 has no identity_conv (16 -> 16).
        self.blocks = [ResBlock(c, act, identity_conv=(name != "block1"),
                                name=name, dtype=dtype)
                       for name, c, act in EXTRACTION_BLOCKS]

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv1.build(shape)
        shape = self.conv1.compute_output_shape(shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def call(self, x):
        x = self.conv1(x)
        for block in self.blocks:
            x = block(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (EXTRACTION_BLOCKS[-1][1],)

    def children(self):
        return [self.conv1] + self.blocks


@keras.saving.register_keras_serializable(package="stdfusion_tf")
class ReconstructionNetwork(keras.layers.Layer):
    """Four residual blocks from the concatenated features to the fused image."""

    def __init__(self, paper_activations=False, float32_output=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.paper_activations = paper_activations
        self.float32_output = float32_output
        mode = float32_output_mode(float32_output)
        self.blocks = []
        last = len(RECONSTRUCTION_BLOCKS) - 1
        for i, (name, c, act) in enumerate(RECONSTRUCTION_BLOCKS):
            if paper_activations and act == "elu":
                act = "lrelu"
            # float32_output (see STDFusionNet): "output" computes the
            # output block (16 -> 1 channel + tanh) in float32 whatever the
            # policy; "elu" also block1's activation and blocks 2-3.
            in_float32 = ((mode == "output" and i == last)
                          or (mode == "elu" and i > 0))
            dtype = "float32" if in_float32 else self.dtype_policy
            self.blocks.append(ResBlock(
                c, act, name=name, dtype=dtype,
                float32_activation=(mode == "elu" and i == 0)))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def children(self):
        return list(self.blocks)

    def get_config(self):
        return {**super().get_config(),
                "paper_activations": self.paper_activations,
                "float32_output": self.float32_output}


@keras.saving.register_keras_serializable(package="stdfusion_tf")
class STDFusionNet(keras.Model):
    """STDFusionNet.  ``model((ir, vi))`` -> fused image.

    ``ir`` and ``vi`` are float tensors [batch, H, W, 1] in [-1, 1] (any H, W);
    the output has the same shape, also in [-1, 1].  ``dtype`` is a Keras
    dtype policy for every layer (``"mixed_bfloat16"``: bf16 compute, float32
    variables; see ``fusion.Fuser``).

    ``float32_output=True`` computes the output block (reconstruction
    ``block4``: 16 -> 1 channel and tanh) in float32 under any policy, the
    mixed-precision rule for a network's last layer.  bfloat16 training
    needs it: bf16 rounds tanh(x) to exactly +-1 for |x| > ~3 (float32
    only for |x| > ~9), where tanh's gradient ``1 - y^2`` is exactly 0; a
    fully saturated output gets no gradient at all and stays constant
    (``docs/bf16.md``).  ``float32_output="elu"`` (what bf16 training
    uses) also computes reconstruction block1's ELU and blocks 2-3 in
    float32: ELU outputs of negative inputs sit next to -1, where bf16's
    spacing (2^-8) rounds away the ``exp(x)`` part that carries the
    information, and the weight gradients of the layers reading them lose
    their sign (measured there).  Inference in bf16 needs neither (the
    default keeps the whole network in bf16).
    """

    def __init__(self, paper_activations=False, float32_output=False,
                 **kwargs):
        kwargs.setdefault("name", "STDFusion_model")
        super().__init__(**kwargs)
        self.paper_activations = paper_activations
        self.float32_output = float32_output
        dtype = self.dtype_policy
        self.vi_extraction_network = ExtractionNetwork(
            name="vi_extraction_network", dtype=dtype)
        self.ir_extraction_network = ExtractionNetwork(
            name="ir_extraction_network", dtype=dtype)
        self.reconstruction_network = ReconstructionNetwork(
            paper_activations=paper_activations,
            float32_output=float32_output, name="reconstruction_network",
            dtype=dtype)
        # Build eagerly with a symbolic shape: the weights exist (and can be
        # loaded) before the first call.
        self.build((None, None, None, 1))

    def build(self, input_shape=None):
        shape = (None, None, None, 1)
        self.vi_extraction_network.build(shape)
        self.ir_extraction_network.build(shape)
        self.reconstruction_network.build((None, None, None, 128))
        self.built = True

    def call(self, inputs, training=None):
        # No dropout or normalisation: the same arithmetic in both modes
        # (Keras passes `training` on to the layers, which only choose how
        # to spell two additions; see `residual_add`).
        del training
        ir, vi = inputs
        # Concatenation order [vi, ir] as released upstream.
        feature = ops.concatenate(
            [self.vi_extraction_network(vi), self.ir_extraction_network(ir)],
            axis=-1)
        return self.reconstruction_network(feature)

    def children(self):
        return [self.vi_extraction_network, self.ir_extraction_network,
                self.reconstruction_network]

    def tf1_variables(self):
        """{TF1 name without root scope: keras.Variable}, in upstream order."""
        out = {}

        def walk(layer, prefix):
            if isinstance(layer, Conv):
                for var_name, var in layer.scoped_variables():
                    out[f"{prefix}{layer.name}/{var_name}"] = var
                return
            for child in layer.children():
                walk(child, f"{prefix}{layer.name}/")

        for network in self.children():
            walk(network, "")
        return out

    def get_config(self):
        return {**super().get_config(),
                "paper_activations": self.paper_activations,
                "float32_output": self.float32_output}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=True, mirror=None, **kwargs):
        """A model from a preset: a built-in name (``presets.names()``: the
        released checkpoints, fetched and converted once into the Keras
        cache, and the project's 30-epoch retrain) or a folder written by ``save_to_preset`` (keras_hub's
        layout).  ``kwargs`` override the saved config, e.g.
        ``dtype="mixed_bfloat16"``.  See ``stdfusion_tf.presets``."""
        from . import presets

        return presets.load(cls, preset, mirror=mirror,
                            load_weights=load_weights, **kwargs)

    def save_to_preset(self, preset_dir):
        """Write ``config.json``, ``model.weights.h5`` and ``metadata.json``
        (keras_hub's preset layout) into ``preset_dir``; ``from_preset``
        reads the weights back bitwise."""
        from . import presets

        return presets.save_to_preset(self, preset_dir)


def tf1_variable_shapes():
    """{TF1 name: shape} of the 72 variables (the same for both activation
    variants)."""
    model = STDFusionNet()
    return {k: tuple(v.shape) for k, v in model.tf1_variables().items()}
