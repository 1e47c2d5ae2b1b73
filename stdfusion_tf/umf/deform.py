"""Seeded misaligned benchmarks: UMF-CMGR's deformation of infrared images.

Upstream (``data/get_test_data.py``) made its deformed infrared images
(RoadScene ``ir_warp``) with unseeded PyTorch randomness, in two resamplings:

1. ``kornia.augmentation.RandomAffine(degrees=0, translate=(0.01, 0.01))``:
   a translation ``t = (t_x, t_y)``, ``t_x ~ U(-0.01 W, 0.01 W)`` and
   ``t_y ~ U(-0.01 H, 0.01 H)`` pixels, content moved right/down by ``t``:
   ``A(p) = I(p - t)``, bilinear, zero outside the image (kornia 0.9's
   ``warp_affine``; checked against kornia to 4e-7).
2. ``functions/elastic_transform.py`` ``ElasticTransform(101, 16)``: noise
   ``U(-1, 1)`` per pixel and per axis (channel 0 = x, channel 1 = y), each
   blurred by kornia's normalised 101 x 101 Gaussian (sigma 16, zero border),
   used *as a displacement in normalised coordinates* (no ``alpha`` upstream:
   ``alpha`` here scales it, 1 by default), added to kornia's
   ``create_meshgrid`` (``linspace(-1, 1, W)``), clamped to [-1, 1] and
   sampled by ``grid_sample(bilinear, zeros, align_corners=False)``.

As released upstream the identity grid of step 2 does not match its sampling
convention: ``linspace(-1, 1)`` read with ``align_corners=False`` puts column
``j`` at ``j W/(W-1) - 1/2``, a zoom by ``W/(W-1)`` about the centre (half
a pixel at the borders, where the zero padding can darken the first and
last rows and columns by up to half).  That is kept (it is part of what
the released benchmark is), and it is part of the written displacement.

Written displacement ``d`` (float32 [2, H, W], channel 0 = rows/dy,
channel 1 = columns/dx, pixels): the exact composed sampling position of the
two steps, so that::

    deformed(p) = original(p + d(p))

for every pixel ``p = (row, col)``: the deformed image at ``p`` shows the
original image's content at ``p + d(p)`` (backward warping, the convention
of ``grid_sample``), bilinear, zero outside the original.  The image is
computed as upstream does, in two bilinear resamplings, so it equals one
bilinear resampling of the original at ``p + d(p)`` up to the smoothing of
the second interpolation (on RoadScene about 1-2 gray levels on average,
tens at sharp edges); ``resample='once'`` makes that one resampling, exact.

Registration (MRRN) writes a flow with the same convention,
``registered(p) = warped(p + flow(p))``.  The flow that exactly undoes the
deformation is therefore not ``-d(p)`` but the ``f`` with
``original(p) = deformed(p + f(p))``, i.e. ``p + f(p) + d(p + f(p)) = p``:
``f(p) = -d(p + f(p))``, computed by :func:`invert_displacement` (a
fixed-point iteration; for these smooth, small fields it converges to 1e-6
px in a few steps inside the image, slower at the clamped borders).
End-point errors compare the estimated flow with that ``f``.

Randomness is a NumPy ``Generator`` seeded per image from ``(seed, file
stem)``, so an image's deformation does not depend on which other images are
in the folder.  Float64 NumPy/SciPy (data preparation, not a network).
"""

import hashlib
import json
import os

import numpy as np
from scipy import ndimage

from .. import images
from ..errors import InputError
from ..fileio import atomic_output

KERNEL_SIZE = 101
SIGMA = 16.0
TRANSLATE = 0.01
ALPHA = 1.0
PADDINGS = ("zeros", "border")


def generator(seed, stem=""):
    """NumPy Generator for one image, from the user's seed and the file
    stem (sha256 of the stem's UTF-8, as eight 32-bit words)."""
    digest = hashlib.sha256(str(stem).encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence([int(seed)] + words)))


