"""Image reading and writing exactly as the authors' scripts did.

Upstream read every image with ``scipy.misc.imread(path, flatten=True,
mode='YCbCr')`` and saved the float result with ``scipy.misc.imsave``.  Both
functions are gone from SciPy; this module re-states them with Pillow:

* reading: open with Pillow (format sniffed from the content: the released
  ``Test_ir/01.bmp`` is a JPEG stream), convert to ``YCbCr`` unless already
  in it, then to ``F`` -- a float luma ``0.299 R + 0.587 G + 0.114 B`` of the
  YCbCr -> RGB round trip, *not* the rounded Y channel;
* saving: ``imsave`` of a float array min-max stretches it to 0..255
  (``bytescale``), so the authors' result images always span the full
  range, whatever the network produced.  That is the default
  (``save_mode='minmax'``); ``'clip'`` is the plain
  ``clip(round((y + 1) * 127.5))``.
"""

import os
import re

import numpy as np

from .errors import InputError, one_line
from .fileio import atomic_output

IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
SAVE_MODES = ("minmax", "clip")


def open_image(path):
    """Pillow image, fully decoded (format sniffed from the content); any
    problem is a one-line InputError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = str(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        im = Image.open(path)
        im.load()  # decode now: a truncated file fails here, not later
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unknown format, or header "
                         "truncated)")
    except Exception as exc:
        raise InputError(path, f"unreadable image ({one_line(exc)})")
    return im


# Single-channel modes with more than 8 bits (radiometric thermal cameras
# write 16-bit PNG/TIFF; some tools write 32-bit float TIFF).
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_ycbcr(im):
    # scipy.misc.fromimage(im, mode='YCbCr'): convert unless already YCbCr.
    # Pillow has no direct conversion from 16-bit or float modes.
    if im.mode in WIDE_MODES:
        raise InputError(getattr(im, "filename", "image"),
                         f"unsupported image mode {im.mode} (8-bit gray or "
                         "colour expected; 16-bit and float images are "
                         "accepted as infrared only)")
    return im if im.mode == "YCbCr" else im.convert("YCbCr")


def parse_ir_range(spec):
    """--ir_range: 'minmax' -> ('minmax', 0.0); 'percentile:P' ->
    ('percentile', P) with 0 <= P < 50."""
    if spec == "minmax":
        return "minmax", 0.0
    name, _, value = str(spec).partition(":")
    try:
        p = float(value)
    except ValueError:
        p = -1.0
    if name != "percentile" or not 0 <= p < 50:
        raise InputError(None, f"--ir_range {spec!r}: expected minmax or "
                         "percentile:P with 0 <= P < 50 (e.g. percentile:1)")
    return "percentile", p


def wide_to_gray(values, ir_range="minmax"):
    """A 16-bit / float single-channel image -> float32 [H, W] on 0..255.

    ``minmax`` (default): ``(x - min) * 255 / (max - min)`` over the image,
    as a thermal viewer's automatic gain does; ``percentile:P``: the same
    between the P-th and (100 - P)-th percentiles, values outside clipped
    (so a few hot or dead pixels do not flatten the rest).  Computed in
    float64, rounded to float32; a constant image maps to 0.  NaN/inf
    pixels are an error."""
    x = np.array(values, np.float64)  # a copy: worked on in place
    if not np.isfinite(x).all():
        raise InputError(None, "has NaN or infinite pixels")
    mode, p = parse_ir_range(ir_range)
    if mode == "percentile" and p > 0:
        lo, hi = np.percentile(x, [p, 100 - p])
    else:
        lo, hi = x.min(), x.max()
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    x -= lo
    x *= scale
    np.clip(x, 0, 255, out=x)
    return x.astype(np.float32)


def read_gray(path, ir_range=None):
    """Float32 [H, W] array in 0..255, as ``scipy.misc.imread(path,
    flatten=True, mode='YCbCr')`` returned it.

    8-bit gray and colour images take exactly that path.  16-bit and 32-bit
    (integer or float) single-channel images, which upstream could not read,
    are mapped to 0..255 by ``wide_to_gray`` with ``ir_range`` ('minmax' or
    'percentile:P'; given for infrared images only: None refuses them)."""
    im = open_image(path)
    try:
        if im.mode in WIDE_MODES and ir_range is not None:
            return wide_to_gray(np.asarray(im), ir_range)
        return np.asarray(_to_ycbcr(im).convert("F"), dtype=np.float32)
    except InputError as exc:
        raise InputError(path, exc.problem) if exc.path is None else exc
    except Exception as exc:
        raise InputError(path, f"cannot convert image ({one_line(exc)})")


def read_gray_cv2(path):
    """uint8 [H, W] as OpenCV's ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``,
    how UMF-CMGR's upstream scripts read every image.

    * JPEG: libjpeg decodes straight to its luma plane (``JCS_GRAYSCALE``),
      which Pillow's ``draft('L', size)`` asks of the same decoder.  For a
      colour JPEG this is the stored Y plane, not RGB -> gray of the decoded
      colours (those differ by up to 16 levels);
    * other colour images: ``cv2.cvtColor(BGR2GRAY)`` in OpenCV's fixed point,
      ``(4899 R + 9617 G + 1868 B + 8192) >> 14``;
    * 16-bit gray: scaled to 8 bits as OpenCV does without ``ANYDEPTH``
      (``>> 8``).

    The format comes from the content, not the extension (upstream's
    pseudo-infrared images are PNG files named ``.jpg``).
    """
    im = open_image(path)
    try:
        if im.format == "JPEG" and im.mode in ("RGB", "YCbCr", "L"):
            from PIL import Image

            im = Image.open(str(path))
            im.draft("L", im.size)
            im.load()
            if im.mode == "L":
                return np.asarray(im, np.uint8)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return (np.asarray(im, np.uint32) >> 8).astype(np.uint8)
        if im.mode == "L":
            return np.asarray(im, np.uint8)
        if im.mode == "LA":
            return np.asarray(im, np.uint8)[..., 0]
        rgb = np.asarray(im.convert("RGB"), np.uint32)
        gray = (4899 * rgb[..., 0] + 9617 * rgb[..., 1] + 1868 * rgb[..., 2]
                + 8192) >> 14
        return gray.astype(np.uint8)
    except Exception as exc:
        raise InputError(path, f"cannot convert image ({one_line(exc)})")


def read_ycbcr(path):
    """uint8 [H, W, 3] YCbCr planes (Pillow's JPEG-style conversion)."""
    return np.asarray(_to_ycbcr(open_image(path)), dtype=np.uint8)


def image_size(path):
    """(H, W) after a full decode (so unreadable files are found early)."""
    im = open_image(path)
    return im.size[1], im.size[0]


def scale_in(gray, inplace=False):
    """0..255 -> [-1, 1], as upstream's test script: ``x / 127.5 - 1``.
    ``inplace``: reuse ``gray``'s memory when it is a float32 array (same
    float32 arithmetic, no temporaries)."""
    x = np.asarray(gray, np.float32)
    if not (inplace and x is gray and x.flags.writeable):
        x = x / np.float32(127.5)
    else:
        x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x


def bytescale(data):
    """``scipy.misc.bytescale`` with its defaults (cmin/cmax = data min/max).

    Computed in the array's float32, like the original on TF's output.
    """
    data = np.asarray(data)
    if data.dtype == np.uint8:
        return data
    cmin, cmax = data.min(), data.max()
    return _stretch(data - cmin, cmax - cmin)


def _stretch(shifted, cscale):
    """``(x - cmin) * 255 / cscale``, clipped, ``+ 0.5``, truncated, done in
    place on ``shifted`` (one temporary for a huge image, same floats)."""
    if cscale == 0:
        cscale = 1
    shifted *= shifted.dtype.type(255.0) / cscale
    np.clip(shifted, 0, 255, out=shifted)
    shifted += shifted.dtype.type(0.5)
    return shifted.astype(np.uint8)


def to_uint8(fused, save_mode="minmax", value_range=None, inplace=False):
    """Fused [-1, 1] float array -> uint8 image.

    ``minmax`` (default, as released upstream): ``bytescale((y + 1) * 127.5)``.
    ``value_range=(lo, hi)`` supplies the whole image's min/max when ``fused``
    is only a part of it (tiled inference).
    ``clip``: ``clip(round((y + 1) * 127.5), 0, 255)``.
    ``inplace``: ``fused`` (float32) may be overwritten: no float temporary.
    """
    if save_mode not in SAVE_MODES:
        raise InputError(None, f"--save_mode must be one of {SAVE_MODES}, "
                         f"got {save_mode!r}")
    y = np.asarray(fused, np.float32)
    if inplace and y is fused and y.flags.writeable:
        y += np.float32(1.0)
    else:
        y = y + np.float32(1.0)
    y *= np.float32(127.5)  # in place: huge images keep one temporary
    if save_mode == "clip":
        np.rint(y, out=y)
        np.clip(y, 0, 255, out=y)
        return y.astype(np.uint8)
    if value_range is None:
        lo, hi = y.min(), y.max()
    else:
        lo, hi = (np.float32((np.float32(v) + 1) * np.float32(127.5))
                  for v in value_range)
    y -= lo
    return _stretch(y, hi - lo)


def merge_color(fused_y, vi_ycbcr):
    """The paper's colour strategy: fused Y with the visible Cb, Cr -> RGB."""
    from PIL import Image

    planes = [Image.fromarray(fused_y, "L")] + [
        Image.fromarray(np.ascontiguousarray(vi_ycbcr[..., c]), "L")
        for c in (1, 2)]
    return np.asarray(Image.merge("YCbCr", planes).convert("RGB"))


def save_image(array, path):
    """Write uint8 gray/RGB atomically (temporary file, then rename); the
    format follows the extension."""
    import imageio.v3 as iio

    ext = os.path.splitext(str(path))[1].lower()
    with atomic_output(path, suffix=ext) as tmp:
        iio.imwrite(tmp, np.asarray(array, np.uint8), extension=ext)
    return path


def natural_key(name):
    """'2.bmp' < '10.bmp' (upstream sorted by the integer in the name)."""
    return [int(t) if t.isdigit() else t.lower()
            for t in re.split(r"(\d+)", name)]


def list_images(directory):
    """Image files (by extension) in a folder, in natural order.

    Hidden files and files with other extensions are not images and are
    ignored; an image-named file that does not decode is an error later.
    """
    directory = str(directory)
    if not os.path.isdir(directory):
        raise InputError(directory, "no such folder")
    names = [n for n in os.listdir(directory)
             if not n.startswith(".")
             and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(directory, n))]
    if not names:
        raise InputError(directory, "no images in this folder ("
                         + ", ".join(IMAGE_EXTENSIONS) + ")")
    return sorted(names, key=natural_key)


