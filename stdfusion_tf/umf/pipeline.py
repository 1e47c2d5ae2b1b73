"""Folders of misaligned pairs -> registered infrared, flows, fused images.

What upstream's ``Test/test_reg.py``, ``test_fuse.py``, ``test_reg_fusion.py``
and ``data/fuse_Ycbcr_rgb.py`` do, on folders of any image size, reusing the
STDFusionNet wing's pairing, atomic writes and error handling:

* reading as upstream: ``cv2.imread(path, IMREAD_GRAYSCALE)`` semantics
  (``images.read_gray_cv2``), then ``u8 / 255.`` in float64, cast to float32
  (not ``u8 * (1 / 255)``, which rounds differently);
* saving as upstream: ``x * 255`` handed to ``cv2.imwrite``, i.e. OpenCV's
  ``saturate_cast<uchar>``: round half to even, clipped to 0..255.  PNG
  (lossless) by default; ``jpg`` writes JPEG quality 95 (cv2's default), as
  the released ``ir_reg`` / ``fused`` folders were;
* flows as float32 ``[2, H, W]`` ``.npy`` (channel 0 = rows/dy, channel 1 =
  cols/dx, pixels; ``registered(p) = warped(p + flow(p))``) and upstream's
  flow picture (``flow2rgb``: ``1 + f/max|f|`` style colour coding, written
  as cv2 writes its BGR array).
"""

import os
import time

import numpy as np

from .. import images
from ..errors import InputError
from ..fileio import atomic_output

SAVE_FORMATS = ("png", "jpg")
TARGETS = ("pseudo_ir", "visible")
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