def draw(rng, shape, translate=TRANSLATE):
    """The random numbers of one deformation, in upstream's order:
    translation ``(t_y, t_x)`` in pixels (kornia draws x then y, uniform in
    ``±translate`` of the width / height), then the noise float32
    [2, H, W] in [-1, 1) (channel 0 = x, channel 1 = y, as upstream's
    ``torch.rand(...) * 2 - 1``)."""
    h, w = shape
    t_x = rng.uniform(-translate, translate) * w
    t_y = rng.uniform(-translate, translate) * h
    noise = rng.random((2, h, w), dtype=np.float32) * 2 - 1
    return (t_y, t_x), noise


def gaussian_kernel1d(size=KERNEL_SIZE, sigma=SIGMA):
    """kornia's ``get_gaussian_kernel1d`` (odd size): ``exp(-n^2 / 2
    sigma^2)`` at integer offsets from the centre, normalised to sum 1."""
    if size < 1 or size % 2 != 1:
        raise ValueError(f"an odd kernel size is expected, got {size}")
    n = np.arange(size, dtype=np.float64) - size // 2
    k = np.exp(-n * n / (2.0 * sigma * sigma))
    return k / k.sum()


def elastic_field(noise, kernel_size=KERNEL_SIZE, sigma=SIGMA, alpha=ALPHA):
    """Blurred noise as upstream's displacement in normalised coordinates,
    [2, H, W] (channel 0 = x, channel 1 = y): kornia ``filter2d`` with the
    separable Gaussian and a zero border (any image size: windows larger
    than the image see zeros), times ``alpha``."""
    k = gaussian_kernel1d(kernel_size, sigma)
    out = np.empty(np.shape(noise), np.float64)
    for c in range(2):
        x = np.asarray(noise[c], np.float64)
        x = ndimage.correlate1d(x, k, axis=0, mode="constant", cval=0.0)
        out[c] = ndimage.correlate1d(x, k, axis=1, mode="constant", cval=0.0)
    return out * alpha


def _elastic_positions(elastic):
    """Pixel positions (rows, cols) sampled by upstream's elastic step:
    ``clamp(linspace(-1, 1) + e, -1, 1)`` read with ``align_corners=False``
    (pixel ``((X + 1) W - 1) / 2``)."""
    _, h, w = elastic.shape
    lin_x = np.linspace(-1.0, 1.0, w)[None, :]
    lin_y = np.linspace(-1.0, 1.0, h)[:, None]
    gx = np.clip(lin_x + elastic[0], -1.0, 1.0)
    gy = np.clip(lin_y + elastic[1], -1.0, 1.0)
    return ((gy + 1.0) * h - 1.0) / 2.0, ((gx + 1.0) * w - 1.0) / 2.0


def displacement(translation, elastic):
    """The composed displacement d [2, H, W] float64 (rows/dy, cols/dx,
    pixels): ``deformed(p) = original(p + d(p))``."""
    t_y, t_x = translation
    _, h, w = elastic.shape
    rows, cols = _elastic_positions(elastic)
    ii, jj = np.mgrid[0:h, 0:w]
    return np.stack([rows - t_y - ii, cols - t_x - jj])


def sample(image, rows, cols, padding="zeros"):
    """Bilinear sample of a 2-D image at pixel positions (``grid_sample``
    on pixel coordinates): ``zeros`` reads zero outside the image (and
    interpolates towards it), ``border`` clamps the position to the image."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    mode = "grid-constant" if padding == "zeros" else "nearest"
    return ndimage.map_coordinates(np.asarray(image, np.float64),
                                   [rows, cols], order=1, mode=mode, cval=0.0,
                                   prefilter=False)


def deform_image(image, translation, elastic, padding="zeros"):
    """Upstream's two resamplings of a float image [H, W]: the translation
    (kornia ``warp_affine``), then the elastic grid.  Returns float64."""
    t_y, t_x = translation
    h, w = np.shape(image)
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    moved = sample(image, ii - t_y, jj - t_x, padding)
    rows, cols = _elastic_positions(elastic)
    return sample(moved, rows, cols, padding)


def to_uint8(x):
    """``x * 255`` rounded half to even and clipped (OpenCV's conversion
    of upstream's saved floats)."""
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0,
                   255).astype(np.uint8)


