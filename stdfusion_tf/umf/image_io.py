"""UMF-CMGR's image files, read and written as upstream's scripts did.

* reading: ``cv2.imread(path, IMREAD_GRAYSCALE)`` semantics
  (``images.read_gray_cv2``), then ``u8 / 255.`` in float64, cast to float32
  (not ``u8 * (1 / 255)``, which rounds differently);
* saving: ``x * 255`` handed to ``cv2.imwrite``, i.e. OpenCV's
  ``saturate_cast<uchar>``: round half to even, clipped to 0..255.  PNG
  (lossless) by default; ``jpg`` writes JPEG quality 95 (cv2's default), as
  the released ``ir_reg`` / ``fused`` folders were;
* flows as float32 ``[2, H, W]`` ``.npy`` (channel 0 = rows/dy, channel 1 =
  cols/dx, pixels).

Folders of pairs are matched by file stem and every image decoded (sizes
checked) before anything is written.
"""

import os

import numpy as np

from .. import images
from ..errors import InputError
from ..fileio import atomic_output

SAVE_FORMATS = ("png", "jpg")
JPEG_QUALITY = 95  # cv2.imwrite's default, as upstream saved


# ------------------------------------------------------------- reading --
def read_unit(path):
    """[H, W] float32 in [0, 1] as upstream: ``cv2.imread(..., GRAYSCALE) /
    255.`` (float64), then float32."""
    return (images.read_gray_cv2(path) / 255.0).astype(np.float32)


def read_rgb_unit(path):
    """[H, W, 3] float32 in [0, 1]: CycleGAN's ``Image.open(path).convert(
    'RGB')`` then ``ToTensor`` (CPSTN's input before its [-1, 1] mapping)."""
    im = images.open_image(path)
    try:
        rgb = np.asarray(im.convert("RGB"), np.float32)
    except Exception as exc:  # pragma: no cover - Pillow conversion errors
        raise InputError(path, f"cannot convert image to RGB ({exc})")
    return rgb / np.float32(255.0)


def read_rgb_u8(path):
    """uint8 RGB as ``cv2.imread(path, IMREAD_COLOR)`` (in RGB order): gray
    images are repeated into three planes."""
    im = images.open_image(path)
    try:
        return np.asarray(im.convert("RGB"), np.uint8)
    except Exception as exc:
        raise InputError(path, f"cannot convert image to RGB ({exc})")


# -------------------------------------------------------------- saving --
def to_uint8(x):
    """``cv2.imwrite(path, x * 255.)`` of a float32 image in [0, 1]:
    saturate_cast -> round half to even, clip."""
    y = np.asarray(x, np.float32) * np.float32(255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def check_save_format(save_format):
    if save_format not in SAVE_FORMATS:
        raise InputError(None, "--save_format must be png or jpg")


def save_u8(array, path, save_format="png"):
    """Write uint8 gray/RGB atomically: PNG, or JPEG quality 95 (4:2:0 for
    colour, as OpenCV's default)."""
    from PIL import Image

    suffix = "." + save_format
    with atomic_output(path, suffix=suffix) as tmp:
        im = Image.fromarray(np.ascontiguousarray(array))
        if save_format == "jpg":
            im.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        else:
            im.save(tmp, format="PNG")
    return path


def save_npy(array, path):
    with atomic_output(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array, np.float32))
    return path


# --------------------------------------------------------------- pairs --
def check_sizes(paths, what):
    """Decode every image of each tuple once; sizes must agree (one line
    naming the file otherwise)."""
    for group in paths:
        sizes = [images.image_size(p) for p in group]
        for p, s in zip(group[1:], sizes[1:]):
            if s != sizes[0]:
                raise InputError(p, "size mismatch: {}x{} (H x W) but {} is "
                                 "{}x{} ({})".format(*s, group[0], *sizes[0],
                                                     what))


def pair(*directories, what="pair", registration=None):
    """(stems, [[path per folder]]) matched by stem, all decoded and size
    checked before anything is written.  ``registration`` (a method of
    ``registering.METHODS``): the infrared image (first folder) will be
    registered onto the visible one (second), so their sizes may differ;
    every image is checked to be registrable instead."""
    stems, paths, _ = images.pair_folders(*directories)
    if registration is None:
        check_sizes(paths, what)
        return stems, paths
    from .. import registering

    registering.check_method(registration)
    for group in paths:
        for p in group:
            registering.check_image(p)
    check_sizes([group[1:] for group in paths], what)
    return stems, paths


# ----------------------------------------------------------- output dir --
def check_output_dir(path):
    """The output folder must be a folder (or not exist yet)."""
    path = str(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(path, "output folder is an existing file")
    for sub in ("flow", "flow_rgb", "transform"):
        p = os.path.join(path, sub)
        if os.path.exists(p) and not os.path.isdir(p):
            raise InputError(p, "output folder is an existing file")
