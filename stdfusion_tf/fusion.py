"""Whole-image fusion of folders of infrared/visible pairs (upstream's test path).

Each pair is read like upstream (``images.read_gray``), scaled with
``x / 127.5 - 1``, fed to the network whole (no padding, no crop) and saved
as an 8-bit image, by default min-max stretched as ``scipy.misc.imsave`` did.
"""

import os
import time

import numpy as np

from . import images
from .errors import InputError


class Fuser:
    """The network behind one traced function for every image size
    (input signature ``[1, None, None, 1]``: no retracing across sizes)."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        spec = tf.TensorSpec([1, None, None, 1], tf.float32)
        self._fn = tf.function(lambda ir, vi: model((ir, vi), training=False),
                               input_signature=[spec, spec])

    def __call__(self, ir, vi):
        """[H, W] float arrays in [-1, 1] -> fused [H, W] float32 array."""
        ir = np.asarray(ir, np.float32)[None, :, :, None]
        vi = np.asarray(vi, np.float32)[None, :, :, None]
        return self._fn(ir, vi).numpy()[0, :, :, 0]

    def warm_up(self):
        z = np.zeros((16, 16), np.float32)
        self(z, z)


def check_pairs(ir_dir, vi_dir):
    """Pair by name and decode every image once, so that a bad file or a size
    mismatch stops the run before anything is written."""
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir)
    for ir_path, vi_path in paths:
        ir_size, vi_size = images.image_size(ir_path), images.image_size(vi_path)
        if ir_size != vi_size:
            raise InputError(vi_path, "size mismatch: {}x{} (H x W) but the "
                             "infrared image {} is {}x{}".format(
                                 *vi_size, ir_path, *ir_size))
    return stems, paths


def fuse_pair(fuser, ir_path, vi_path, save_mode="minmax", color=False):
    """-> (uint8 image (gray [H, W] or RGB [H, W, 3]), network seconds)."""
    ir = images.scale_in(images.read_gray(ir_path))
    vi = images.scale_in(images.read_gray(vi_path))
    start = time.perf_counter()
    fused = fuser(ir, vi)
    seconds = time.perf_counter() - start
    out = images.to_uint8(fused, save_mode)
    if color:
        # The paper's RoadScene strategy: the network fuses the luma; the
        # visible image's chroma (Cb, Cr) is put back.
        out = images.merge_color(out, images.read_ycbcr(vi_path))
    return out, seconds


def fuse_folders(fuser, ir_dir, vi_dir, output_dir, save_mode="minmax",
                 color=False, ext=".bmp", verbose=1):
    """Fuse every pair; returns [(stem, height, width, seconds)].

    Inputs are all checked first; outputs are written atomically, and if the
    run fails half-way the files it wrote are removed again.
    """
    import keras

    if save_mode not in images.SAVE_MODES:
        raise InputError(None, f"--save_mode must be one of "
                         f"{', '.join(images.SAVE_MODES)}, got {save_mode!r}")
    stems, paths = check_pairs(ir_dir, vi_dir)
    fuser.warm_up()
    created_dir = not os.path.isdir(str(output_dir))
    written, timings = [], []
    bar = keras.utils.Progbar(len(stems), verbose=verbose, unit_name="pair",
                              stateful_metrics=["seconds"])
    try:
        for i, (stem, (ir_path, vi_path)) in enumerate(zip(stems, paths)):
            out, seconds = fuse_pair(fuser, ir_path, vi_path, save_mode, color)
            path = os.path.join(str(output_dir), stem + ext)
            images.save_image(out, path)
            written.append(path)
            timings.append((stem, out.shape[0], out.shape[1], seconds))
            bar.update(i + 1, values=[("seconds", seconds)])
        write_timings(timings, os.path.join(str(output_dir), "timings.csv"))
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        if created_dir and os.path.isdir(str(output_dir)) \
                and not os.listdir(str(output_dir)):
            os.rmdir(str(output_dir))
        raise
    return timings


def write_timings(timings, path):
    """``timings.csv``: name,height,width,seconds (read by evaluate.py)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("name,height,width,seconds\n")
        for stem, h, w, s in timings:
            f.write(f"{stem},{h},{w},{s:.6f}\n")
    os.replace(tmp, path)


def summarize(timings):
    """'mean ± std s' over images, like the paper's Table II."""
    seconds = np.array([t[3] for t in timings])
    std = seconds.std(ddof=1) if len(seconds) > 1 else 0.0
    return f"{seconds.mean():.4f} ± {std:.4f} s per image"