RESAMPLINGS = ("twice", "once")


def make_misaligned(u8, rng, translate=TRANSLATE, alpha=ALPHA,
                    kernel_size=KERNEL_SIZE, sigma=SIGMA, padding="zeros",
                    resample="twice"):
    """One deformed image: (uint8 [H, W], displacement float32 [2, H, W],
    translation (t_y, t_x) pixels).

    ``u8`` is read as upstream reads it (``u8 / 255`` in float32).
    ``resample='twice'`` (default) resamples as upstream (translation, then
    elastic: a little extra interpolation blur); ``'once'`` samples the
    original once at ``p + d(p)``, so that the image and the displacement
    agree exactly (same random numbers, same ``d``)."""
    if resample not in RESAMPLINGS:
        raise ValueError(f"resample must be one of {RESAMPLINGS}, got "
                         f"{resample!r}")
    u8 = np.asarray(u8, np.uint8)
    if u8.ndim != 2:
        raise ValueError(f"a 2-D gray image is expected, got {u8.shape}")
    image = (u8 / 255.0).astype(np.float32)
    translation, noise = draw(rng, u8.shape, translate)
    elastic = elastic_field(noise, kernel_size, sigma, alpha)
    d = displacement(translation, elastic)
    if resample == "twice":
        deformed = deform_image(image, translation, elastic, padding)
    else:
        h, w = u8.shape
        ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
        deformed = sample(image, ii + d[0], jj + d[1], padding)
    return to_uint8(deformed), d.astype(np.float32), translation


def invert_displacement(d, iterations=100, tol=1e-6):
    """The field ``f`` that undoes ``d``: ``f(p) = -d(p + f(p))``, so that
    ``deformed(p + f(p)) = original(p)`` -- the flow a perfect registration
    (``registered(p) = deformed(p + f(p))``) would estimate.

    Fixed-point iteration from ``f = -d``, ``d`` read bilinearly (clamped
    at the border); a pixel stops when its step is at most ``tol`` px
    (later steps only revisit the pixels still moving).  It converges
    where ``d`` is a contraction (|grad d| < 1): the smooth fields made here
    have |grad d| of a few hundredths inside the image (a few steps); near
    the border, where upstream's clamp flattens the sampling grid (slope
    near -1), convergence is slow and the inverse is ill-defined where the
    clamp maps several pixels to one position.  Returns float32."""
    d = np.asarray(d, np.float64)
    _, h, w = d.shape
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    f = -d
    rows, cols = ii.ravel(), jj.ravel()  # the pixels still moving
    fy, fx = f[0].ravel(), f[1].ravel()
    index = np.arange(h * w)
    out_y, out_x = fy.copy(), fx.copy()
    for _ in range(iterations):
        at = [rows + fy, cols + fx]
        ny = -ndimage.map_coordinates(d[0], at, order=1, mode="nearest",
                                      prefilter=False)
        nx = -ndimage.map_coordinates(d[1], at, order=1, mode="nearest",
                                      prefilter=False)
        moving = np.maximum(np.abs(ny - fy), np.abs(nx - fx)) > tol
        out_y[index], out_x[index] = ny, nx
        if not moving.any():
            break
        rows, cols, index = rows[moving], cols[moving], index[moving]
        fy, fx = ny[moving], nx[moving]
    return np.stack([out_y.reshape(h, w), out_x.reshape(h, w)]).astype(
        np.float32)


# ------------------------------------------------------------- folders --

