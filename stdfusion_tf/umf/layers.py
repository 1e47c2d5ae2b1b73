"""PyTorch-semantics building blocks for the UMF-CMGR networks, in Keras 3.

UMF-CMGR (Wang et al., IJCAI 2022) is released as PyTorch code.  Its layers
are not Keras' own: ``nn.Conv2d(k, stride=2, padding=1)`` is not Keras
``'same'`` (PyTorch pads both sides symmetrically, Keras pads the bottom/right
more), ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` crops a different
window of the full transposed convolution than Keras ``'same'``, and
reflection/replication padding exist only as explicit pads.  These layers pad
explicitly (``keras.ops.pad``) and then run a VALID convolution, so the
arithmetic is PyTorch's for every input size.

Every layer here is a :class:`TorchModule`: it knows its PyTorch attribute
name (``torch_params`` / ``torch_children``), so ``torch_variables(model)``
derives the state_dict keys (``enc.0.main.weight``) from the layer structure
instead of a typed table.  Weights keep the Keras layout
([kh, kw, in, out] for convolutions, [kh, kw, out, in] for transposed ones);
``from_torch_layout`` converts a state_dict tensor.

Only ``keras.ops`` is used, so the networks run on any Keras backend.
"""

import math

import keras
from keras import ops


class TorchModule(keras.layers.Layer):
    """A layer that mirrors one PyTorch ``nn.Module``.

    ``torch_params()`` -> [(name, variable)] of its own parameters;
    ``torch_children()`` -> [(attribute name, TorchModule)] in registration
    order (a ``ModuleList`` / ``Sequential`` index is its name: ``"0"``).
    """

    def torch_params(self):
        return []

    def torch_children(self):
        return []


def torch_variables(module, prefix=""):
    """{state_dict key: keras.Variable} derived from the layer structure."""
    out = {}
    for name, var in module.torch_params():
        out[prefix + name] = var
    for name, child in module.torch_children():
        out.update(torch_variables(child, f"{prefix}{name}."))
    return out


def from_torch_layout(array, transposed=False):
    """A state_dict tensor (NumPy) in the Keras layout of these layers.

    Conv2d weights [out, in, kh, kw] -> [kh, kw, in, out]; ConvTranspose2d
    weights [in, out, kh, kw] -> [kh, kw, out, in]: both are the same axis
    permutation.  Everything else is unchanged."""
    del transposed  # the permutation is the same for both kinds
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    return array


def to_torch_layout(array):
    """The inverse of :func:`from_torch_layout`."""
    if array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    return array


def pad2d(x, pads, mode="zeros"):
    """Pad H and W of an NHWC tensor.  ``pads`` = (top, bottom, left, right).
    Modes as PyTorch's ``padding_mode`` / ``nn.ReflectionPad2d`` /
    ``nn.ReplicationPad2d``."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    widths = ((0, 0), (top, bottom), (left, right), (0, 0))
    if mode == "zeros":
        return ops.pad(x, widths)
    if mode == "reflect":
        return ops.pad(x, widths, mode="reflect")
    if mode == "replicate":
        # keras.ops.pad has no 'edge' mode on every backend: repeat the
        # border rows/columns by indexing (exactly PyTorch's replicate).
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        rows = ops.clip(ops.arange(-top, h + bottom), 0, h - 1)
        cols = ops.clip(ops.arange(-left, w + right), 0, w - 1)
        x = ops.take(x, rows, axis=1)
        return ops.take(x, cols, axis=2)
    raise ValueError(f"unknown padding mode {mode!r}")


def _pytorch_uniform(fan_in):
    """PyTorch's default Conv2d init (kaiming_uniform(a=sqrt(5)) for the
    weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias): both are
    U(-b, b) with b = 1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
    return keras.initializers.RandomUniform(-bound, bound)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class Conv2d(TorchModule):
    """``nn.Conv2d`` (NHWC here): explicit padding, then a VALID convolution.

    ``padding`` is PyTorch's symmetric padding (an int); ``padding_mode`` is
    ``zeros``, ``reflect`` or ``replicate``.  Variables ``weight``
    [kh, kw, in, out] and ``bias`` [out].
    """

    def __init__(self, filters, kernel_size, stride=1, padding=0, dilation=1,
                 use_bias=True, padding_mode="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.use_bias = use_bias
        self.padding_mode = padding_mode

    def build(self, input_shape):
        k = self.kernel_size
        init = _pytorch_uniform(input_shape[-1] * k * k)
        self.weight = self.add_weight(
            name="weight", shape=(k, k, input_shape[-1], self.filters),
            initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=init)
                     if self.use_bias else None)

    def call(self, x):
        p = self.padding
        x = pad2d(x, (p, p, p, p), self.padding_mode)
        y = ops.conv(x, ops.cast(self.weight, x.dtype), strides=self.stride,
                     padding="valid", dilation_rate=self.dilation)
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            span = self.dilation * (self.kernel_size - 1) + 1
            return (n + 2 * self.padding - span) // self.stride + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]),
                self.filters)

    def torch_params(self):
        return [("weight", self.weight)] + (
            [("bias", self.bias)] if self.bias is not None else [])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation,
                "use_bias": self.use_bias, "padding_mode": self.padding_mode}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class ConvTranspose2d(TorchModule):
    """``nn.ConvTranspose2d(k, stride, padding, output_padding)`` (NHWC).

    The full transposed convolution ((H - 1) * s + k rows) is computed VALID
    and PyTorch's window ``[p, p + (H - 1) * s - 2p + k + output_padding)``
    is cut out of it (zeros where the window runs past the end, as PyTorch's
    output there gets only the bias).  Keras ``'same'`` would cut
    ``[0, s * H)`` instead: one pixel shifted for k=3, s=2, p=1, op=1.
    Variables ``weight`` [kh, kw, out, in] and ``bias`` [out].
    """

    def __init__(self, filters, kernel_size, stride=1, padding=0,
                 output_padding=0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.use_bias = use_bias

    def build(self, input_shape):
        k = self.kernel_size
        # PyTorch computes the fan-in of a transposed conv from weight.size(1)
        # (= out channels) * k * k.
        init = _pytorch_uniform(self.filters * k * k)
        self.weight = self.add_weight(
            name="weight", shape=(k, k, self.filters, input_shape[-1]),
            initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=init)
                     if self.use_bias else None)

    def _out(self, n):
        return ((n - 1) * self.stride - 2 * self.padding + self.kernel_size
                + self.output_padding)

    def call(self, x):
        full = ops.conv_transpose(x, ops.cast(self.weight, x.dtype),
                                  strides=self.stride, padding="valid")
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        p = self.padding
        extra = max(self.output_padding - p, 0)  # window past the full end
        if extra:
            full = ops.pad(full, ((0, 0), (0, extra), (0, extra), (0, 0)))
        y = full[:, p:p + self._out(h), p:p + self._out(w), :]
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        return (input_shape[0],
                None if input_shape[1] is None else self._out(input_shape[1]),
                None if input_shape[2] is None else self._out(input_shape[2]),
                self.filters)

    def torch_params(self):
        return [("weight", self.weight)] + (
            [("bias", self.bias)] if self.bias is not None else [])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding,
                "output_padding": self.output_padding,
                "use_bias": self.use_bias}


