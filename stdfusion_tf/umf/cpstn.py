"""CPSTN, UMF-CMGR's pseudo-infrared generator, and its PatchGAN
discriminator, as Keras 3 layers.

CPSTN is a CycleGAN (upstream ``CPSTN/``, a copy of junyanz/
pytorch-CycleGAN-and-pix2pix with UMF-CMGR's losses).  The released model
``rgb2ir_paired_Road_edge_pretrained`` (``CPSTN/checkpoints/pretrained/
test_opt.txt``) is run by the ``test`` model, which builds one generator::

    define_G(input_nc=3, output_nc=1, ngf=64, netG='resnet_9blocks',
             norm='instance', use_dropout=not no_dropout=False)

-> :class:`CPSTNGenerator` (upstream ``ResnetGenerator``, state_dict keys
``model.1.weight`` ...; the file is ``latest_net_G.pth``, or
``latest_net_G_A.pth`` from a ``cycle_gan`` training run, a plain
state_dict).  Training adds ``define_D(output_nc=1, ndf=64, netD='basic',
norm='instance')`` -> :class:`PatchDiscriminator` (``NLayerDiscriminator``
with ``n_layers=3``, the 70 x 70 PatchGAN), ``netD_A`` in ``cycle_gan``.

Norm 'instance' is CycleGAN's ``InstanceNorm2d(affine=False,
track_running_stats=False)``: no parameters and no buffers, so no
state_dict entries (checkpoints saved by PyTorch < 0.4 may still hold
``running_mean`` / ``running_var`` for them, which upstream's
``load_networks`` drops; a converter should drop them too).  Because the norm
has no affine part, upstream gives the convs before a norm a bias
(``use_bias = norm is InstanceNorm2d``).

The layers are upstream's ``nn.Sequential`` one to one, parameter-free
modules included, so the indices in the keys come from the structure:
generator ``model.0`` ReflectionPad2d(3), ``model.1`` 7x7 conv, ``model.2``
norm, ``model.3`` ReLU, two stride-2 3x3 convs (``model.4``, ``model.7``),
nine residual blocks (``model.10`` ... ``model.18``, each
``conv_block.{1,5}``: reflect-pad 1, 3x3 conv, norm, ReLU, reflect-pad 1, 3x3
conv, norm, plus the input), two ``ConvTranspose2d(k3, s2, p1,
output_padding=1)`` (``model.19``, ``model.22``), ReflectionPad2d(3), 7x7
conv (``model.26``), tanh.

Sizes: the generator maps H x W to ``4 * ceil-ish`` sizes (two stride-2
convs, two x2 transposed convs): H and W that are multiples of 4 come back
unchanged, others do not (upstream's ``preprocess none`` resizes every
image to a multiple of 4 first, ``__make_power_2(base=4)``).  The
discriminator maps 256 x 256 to a 30 x 30 map of patch logits (no sigmoid:
``lsgan``).

Inputs/outputs as upstream: RGB in [-1, 1] (``Normalize(0.5, 0.5)`` of
``ToTensor``), output in [-1, 1] (tanh); upstream saves it with
``tensor2im``: ``(x + 1) / 2 * 255`` in float32, truncated to uint8, the
gray plane repeated into an RGB PNG.
"""

import keras
import numpy as np

from stdfusion_tf.umf.layers import (
    Conv2d, ConvTranspose2d, InstanceNorm2d, LeakyReLU, Pad2d, ReLU,
    Sequential, Tanh, TorchModule, torch_variables)

# Two stride-2 convs down and two x2 transposed convs up
# (upstream ``n_downsampling``).
N_DOWNSAMPLING = 2


