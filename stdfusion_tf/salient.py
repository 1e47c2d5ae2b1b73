"""The implicit salient-target map of the paper's Fig. 15.

The paper subtracts the visible image from the fused result and finds that
the difference lights up the infrared image's salient targets (and thermal
targets the annotation missed): the network has learnt to detect them
without being told where they are at test time.  Here, per pair::

    d   = |fused - visible|                  on the network's [-1, 1] scale
    map = clip(round(127.5 * d), 0, 255)     uint8, <output_dir>/salient/<stem>.png

``fused`` is the network's output before any saving (no min-max stretch),
``visible`` the network's input (``x / 127.5 - 1`` of the visible luma).
The factor 127.5 is the one that maps [-1, 1] back to gray levels, so a map
value *is* the absolute gray-level difference between the unstretched fused
image and the visible image (``d`` can reach 2, i.e. 255 after clipping).
The scale is fixed, not min-max per image, so that maps compare across images
and a threshold means the same gray-level difference everywhere: an image
with no salient target keeps a dark map instead of stretched-up noise.

The overlay (``<stem>_overlay.png``, RGB) lays the map over the visible image
as the network sees it (its luma, in gray, so that all colour comes from the
map)::

    v       = map / 255
    colour  = "hot" colour map of v: black -> red -> yellow -> white,
              (R, G, B) = clip((3v, 3v - 1, 3v - 2), 0, 1)
    overlay = (1 - v) * gray + v * 255 * colour

i.e. the colour's opacity is the map value itself: regions where fused and
visible agree show the visible image, large differences show red to yellow.
"""

import os

import numpy as np

SCALE = np.float32(127.5)  # [-1, 1] units -> gray levels
SUBDIR = "salient"


def difference(fused, visible):
    """|fused - visible|, float32 [H, W] in [0, 2] (network scale)."""
    return np.abs(np.asarray(fused, np.float32)
                  - np.asarray(visible, np.float32))


def to_uint8(diff):
    """Fixed scaling: ``clip(round(127.5 * d), 0, 255)`` (gray levels)."""
    return np.clip(np.rint(np.asarray(diff, np.float32) * SCALE),
                   0, 255).astype(np.uint8)


def salient_map(fused, visible):
    """The 8-bit Fig. 15 map of one pair (both arrays on [-1, 1])."""
    return to_uint8(difference(fused, visible))


def hot(v):
    """[..., ] values in [0, 1] -> [..., 3] RGB in [0, 1] (matplotlib's "hot"
    as three linear ramps)."""
    v = np.asarray(v, np.float32)[..., None]
    return np.clip(3 * v - np.array([0, 1, 2], np.float32), 0, 1)


def overlay(map_u8, visible):
    """RGB uint8: the map in "hot" colours over the gray visible image, with
    the map value as opacity (see the module docstring)."""
    v = map_u8.astype(np.float32) / 255
    gray = np.clip((np.asarray(visible, np.float32) + 1) * SCALE, 0, 255)
    out = (1 - v)[..., None] * gray[..., None] + (v * 255)[..., None] * hot(v)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def otsu_threshold(map_u8):
    """Otsu's level t of a uint8 image (salient: ``map > t``), maximising the
    between-class variance of the 256-bin histogram; 0 for a flat image."""
    hist = np.bincount(np.asarray(map_u8, np.uint8).ravel(), minlength=256)
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * (1 - w0))
    between[~np.isfinite(between)] = 0
    return int(np.argmax(between))


def iou(a, b):
    """Intersection over union of two bool masks (1 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class MapWriter:
    """``fusion.fuse_folders(..., extra=MapWriter(output_dir))``: per pair,
    ``<output_dir>/salient/<stem>.png`` and ``<stem>_overlay.png``."""

    def __init__(self, output_dir):
        self.directory = os.path.join(str(output_dir), SUBDIR)

    def __call__(self, stem, ir, vi, fused):
        """{path: uint8 image} for fuse_folders' writer to save."""
        m = salient_map(fused, vi)
        return {os.path.join(self.directory, stem + ".png"): m,
                os.path.join(self.directory, stem + "_overlay.png"):
                    overlay(m, vi)}



def threshold_level(map_u8, rule="otsu"):
    """``"otsu"`` (per image) or a fixed gray level (int or digit string)."""
    if rule == "otsu":
        return otsu_threshold(map_u8)
    return int(rule)


def agreement(map_u8, mask, rule="otsu"):
    """How well ``map > t`` matches a salient mask (bool): threshold, IoU,
    precision and recall of the thresholded map."""
    t = threshold_level(map_u8, rule)
    pred = np.asarray(map_u8) > t
    mask = np.asarray(mask, bool)
    hit = np.logical_and(pred, mask).sum()
    return {"threshold": t, "iou": iou(pred, mask),
            "precision": float(hit / pred.sum()) if pred.any() else 0.0,
            "recall": float(hit / mask.sum()) if mask.any() else 0.0}
