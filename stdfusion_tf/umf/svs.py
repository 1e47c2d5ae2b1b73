"""UMF-CMGR's histogram-saliency weight maps (upstream ``data/get_svs_map.py``).

For a uint8 gray image with histogram ``hist``, the saliency of gray level
``i`` is ``S(i) = sum_j |j - i| hist(j)``; every pixel gets the saliency of
its level, divided by the image's largest (an all-zero map stays zero).
For an (infrared, visible) pair the DIFN training weights are
``w_ir = 0.5 + 0.5 (S_ir - S_vi)`` and ``w_vi = 0.5 + 0.5 (S_vi - S_ir)``,
saved as uint8 images ``(w * 255).astype(uint8)`` -- a truncation, not a
rounding, as released -- and read back by ``dataloader/fuse_data_vsm.py``
as ``u8 / 255.`` (so ``w_ir + w_vi`` is 1 only up to that truncation).

Arithmetic as upstream's ``torch_vsm``: float32 histogram counts, each
``S(i)`` accumulated in float32 over ``j = 0..255`` in order (the term
``|j - i| hist(j)`` exact, the sums rounded to float32 -- exact for images
up to 256 x 256, rounded as upstream's beyond), float32 division by the max.
Both images of a pair must have the same size (upstream subtracts the maps).
"""

import numpy as np

from ..errors import InputError

LEVELS = 256


def saliency(gray_u8):
    """float32 [H, W] map in [0, 1] of a uint8 [H, W] image (``torch_vsm``)."""
    img = np.asarray(gray_u8)
    if img.dtype != np.uint8:
        raise ValueError(f"saliency() takes uint8 images, got {img.dtype}")
    hist = np.bincount(img.ravel(), minlength=LEVELS).astype(np.float32)
    levels = np.arange(LEVELS)
    sal = np.zeros(LEVELS, np.float32)
    for j in range(LEVELS):  # float32 sums in upstream's order
        term = (np.abs(j - levels) * np.float64(hist[j])).astype(np.float32)
        sal = sal + term
    smap = sal[img]
    top = smap.max()
    if top == 0:
        return np.zeros(img.shape, np.float32)
    return smap / top


def weight_maps(ir_u8, vi_u8, path=None):
    """(w_ir, w_vi) float32 [H, W] of a pair."""
    if np.shape(ir_u8) != np.shape(vi_u8):
        raise InputError(path, "size mismatch: the infrared image is {}x{} "
                         "(H x W), the visible {}x{}".format(
                             *np.shape(ir_u8), *np.shape(vi_u8)))
    s_ir, s_vi = saliency(ir_u8), saliency(vi_u8)
    half = np.float32(0.5)
    return half + half * (s_ir - s_vi), half + half * (s_vi - s_ir)


def to_uint8(weight):
    """A weight map as upstream saves it: ``(w * 255).astype(np.uint8)``
    (float32 product, truncated toward zero)."""
    return (np.asarray(weight, np.float32) * 255).astype(np.uint8)


def map_pair(ir_u8, vi_u8, path=None):
    """(ir map, vi map) uint8 images of a pair, as upstream writes them."""
    w_ir, w_vi = weight_maps(ir_u8, vi_u8, path)
    return to_uint8(w_ir), to_uint8(w_vi)
