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
from .fileio import atomic_output


# Receptive-field radius of the network: the 5x5 conv (2) and seven 3x3
# convs (1 each) along the deepest path.  Tiles that carry this many pixels
# of context on every side reproduce the whole-image output exactly.
HALO = 9
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision):
    """Refuse bf16 where it would be emulated (slow) rather than native."""
    if precision not in PRECISIONS:
        raise InputError(None, f"--precision must be one of "
                         f"{', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16" and not bf16_supported():
        raise InputError(None, "--precision=bfloat16 needs a CPU with "
                         "AVX512_BF16 or AMX-BF16, or a GPU with compute "
                         "capability >= 8.0; this machine has neither")


def bf16_supported():
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get(
            "compute_capability", (0, 0))
        if tuple(cc) >= (8, 0):
            return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def check_tile_size(tile_size):
    if tile_size is not None and tile_size < 2 * HALO:
        raise InputError(None, f"--tile_size {tile_size} is smaller than "
                         f"twice the halo ({2 * HALO} pixels)")


class Fuser:
    """The network behind one traced function for every image size
    (input signature ``[1, None, None, 1]``: no retracing across sizes).

    ``tile_size``: fuse in tiles of that size, each with ``HALO`` pixels of
    context, so that memory is bounded whatever the image size; the output
    is the whole-image output (to float rounding).

    The weights are snapshotted when the Fuser is made and enter the traced
    graph as constants (``model.stateless_call``), as they do in upstream's
    TF1 test graph: grappler can then hand oneDNN fused, pre-packed
    convolutions instead of re-reading variables on every call.
    """

    def __init__(self, model, tile_size=None):
        import tensorflow as tf

        check_tile_size(tile_size)
        self.model = model
        self.tile_size = tile_size
        trainable = [np.asarray(v) for v in model.trainable_variables]
        frozen = [np.asarray(v) for v in model.non_trainable_variables]

        def fuse(ir, vi):
            fused, _ = model.stateless_call(
                [tf.constant(w) for w in trainable],
                [tf.constant(w) for w in frozen], (ir, vi), training=False)
            return tf.cast(fused, tf.float32)

        spec = tf.TensorSpec([1, None, None, 1], tf.float32)
        self._fn = tf.function(fuse, input_signature=[spec, spec])

    def _run(self, ir, vi):
        return self._fn(ir[None, :, :, None],
                        vi[None, :, :, None]).numpy()[0, :, :, 0]

    def __call__(self, ir, vi):
        """[H, W] float arrays in [-1, 1] -> fused [H, W] float32 array."""
        ir = np.asarray(ir, np.float32)
        vi = np.asarray(vi, np.float32)
        if self.tile_size is None or max(ir.shape) <= self.tile_size:
            return self._run(ir, vi)
        return self._tiled(ir, vi)

    def _tiled(self, ir, vi):
        h, w = ir.shape
        t = self.tile_size
        out = np.empty((h, w), np.float32)
        for top in range(0, h, t):
            for left in range(0, w, t):
                bottom, right = min(top + t, h), min(left + t, w)
                # context clipped at the image border, where the whole-image
                # run sees zero padding too
                y0, x0 = max(top - HALO, 0), max(left - HALO, 0)
                y1, x1 = min(bottom + HALO, h), min(right + HALO, w)
                tile = self._run(ir[y0:y1, x0:x1], vi[y0:y1, x0:x1])
                out[top:bottom, left:right] = tile[top - y0:bottom - y0,
                                                   left - x0:right - x0]
        return out

    @property
    def traces(self):
        """How many concrete functions were traced (1 expected)."""
        return self._fn.experimental_get_tracing_count()

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


def load_pair(ir_path, vi_path):
    """Read and scale one pair like upstream: ([H, W], [H, W]) in [-1, 1]."""
    return (images.scale_in(images.read_gray(ir_path)),
            images.scale_in(images.read_gray(vi_path)))


def to_image(fused, vi_path, save_mode="minmax", color=False):
    """Fused [-1, 1] array -> uint8 image (gray, or RGB with ``color``)."""
    out = images.to_uint8(fused, save_mode)
    if color:
        # The paper's RoadScene strategy: the network fuses the luma; the
        # visible image's chroma (Cb, Cr) is put back.
        out = images.merge_color(out, images.read_ycbcr(vi_path))
    return out


def prefetched_pairs(paths, depth=2):
    """Decoded pairs in order, read ``depth`` ahead by a reader thread so
    that decoding overlaps the network (which releases the GIL)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        queue = [reader.submit(load_pair, *p) for p in paths[:depth]]
        for i in range(len(paths)):
            if i + depth < len(paths):
                queue.append(reader.submit(load_pair, *paths[i + depth]))
            yield queue.pop(0).result()


def fuse_folders(fuser, ir_dir, vi_dir, output_dir, save_mode="minmax",
                 color=False, ext=".bmp", verbose=1, extra=None):
    """Fuse every pair; returns [(stem, height, width, seconds)].

    ``extra(stem, ir, vi, fused)`` -> ``{path: uint8 image}``: more images
    per pair (``salient.MapWriter``), computed and saved in the writer
    thread, outside the timings, and removed with the rest on failure.

    Inputs are all checked first.  Decoding runs ahead in a reader thread
    and encoding/saving in a writer thread, both overlapping the network.
    Outputs are written atomically, and if the run fails half-way
    the files it wrote are removed again.
    """
    import concurrent.futures

    import keras

    if save_mode not in images.SAVE_MODES:
        raise InputError(None, f"--save_mode must be one of "
                         f"{', '.join(images.SAVE_MODES)}, got {save_mode!r}")
    stems, paths = check_pairs(ir_dir, vi_dir)
    fuser.warm_up()
    created_dir = not os.path.isdir(str(output_dir))
    targets = [os.path.join(str(output_dir), stem + ext) for stem in stems]
    timings, pending, written, made_dirs = [], [], [], []
    bar = keras.utils.Progbar(len(stems), verbose=verbose, unit_name="pair",
                              stateful_metrics=["seconds"])

    def save(fused, i, ir, vi):
        images.save_image(to_image(fused, paths[i][1], save_mode, color),
                          targets[i])
        written.append(targets[i])  # list.append is atomic
        for path, array in (extra(stems[i], ir, vi, fused) if extra
                            else {}).items():
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                made_dirs.append(folder)
            images.save_image(array, path)
            written.append(path)

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as writer:
            for i, (ir, vi) in enumerate(prefetched_pairs(paths)):
                start = time.perf_counter()
                fused = fuser(ir, vi)
                seconds = time.perf_counter() - start
                pending.append(writer.submit(save, fused, i, ir, vi))
                timings.append((stems[i], ir.shape[0], ir.shape[1], seconds))
                bar.update(i + 1, values=[("seconds", seconds)])
            for job in pending:
                job.result()  # re-raise a failed write
        write_timings(timings, os.path.join(str(output_dir), "timings.csv"))
    except BaseException:
        for job in pending:
            job.cancel()
        concurrent.futures.wait(pending)
        for path in written:  # only what this run wrote
            if os.path.exists(path):
                os.remove(path)
        for folder in reversed(made_dirs):  # folders of extra outputs
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        if created_dir and os.path.isdir(str(output_dir)) \
                and not os.listdir(str(output_dir)):
            os.rmdir(str(output_dir))
        raise
    return timings


def write_timings(timings, path):
    """``timings.csv``: name,height,width,seconds (read by evaluate.py)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write("name,height,width,seconds\n")
            for stem, h, w, s in timings:
                f.write(f"{stem},{h},{w},{s:.6f}\n")


def summarize(timings):
    """'mean ± std s' over images, like the paper's Table II."""
    seconds = np.array([t[3] for t in timings])
    std = seconds.std(ddof=1) if len(seconds) > 1 else 0.0
    return f"{seconds.mean():.4f} ± {std:.4f} s per image"