def instance_norm(x, eps=1e-5):
    """``nn.InstanceNorm2d(affine=False, track_running_stats=False)``:
    per-image, per-channel normalisation with the biased variance."""
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) / ops.sqrt(var + eps)


# --- Containers and parameter-free modules -------------------------------
# Upstream builds its networks as ``nn.Sequential`` lists in which padding,
# normalisation and activation modules take an index too (CycleGAN's
# ``model.1.weight`` follows ``model.0 = ReflectionPad2d``).  Mirroring every
# module, parameter-free ones included, keeps the indices -- and so the
# state_dict keys -- derived from the structure.


class Sequential(TorchModule):
    """``nn.Sequential``: runs its modules in order; child names are their
    indices (``"0"``, ``"1"``, ...)."""

    def __init__(self, modules, **kwargs):
        super().__init__(**kwargs)
        self.modules = list(modules)

    def call(self, x):
        for module in self.modules:
            x = module(x)
        return x

    def torch_children(self):
        return [(str(i), m) for i, m in enumerate(self.modules)]


class _Op(TorchModule):
    """A parameter-free module: ``fn(x)``."""

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class ReLU(_Op):
    def call(self, x):
        return ops.relu(x)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class LeakyReLU(_Op):
    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def call(self, x):
        if x.dtype == "float64":
            # TensorFlow's LeakyRelu holds its slope as a float32 attribute
            # (0.2 -> 0.2000000030); PyTorch's float64 slope is exact.
            return ops.where(x > 0, x, x * self.negative_slope)
        return ops.leaky_relu(x, negative_slope=self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class Tanh(_Op):
    def call(self, x):
        return ops.tanh(x)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class Sigmoid(_Op):
    def call(self, x):
        return ops.sigmoid(x)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class Pad2d(_Op):
    """``nn.ReflectionPad2d(p)`` / ``nn.ReplicationPad2d(p)`` /
    ``nn.ZeroPad2d(p)`` (``mode`` as :func:`pad2d`)."""

    def __init__(self, padding, mode="reflect", **kwargs):
        super().__init__(**kwargs)
        self.padding = padding
        self.mode = mode

    def call(self, x):
        p = self.padding
        return pad2d(x, (p, p, p, p), self.mode)

    def compute_output_shape(self, input_shape):
        p = 2 * self.padding
        return (input_shape[0],
                None if input_shape[1] is None else input_shape[1] + p,
                None if input_shape[2] is None else input_shape[2] + p,
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding,
                "mode": self.mode}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class InstanceNorm2d(_Op):
    """``nn.InstanceNorm2d(affine=False, track_running_stats=False)`` (the
    CycleGAN 'instance' norm): no parameters, no buffers, so no state_dict
    entries; see :func:`instance_norm`."""

    def __init__(self, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, x):
        return instance_norm(x, self.eps)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