# -------------------------------------------------------------- saving --
def to_uint8(x):
    """``cv2.imwrite(path, x * 255.)`` of a float32 image in [0, 1]:
    saturate_cast -> round half to even, clip."""
    y = np.asarray(x, np.float32) * np.float32(255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


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


def flow_to_rgb(flow):
    """Upstream's ``flow2rgb(flow, max_value=None)`` picture, as the RGB
    image that ``cv2.imwrite`` of its array shows: ``[2, H, W]`` flow ->
    uint8 [H, W, 3].

    Upstream builds planes (1 + fy, 1 - (fy + fx)/2, 1 + fx) of the flow
    normalised by its largest magnitude, clips to [0, 1], scales by 255 and
    truncates (``astype(uint8)``); cv2 writes plane 0 as blue, so the picture
    is those planes in reverse order."""
    flow = np.asarray(flow, np.float32)
    peak = np.abs(flow).max()
    norm = flow / peak if peak > 0 else flow  # upstream divides by 0 -> nan
    planes = np.ones((3,) + flow.shape[1:], np.float32)
    planes[0] += norm[0]
    planes[1] -= 0.5 * (norm[0] + norm[1])
    planes[2] += norm[1]
    planes = (planes.clip(0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(planes[::-1].transpose(1, 2, 0))


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


def registered(ir_path, vi_path, method, report=None):
    """The weight-free registration (``stdfusion_tf.registration``) of one
    pair read as upstream reads it (``read_unit``): the result, whose
    ``warped`` is the infrared image in the visible frame; a pair that falls
    back is named on ``report`` (default stderr)."""
    from .. import registering

    return registering.register(read_unit(ir_path), read_unit(vi_path),
                                method, name=ir_path, report=report)


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


class Outputs:
    """Tracks what a run writes, so that a failure half-way removes exactly
    those files (earlier outputs of other runs stay)."""

    def __init__(self, output_dir):
        self.output_dir = str(output_dir)
        self.created = not os.path.isdir(self.output_dir)
        self.written = []

    def path(self, *parts):
        return os.path.join(self.output_dir, *parts)

    def add(self, path):
        self.written.append(path)
        return path

    def rollback(self):
        for path in self.written:
            if os.path.exists(path):
                os.remove(path)
        for sub in ("flow", "flow_rgb", "transform", ""):
            d = os.path.join(self.output_dir, sub)
            if (self.created and os.path.isdir(d) and not os.listdir(d)):
                os.rmdir(d)


def run_pairs(paths, work, outputs, verbose=1, unit="pair"):
    """Run ``work(i, paths[i])`` -> seconds for every pair with a progress
    bar; roll back this run's files on any failure."""
    import keras

    bar = keras.utils.Progbar(len(paths), verbose=verbose, unit_name=unit,
                              stateful_metrics=["seconds"])
    timings = []
    try:
        for i, p in enumerate(paths):
            seconds = work(i, p)
            timings.append(seconds)
            bar.update(i + 1, values=[("seconds", seconds)])
    except BaseException:
        outputs.rollback()
        raise
    return timings


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# --------------------------------------------------------------- colour --
# OpenCV's 8-bit YCrCb conversions (fixed point, 14 fractional bits), which
# upstream's ``data/fuse_Ycbcr_rgb.py`` uses to put the visible image's
# chroma back on the fused luma.
_SHIFT = 14
_HALF = 1 << (_SHIFT - 1)


def _descale(x):
    return (x + _HALF) >> _SHIFT


def rgb_to_ycrcb(rgb):
    """uint8 RGB [H, W, 3] -> uint8 (Y, Cr, Cb) [H, W, 3] as
    ``cv2.cvtColor(bgr, COLOR_BGR2YCrCb)``."""
    r, g, b = (np.asarray(rgb, np.int64)[..., i] for i in range(3))
    y = _descale(r * 4899 + g * 9617 + b * 1868)
    delta = 128 << _SHIFT
    cr = _descale((r - y) * 11682 + delta)
    cb = _descale((b - y) * 9241 + delta)
    return np.clip(np.stack([y, cr, cb], -1), 0, 255).astype(np.uint8)


def ycrcb_to_rgb(ycrcb):
    """uint8 (Y, Cr, Cb) -> uint8 RGB as ``cv2.cvtColor(.., COLOR_YCrCb2BGR)``
    (returned in RGB order)."""
    y, cr, cb = (np.asarray(ycrcb, np.int64)[..., i] for i in range(3))
    cr, cb = cr - 128, cb - 128
    r = y + _descale(cr * 22987)
    g = y + _descale(cb * -5636 + cr * -11698)
    b = y + _descale(cb * 29049)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def read_rgb_u8(path):
    """uint8 RGB as ``cv2.imread(path, IMREAD_COLOR)`` (in RGB order): gray
    images are repeated into three planes."""
    im = images.open_image(path)
    try:
        return np.asarray(im.convert("RGB"), np.uint8)
    except Exception as exc:
        raise InputError(path, f"cannot convert image to RGB ({exc})")


def merge_color(fused_u8, vi_path):
    """Upstream's ``fuse_Ycbcr_rgb.py``: the fused gray image as Y, the
    visible image's Cr/Cb (OpenCV YCrCb) kept, back to RGB."""
    ycrcb = rgb_to_ycrcb(read_rgb_u8(vi_path))
    ycrcb[..., 0] = fused_u8
    return ycrcb_to_rgb(ycrcb)


# ------------------------------------------------------------- networks --
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


class DIFNFuser:
    """DIFN on [H, W] float32 (ir, vi) in [0, 1] -> fused [H, W] float32
    (tanh output; saved with ``to_uint8``)."""

    def __init__(self, difn):
        self.difn = difn
        self._fn = _traced(lambda ir, vi: difn((ir, vi), training=False),
                           (1, 1))

    def __call__(self, ir, vi):
        return self._fn(np.asarray(ir, np.float32)[None, ..., None],
                        np.asarray(vi, np.float32)[None, ..., None]
                        ).numpy()[0, :, :, 0]


# -------------------------------------------------------------- folders --
def target_source(target_dir=None, vi_dir=None, cpstn=False,
                  target="pseudo_ir"):
    """Which folder gives the registration target, checked up front:
    a pseudo-infrared folder, or CPSTN on the visible folder, or (the
    documented fallback) the visible image itself."""
    if target not in TARGETS:
        raise InputError(None, f"--target must be one of {', '.join(TARGETS)}")
    if target == "visible":
        if not vi_dir:
            raise InputError(None, "--target visible needs --vi_dir")
        if target_dir or cpstn:
            raise InputError(None, "--target visible excludes --target_dir "
                             "and --cpstn")
        return "visible"
    if target_dir and cpstn:
        raise InputError(None, "give either --target_dir (pseudo-infrared "
                         "images) or --cpstn with --vi_dir, not both")
    if cpstn:
        if not vi_dir:
            raise InputError(None, "--cpstn needs --vi_dir (the visible "
                             "images it turns into pseudo-infrared ones)")
        return "cpstn"
    if not target_dir:
        raise InputError(None, "no registration target: give --target_dir "
                         "(pseudo-infrared images), or --cpstn F --vi_dir D, "
                         "or --target visible --vi_dir D")
    return "dir"


def _target(registrar, mode, row):
    """The registration target of one row (ir, vi|target[, ...])."""
    if mode == "cpstn":
        return registrar.pseudo_infrared(row[1])
    return read_unit(row[1])


def register_folders(registrar, ir_dir, output_dir, target_dir=None,
                     vi_dir=None, target="pseudo_ir", save_format="png",
                     verbose=1):
    """Upstream's ``test_reg.py`` on folders -> list of seconds per pair.

    Writes ``<output_dir>/<stem>.<fmt>`` (registered infrared),
    ``flow/<stem>.npy`` and ``flow_rgb/<stem>.png``."""
    mode = target_source(target_dir, vi_dir, registrar.cpstn is not None,
                         target)
    if save_format not in SAVE_FORMATS:
        raise InputError(None, f"--save_format must be png or jpg")
    second = target_dir if mode == "dir" else vi_dir
    stems, paths = pair(ir_dir, second, what="its registration pair")
    check_output_dir(output_dir)
    out = Outputs(output_dir)

    def work(i, row):
        tgt = _target(registrar, mode, row)
        src = read_unit(row[0])
        (reg, flow), seconds = timed(registrar, tgt, src)
        _save_registration(out, stems[i], reg, flow, save_format)
        return seconds

    return run_pairs(paths, work, out, verbose)


def _save_registration(out, stem, reg, flow, save_format, record=None):
    out.add(save_u8(to_uint8(reg), out.path(f"{stem}.{save_format}"),
                    save_format))
    out.add(save_npy(flow, out.path("flow", f"{stem}.npy")))
    out.add(save_u8(flow_to_rgb(flow), out.path("flow_rgb", f"{stem}.png")))
    if record is not None:  # the weight-free registration's transform
        from .. import registering

        out.add(registering.save_json(record, out.path(
            "transform", f"{stem}.json")))


class STDFusionNetFuser:
    """This project's STDFusionNet as the fuser of a (registered) pair, with
    its own reading and saving (``fusion.load_pair`` / ``to_image``:
    upstream STDFusionNet's luma, ``x / 127.5 - 1``, min-max saving)."""

    def __init__(self, fuser):
        self.fuser = fuser

    def fuse_unit(self, ir_unit, vi_path, color=False):
        """An in-memory infrared image in [0, 1] (a registration result)
        and a visible file -> uint8 image."""
        from .. import fusion

        vi = images.scale_in(images.read_gray(vi_path))
        ir = np.asarray(ir_unit, np.float32) * np.float32(2) - np.float32(1)
        return fusion.to_image(self.fuser(ir, vi), vi_path, color=color)

    def fuse_files(self, ir_path, vi_path, color=False):
        from .. import fusion

        ir, vi = fusion.load_pair(ir_path, vi_path)
        return fusion.to_image(self.fuser(ir, vi), vi_path, color=color)


def _difn_image(fuser, ir, vi_path, color):
    from . import difn as difn_module

    fused = difn_module.to_uint8(fuser(ir, read_unit(vi_path)))
    return merge_color(fused, vi_path) if color else fused


def fuse_folders(fuser, ir_dir, vi_dir, output_dir, color=False,
                 save_format="png", verbose=1, registration=None):
    """Upstream's ``test_fuse.py`` (DIFN) or STDFusionNet on folders of
    (registered) pairs -> seconds per pair.  ``<output_dir>/<stem>.<fmt>``.
    ``registration`` (e.g. 'auto'): register each infrared image onto its
    visible image first (weight-free, any sizes; outside the timings); the
    fused image is in the visible frame."""
    if save_format not in SAVE_FORMATS:
        raise InputError(None, f"--save_format must be png or jpg")
    stems, paths = pair(ir_dir, vi_dir, what="the infrared image",
                        registration=registration)
    check_output_dir(output_dir)
    out = Outputs(output_dir)

    def work(i, row):
        ir = (registered(row[0], row[1], registration).warped
              if registration else None)
        start = time.perf_counter()
        if ir is not None and isinstance(fuser, STDFusionNetFuser):
            image = fuser.fuse_unit(ir, row[1], color)
        elif isinstance(fuser, STDFusionNetFuser):
            image = fuser.fuse_files(row[0], row[1], color)
        else:
            image = _difn_image(fuser, read_unit(row[0]) if ir is None
                                else ir, row[1], color)
        seconds = time.perf_counter() - start
        out.add(save_u8(image, out.path(f"{stems[i]}.{save_format}"),
                        save_format))
        return seconds

    return run_pairs(paths, work, out, verbose)


def register_and_fuse(registrar, fuser, ir_dir, vi_dir, output_dir,
                      target_dir=None, target="pseudo_ir", color=False,
                      save_format="png", verbose=1, registration=None):
    """Upstream's ``test_reg_fusion.py``: register, then fuse the registered
    infrared image (the float result, not a re-read 8-bit file, as upstream
    passes ``ir_pred`` straight on).  Writes ``<output_dir>/reg/...`` (as
    :func:`register_folders`) and ``<output_dir>/fused/<stem>.<fmt>``.

    ``registration`` (e.g. 'auto', instead of MRRN: ``registrar`` None): the
    weight-free registration straight onto the visible image, no target
    needed, pairs of any sizes; ``reg/`` then also gets
    ``transform/<stem>.json`` and everything is in the visible frame."""
    if registration is not None:
        mode = None
    else:
        mode = target_source(target_dir, vi_dir,
                             registrar.cpstn is not None, target)
    if save_format not in SAVE_FORMATS:
        raise InputError(None, f"--save_format must be png or jpg")
    folders = [ir_dir, vi_dir] + ([target_dir] if mode == "dir" else [])
    stems, paths = pair(*folders, what="its pair", registration=registration)
    reg_dir = os.path.join(str(output_dir), "reg")
    fused_dir = os.path.join(str(output_dir), "fused")
    check_output_dir(output_dir)
    check_output_dir(reg_dir)
    check_output_dir(fused_dir)
    reg_out, fused_out = Outputs(reg_dir), Outputs(fused_dir)
    top = Outputs(output_dir)

    def work(i, row):
        ir_path, vi_path = row[0], row[1]
        record = None
        if registration is not None:
            from .. import registering

            ir, vi = read_unit(ir_path), read_unit(vi_path)
            start = time.perf_counter()
            result = registering.register(ir, vi, registration,
                                          name=ir_path)
            reg, flow = result.warped, registering.check_flow(
                result.flow, vi.shape, ir_path)
            record = registering.transform_record(
                result, ir_path, vi_path, ir.shape, vi.shape, registration)
        else:
            tgt = (read_unit(row[2]) if mode == "dir"
                   else _target(registrar, mode, (ir_path, vi_path)))
            start = time.perf_counter()
            reg, flow = registrar(tgt, read_unit(ir_path))
        if isinstance(fuser, STDFusionNetFuser):
            image = fuser.fuse_unit(reg, vi_path, color)
        else:
            image = _difn_image(fuser, reg, vi_path, color)
        seconds = time.perf_counter() - start
        _save_registration(reg_out, stems[i], reg, flow, save_format,
                           record)
        fused_out.add(save_u8(image, fused_out.path(
            f"{stems[i]}.{save_format}"), save_format))
        return seconds

    try:
        return run_pairs(paths, work, reg_out, verbose)
    except BaseException:
        fused_out.rollback()
        top.rollback()
        raise
