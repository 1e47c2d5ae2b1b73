"""The networks of the UMF-CMGR pipeline behind one call each.

``Registrar``: MRRN (and optionally the CPSTN generator that makes its
target).  Fusers share one interface (:class:`PairFuser`): DIFN, or this
project's STDFusionNet with its own reading and saving."""

import numpy as np

from .image_io import read_rgb_unit, read_unit


def _traced(fn, channels):
    """``fn`` traced once for every image size ([1, None, None, c] inputs)."""
    import tensorflow as tf

    specs = [tf.TensorSpec([1, None, None, c], tf.float32) for c in channels]
    return tf.function(fn, input_signature=specs)


class Registrar:
    """MRRN (and optionally the CPSTN generator that makes its target).

    ``registrar(target, source)`` with [H, W] float32 images in [0, 1] ->
    (registered [H, W], flow [2, H, W] float32, channel 0 = dy)."""

    def __init__(self, mrrn, cpstn=None):
        self.mrrn = mrrn
        self.cpstn = cpstn
        self._reg = _traced(lambda t, s: mrrn((t, s), training=False)[::2],
                            (1, 1))
        self._gen = None
        if cpstn is not None:
            self._gen = _traced(lambda x: cpstn(x, training=False),
                                (cpstn.input_nc,))

    def __call__(self, target, source):
        reg, flow = self._reg(np.asarray(target, np.float32)[None, ..., None],
                              np.asarray(source, np.float32)[None, ..., None])
        return (reg.numpy()[0, :, :, 0],
                np.ascontiguousarray(flow.numpy()[0].transpose(2, 0, 1)))

    def pseudo_infrared(self, vi_path):
        """CPSTN's pseudo-infrared image of a visible image, as upstream made
        ``pseudo_ir/``: RGB ``ToTensor`` -> ``Normalize(0.5, 0.5)`` -> G ->
        ``tensor2im`` (``(y + 1) / 2 * 255`` truncated to uint8), then read
        back as the registration target (``u8 / 255.``).

        Upstream's CycleGAN test resized every image to 256 x 256 first
        (its inputs already were); here the generator runs at the image's
        own size, padded (replicate, bottom/right) to a multiple of 4 for its
        two stride-2 levels and cropped back."""
        from . import cpstn as cpstn_module
        from .layers import pad2d

        rgb = read_rgb_unit(vi_path)
        if self.cpstn.input_nc == 1:  # a generator trained on gray input
            rgb = rgb.mean(axis=-1, keepdims=True)
        x = (rgb - np.float32(0.5)) / np.float32(0.5)
        h, w = x.shape[:2]
        ph, pw = -h % 4, -w % 4
        x = np.asarray(pad2d(x[None], (0, ph, 0, pw), "replicate"))
        fake = self._gen(x).numpy()[0, :h, :w, 0]
        return (cpstn_module.to_uint8(fake) / 255.0).astype(np.float32)


class PairFuser:
    """What the pipeline fuses with: each method -> the uint8 image to save
    (gray, or RGB with ``color``: the visible image's chroma put back).

    ``fuse_unit``: an in-memory infrared image in [0, 1] (a registration
    result) and a visible file.  ``fuse_files``: a pair of files; by default
    the infrared file is read as upstream UMF-CMGR did (``read_unit``)."""

    def fuse_unit(self, ir_unit, vi_path, color=False):
        raise NotImplementedError

    def fuse_files(self, ir_path, vi_path, color=False):
        return self.fuse_unit(read_unit(ir_path), vi_path, color)


class DIFNFuser(PairFuser):
    """DIFN on [H, W] float32 (ir, vi) in [0, 1] -> fused [H, W] float32
    (tanh output; saved with ``difn.to_uint8``)."""

    def __init__(self, difn):
        self.difn = difn
        self._fn = _traced(lambda ir, vi: difn((ir, vi), training=False),
                           (1, 1))

    def __call__(self, ir, vi):
        return self._fn(np.asarray(ir, np.float32)[None, ..., None],
                        np.asarray(vi, np.float32)[None, ..., None]
                        ).numpy()[0, :, :, 0]

    def fuse_unit(self, ir_unit, vi_path, color=False):
        from . import difn as difn_module
        from .ycrcb import merge_color

        fused = difn_module.to_uint8(self(ir_unit, read_unit(vi_path)))
        return merge_color(fused, vi_path) if color else fused


class STDFusionNetFuser(PairFuser):
    """This project's STDFusionNet as the fuser of a (registered) pair, with
    its own reading and saving (``fusion.load_pair`` / ``to_image``:
    upstream STDFusionNet's luma, ``x / 127.5 - 1``, min-max saving)."""

    def __init__(self, fuser):
        self.fuser = fuser

    def fuse_unit(self, ir_unit, vi_path, color=False):
        from .. import fusion, images

        vi = images.scale_in(images.read_gray(vi_path))
        ir = np.asarray(ir_unit, np.float32) * np.float32(2) - np.float32(1)
        return fusion.to_image(self.fuser(ir, vi), vi_path, color=color)

    def fuse_files(self, ir_path, vi_path, color=False):
        from .. import fusion

        ir, vi = fusion.load_pair(ir_path, vi_path)
        return fusion.to_image(self.fuser(ir, vi), vi_path, color=color)