def by_stem(directory):
    """{file stem: file name}; two files with one stem are ambiguous."""
    out = {}
    for name in list_images(directory):
        stem = os.path.splitext(name)[0]
        if stem in out:
            raise InputError(os.path.join(str(directory), name),
                             f"two images with the stem '{stem}' "
                             f"({out[stem]}, {name})")
        out[stem] = name
    return out


def pair_folders(*directories, allow_missing=False):
    """Match images across folders by file stem.

    Returns ``(stems, [[path per folder] per stem], skipped)``.  A stem
    missing from some folder is an error naming it, unless
    ``allow_missing`` (then it is skipped and reported in ``skipped``).
    """
    tables = [by_stem(d) for d in directories]
    all_stems = set().union(*tables)
    common = [s for s in all_stems if all(s in t for t in tables)]
    skipped = sorted(all_stems - set(common), key=natural_key)
    if skipped and not allow_missing:
        stem = skipped[0]
        have = next(i for i, t in enumerate(tables) if stem in t)
        lacks = next(i for i, t in enumerate(tables) if stem not in t)
        raise InputError(
            os.path.join(str(directories[have]), tables[have][stem]),
            f"unpaired: no image named '{stem}.*' in {directories[lacks]}"
            + (f" ({len(skipped)} unpaired names in all)"
               if len(skipped) > 1 else ""))
    if not common:
        raise InputError(directories[0], "no image pairs (no common names)")
    common.sort(key=natural_key)
    paths = [[os.path.join(str(d), t[s]) for d, t in zip(directories, tables)]
             for s in common]
    return common, paths, skipped