def _check_settings(seed, translate, alpha, kernel_size, sigma, padding,
                    resample):
    problems = []
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"--seed must be an integer >= 0, got {seed}")
    if not 0 <= translate < 1:
        problems.append(f"--translate must be in [0, 1), got {translate}")
    if not (np.isfinite(alpha) and alpha >= 0):
        problems.append(f"--alpha must be >= 0, got {alpha}")
    if kernel_size < 1 or kernel_size % 2 != 1:
        problems.append(f"--kernel_size must be odd and positive, got "
                        f"{kernel_size}")
    if not (np.isfinite(sigma) and sigma > 0):
        problems.append(f"--sigma must be > 0, got {sigma}")
    if padding not in PADDINGS:
        problems.append(f"--padding must be one of {PADDINGS}")
    if resample not in RESAMPLINGS:
        problems.append(f"--resample must be one of {RESAMPLINGS}")
    if problems:
        raise InputError(None, problems[0])


def make_folder(ir_dir, output_dir, seed, translate=TRANSLATE, alpha=ALPHA,
                kernel_size=KERNEL_SIZE, sigma=SIGMA, padding="zeros",
                resample="twice"):
    """Deform every image of ``ir_dir`` (read with cv2 IMREAD_GRAYSCALE
    semantics) into ``output_dir``: ``<stem>.png`` (8-bit, lossless),
    ``flow/<stem>.npy`` (the displacement ``d``) and ``misaligned.json``.

    Every input is decoded (and the settings checked) before anything is
    written; each file is written atomically.  Returns the stems."""
    _check_settings(seed, translate, alpha, kernel_size, sigma, padding,
                    resample)
    table = images.by_stem(ir_dir)
    if os.path.realpath(str(output_dir)) == os.path.realpath(str(ir_dir)):
        raise InputError(output_dir, "the output folder is the input folder "
                         "(its images would be overwritten)")
    stems = list(table)
    for stem in stems:  # decode everything first: bad input writes nothing
        images.read_gray_cv2(os.path.join(str(ir_dir), table[stem]))
    record = {"seed": int(seed), "translate": translate, "alpha": alpha,
              "kernel_size": kernel_size, "sigma": sigma,
              "padding": padding, "resample": resample,
              "flow": "float32 [2, H, W]: rows/dy, cols/dx, pixels; "
                      "deformed(p) = original(p + d(p))",
              "translation": "pixels the content moved (rows down, cols "
                             "right) before the elastic step",
              "images": {}}
    for stem in stems:
        source = os.path.join(str(ir_dir), table[stem])
        u8 = images.read_gray_cv2(source)
        rng = generator(seed, stem)
        deformed, d, (t_y, t_x) = make_misaligned(
            u8, rng, translate, alpha, kernel_size, sigma, padding, resample)
        images.save_image(deformed, os.path.join(str(output_dir),
                                                 stem + ".png"))
        with atomic_output(os.path.join(str(output_dir), "flow",
                                        stem + ".npy"), suffix=".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, d)
        record["images"][stem] = {"source": table[stem],
                                  "translation": {"rows": t_y,
                                                  "cols": t_x}}
    with atomic_output(os.path.join(str(output_dir), "misaligned.json"),
                       suffix=".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
    return stems


# -------------------------------------------------------------- levels --
#
# Named benchmark levels for registration (``make_misaligned --level``): an
# affine part (rotation about the image centre, isotropic scale, translation)
# and an elastic part.  The elastic field has upstream's shape whatever the
# image size: upstream's noise blur (sigma 16 px, 101-tap window) is drawn on
# a 256 x 256 grid -- the size of upstream's benchmark -- and resized to the
# image, so its smoothness is the same fraction of the frame at any size.
# ``easy`` is upstream's deformation (translation 1 %, the elastic field in
# upstream's normalised units, alpha 1); the others rescale the elastic field
# to a given mean displacement in pixels.  Translations are given at 640 px
# width and scale with the image width (``easy``/``extreme``: a fraction of
# the width / height).
#
# The image is ``deformed(q) = original(A(q + e(q)))`` (one bilinear
# resampling, zeros outside), so ``d(q) = A(q + e(q)) - q`` in the
# ``deformed(p) = original(p + d(p))`` convention above, and the flow that
# registers it back, ``registered(p) = deformed(p + f(p)) = original(p)``, is
# ``p + f(p) = E^-1(A^-1(p))``: the affine inverse is exact and the elastic
# inverse a fixed-point iteration on a field of small gradient.

LEVELS = {
    # rotation deg (+-), scale range, translation (px at 640 width or
    # fraction), elastic: "upstream" or mean px
    "easy": dict(rotation=0.0, scale=(1.0, 1.0), translate_frac=0.01,
                 elastic="upstream"),
    "normal": dict(rotation=3.0, scale=(0.98, 1.02), translate_px=7.0,
                   elastic=1.0),
    "hard": dict(rotation=7.0, scale=(0.95, 1.05), translate_px=14.0,
                 elastic=1.5),
    "extreme": dict(rotation=15.0, scale=(0.7, 1.4), translate_frac=0.10,
                    elastic=1.5),
}
ELASTIC_GRID = 256


def level_parameters(rng, shape, level):
    """The random draws of one image at ``level``: (angle degrees, scale,
    (t_y, t_x) pixels, elastic [2, H, W] pixels rows/cols)."""
    spec = LEVELS[level]
    h, w = shape
    angle = rng.uniform(-spec["rotation"], spec["rotation"])
    lo, hi = spec["scale"]
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if "translate_px" in spec:
        t = spec["translate_px"] * w / 640.0
        t_y, t_x = rng.uniform(-t, t), rng.uniform(-t, t)
    else:
        f = spec["translate_frac"]
        t_y, t_x = rng.uniform(-f, f) * h, rng.uniform(-f, f) * w
    g = ELASTIC_GRID
    noise = rng.random((2, g, g), dtype=np.float32) * 2 - 1
    small = elastic_field(noise)           # normalised units, [x, y]
    # resize the 256 x 256 field to the image (bilinear, pixel areas)
    zy, zx = h / g, w / g
    rows = (np.arange(h) + 0.5) / zy - 0.5
    cols = (np.arange(w) + 0.5) / zx - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    ex = ndimage.map_coordinates(small[0], [rr, cc], order=1, mode="nearest")
    ey = ndimage.map_coordinates(small[1], [rr, cc], order=1, mode="nearest")
    # normalised -> pixels (upstream: a unit is half the size)
    e = np.stack([ey * h / 2.0, ex * w / 2.0])
    if spec["elastic"] != "upstream":
        e *= spec["elastic"] / np.mean(np.hypot(e[0], e[1]))
    return angle, scale, (t_y, t_x), e


def _affine(shape, angle, scale, translation):
    """2x3 (row, col) affine A: ``A(x) = c + s R (x - c) + t`` about the
    image centre ``c`` (rows down, columns right)."""
    h, w = shape
    a = np.deg2rad(angle)
    r = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    c = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    return r, c + np.asarray(translation, np.float64) - r @ c


def level_fields(shape, angle, scale, translation, elastic, iterations=50):
    """(d, f) float64 [2, H, W]: ``deformed(p) = original(p + d(p))`` and
    ``registered(p) = deformed(p + f(p))`` recovers the original."""
    h, w = shape
    r, t = _affine(shape, angle, scale, translation)
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    qy, qx = ii + elastic[0], jj + elastic[1]
    d = np.stack([r[0, 0] * qy + r[0, 1] * qx + t[0] - ii,
                  r[1, 0] * qy + r[1, 1] * qx + t[1] - jj])
    # A^-1(p)
    ri = np.linalg.inv(r)
    yy, xx = ii - t[0], jj - t[1]
    ay = ri[0, 0] * yy + ri[0, 1] * xx
    ax = ri[1, 0] * yy + ri[1, 1] * xx
    # E^-1(y): x + e(x) = y, x = y - e(x)
    x_y, x_x = ay - elastic[0], ax - elastic[1]
    for _ in range(iterations):
        ny = ay - ndimage.map_coordinates(elastic[0], [x_y, x_x], order=1,
                                          mode="nearest")
        nx = ax - ndimage.map_coordinates(elastic[1], [x_y, x_x], order=1,
                                          mode="nearest")
        step = max(np.abs(ny - x_y).max(), np.abs(nx - x_x).max())
        x_y, x_x = ny, nx
        if step < 1e-6:
            break
    f = np.stack([x_y - ii, x_x - jj])
    return d, f


def make_level(u8, rng, level):
    """One image at a named level: (uint8 deformed [H, W], d float32
    [2, H, W], f float32 [2, H, W], parameters dict)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {tuple(LEVELS)}, got "
                         f"{level!r}")
    u8 = np.asarray(u8, np.uint8)
    if u8.ndim != 2:
        raise ValueError(f"a 2-D gray image is expected, got {u8.shape}")
    angle, scale, translation, elastic = level_parameters(rng, u8.shape,
                                                          level)
    d, f = level_fields(u8.shape, angle, scale, translation, elastic)
    h, w = u8.shape
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    image = (u8 / 255.0).astype(np.float32)
    deformed = sample(image, ii + d[0], jj + d[1], "zeros")
    params = {"rotation_deg": float(angle), "scale": float(scale),
              "translation": {"rows": float(translation[0]),
                              "cols": float(translation[1])},
              "elastic_mean_px": float(np.mean(np.hypot(elastic[0],
                                                        elastic[1])))}
    return (to_uint8(deformed), d.astype(np.float32), f.astype(np.float32),
            params)


def valid_mask(f):
    """Pixels ``p`` whose registered position ``p + f(p)`` lies inside the
    deformed image (where a registration can be scored)."""
    _, h, w = f.shape
    ii, jj = np.mgrid[0:h, 0:w]
    y, x = ii + f[0], jj + f[1]
    return (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)


def make_level_folder(ir_dir, output_dir, seed, level):
    """Deform every image of ``ir_dir`` at ``level`` into ``output_dir``:
    ``<stem>.png``, ``flow/<stem>.npy`` (d, as :func:`make_folder`),
    ``undo/<stem>.npy`` (f, the registration ground truth) and
    ``misaligned.json``.  Returns the stems."""
    if level not in LEVELS:
        raise InputError(None, f"--level must be one of {', '.join(LEVELS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(None, f"--seed must be an integer >= 0, got {seed}")
    table = images.by_stem(ir_dir)
    if os.path.realpath(str(output_dir)) == os.path.realpath(str(ir_dir)):
        raise InputError(output_dir, "the output folder is the input folder "
                         "(its images would be overwritten)")
    stems = list(table)
    for stem in stems:
        images.read_gray_cv2(os.path.join(str(ir_dir), table[stem]))
    record = {"seed": int(seed), "level": level, "settings": LEVELS[level],
              "flow": "float32 [2, H, W]: rows/dy, cols/dx, pixels; "
                      "deformed(p) = original(p + d(p))",
              "undo": "float32 [2, H, W]: registered(p) = deformed(p + "
                      "f(p)) recovers the original",
              "images": {}}
    for stem in stems:
        u8 = images.read_gray_cv2(os.path.join(str(ir_dir), table[stem]))
        deformed, d, f, params = make_level(u8, generator(seed, stem), level)
        images.save_image(deformed, os.path.join(str(output_dir),
                                                 stem + ".png"))
        for sub, arr in (("flow", d), ("undo", f)):
            with atomic_output(os.path.join(str(output_dir), sub,
                                            stem + ".npy"),
                               suffix=".npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
        record["images"][stem] = dict(source=table[stem], **params)
    with atomic_output(os.path.join(str(output_dir), "misaligned.json"),
                       suffix=".json") as tmp:
        with open(tmp, "w") as fh:
            json.dump(record, fh, indent=1)
    return stems