class _Builder:
    """Collects the modules of an ``nn.Sequential``, each named by its index
    (so that the Keras variable paths read like the state_dict keys)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.modules = []

    def add(self, cls, *args, **kwargs):
        self.modules.append(cls(*args, name=str(len(self.modules)),
                                dtype=self.dtype, **kwargs))

    def build(self, name):
        return Sequential(self.modules, name=name, dtype=self.dtype)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class ResnetBlock(TorchModule):
    """Upstream ``ResnetBlock`` (padding 'reflect', no dropout):
    ``x + conv_block(x)``."""

    def __init__(self, dim, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.use_bias = use_bias
        seq = _Builder(self.dtype_policy)
        seq.add(Pad2d, 1, "reflect")
        seq.add(Conv2d, dim, 3, use_bias=use_bias)
        seq.add(InstanceNorm2d)
        seq.add(ReLU)
        seq.add(Pad2d, 1, "reflect")
        seq.add(Conv2d, dim, 3, use_bias=use_bias)
        seq.add(InstanceNorm2d)
        self.conv_block = seq.build("conv_block")

    def call(self, x):
        return x + self.conv_block(x)

    def torch_children(self):
        return [("conv_block", self.conv_block)]

    def get_config(self):
        return {**super().get_config(), "dim": self.dim,
                "use_bias": self.use_bias}


class _TorchNet(keras.Model):
    """A network whose only child is upstream's ``self.model``
    (``nn.Sequential``)."""

    def call(self, x):
        return self.model(x)

    def torch_children(self):
        return [("model", self.model)]

    def torch_params(self):
        return []

    def torch_variables(self):
        """{upstream state_dict key: keras.Variable}."""
        return torch_variables(self)

    def count_params_torch(self):
        """PyTorch's ``sum(p.numel() for p in net.parameters())``."""
        return int(sum(np.prod(v.shape)
                       for v in self.torch_variables().values()))

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class CPSTNGenerator(_TorchNet):
    """Upstream ``ResnetGenerator(input_nc, output_nc, ngf, InstanceNorm,
    use_dropout=False, n_blocks, padding_type='reflect')``.

    ``model(rgb)``: float32 [N, H, W, input_nc] in [-1, 1] -> [N, H', W',
    output_nc] in [-1, 1] (H' = H when H is a multiple of 4).
    """

    def __init__(self, input_nc=3, output_nc=1, ngf=64, n_blocks=9,
                 **kwargs):
        kwargs.setdefault("name", "CPSTNGenerator")
        super().__init__(**kwargs)
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.ngf = ngf
        self.n_blocks = n_blocks
        use_bias = True  # instance norm has no affine part (upstream)

        seq = _Builder(self.dtype_policy)
        seq.add(Pad2d, 3, "reflect")
        seq.add(Conv2d, ngf, 7, use_bias=use_bias)
        seq.add(InstanceNorm2d)
        seq.add(ReLU)
        for i in range(N_DOWNSAMPLING):
            mult = 2 ** i
            seq.add(Conv2d, ngf * mult * 2, 3, stride=2, padding=1,
                    use_bias=use_bias)
            seq.add(InstanceNorm2d)
            seq.add(ReLU)
        mult = 2 ** N_DOWNSAMPLING
        for _ in range(n_blocks):
            seq.add(ResnetBlock, ngf * mult, use_bias=use_bias)
        for i in range(N_DOWNSAMPLING):
            mult = 2 ** (N_DOWNSAMPLING - i)
            seq.add(ConvTranspose2d, int(ngf * mult / 2), 3, stride=2,
                    padding=1, output_padding=1, use_bias=use_bias)
            seq.add(InstanceNorm2d)
            seq.add(ReLU)
        seq.add(Pad2d, 3, "reflect")
        seq.add(Conv2d, output_nc, 7)  # bias: always (upstream's default)
        seq.add(Tanh)
        self.model = seq.build("model")
        # Build now, so weights can be assigned before the first call
        # (16 x 16 is 4 x 4 at the bottleneck: reflection pad 1 works).
        self(np.zeros((1, 16, 16, input_nc), np.float32))

    def get_config(self):
        return {**super().get_config(), "input_nc": self.input_nc,
                "output_nc": self.output_nc, "ngf": self.ngf,
                "n_blocks": self.n_blocks}


@keras.saving.register_keras_serializable(package="stdfusion_tf.umf")
class PatchDiscriminator(_TorchNet):
    """Upstream ``NLayerDiscriminator(input_nc, ndf, n_layers,
    InstanceNorm)`` (``netD='basic'``: n_layers 3, the 70 x 70 PatchGAN).

    4x4 convs with PyTorch padding 1 (zeros): ``n_layers`` stride-2 ones,
    then two stride-1 ones; LeakyReLU(0.2); instance norm after every conv
    but the first and the last; all convs with a bias (instance norm has no
    affine part).  ``model(x)``: [N, H, W, input_nc] in [-1, 1] -> [N, H/8 -
    2, W/8 - 2, 1] patch logits (256 -> 30).
    """

    def __init__(self, input_nc=1, ndf=64, n_layers=3, **kwargs):
        kwargs.setdefault("name", "PatchDiscriminator")
        super().__init__(**kwargs)
        self.input_nc = input_nc
        self.ndf = ndf
        self.n_layers = n_layers
        use_bias = True  # instance norm (upstream: use_bias for it)
        kw, padw = 4, 1

        seq = _Builder(self.dtype_policy)
        seq.add(Conv2d, ndf, kw, stride=2, padding=padw)
        seq.add(LeakyReLU, 0.2)
        for n in range(1, n_layers):
            seq.add(Conv2d, ndf * min(2 ** n, 8), kw, stride=2, padding=padw,
                    use_bias=use_bias)
            seq.add(InstanceNorm2d)
            seq.add(LeakyReLU, 0.2)
        seq.add(Conv2d, ndf * min(2 ** n_layers, 8), kw, stride=1,
                padding=padw, use_bias=use_bias)
        seq.add(InstanceNorm2d)
        seq.add(LeakyReLU, 0.2)
        seq.add(Conv2d, 1, kw, stride=1, padding=padw)  # 1-channel logits
        self.model = seq.build("model")
        # Build now (64 x 64 maps to at least one logit for n_layers <= 3).
        self(np.zeros((1, 64, 64, input_nc), np.float32))

    def get_config(self):
        return {**super().get_config(), "input_nc": self.input_nc,
                "ndf": self.ndf, "n_layers": self.n_layers}


def to_uint8(fake):
    """Generator output -> uint8 as upstream's ``util.tensor2im`` (before
    ``save_image`` repeats it into RGB): ``(x + 1) / 2 * 255`` in float32,
    then ``astype(uint8)`` (truncation toward zero, not rounding)."""
    x = np.asarray(fake, np.float32)
    scaled = (x + np.float32(1)) / np.float32(2.0) * np.float32(255.0)
    return scaled.astype(np.uint8)
