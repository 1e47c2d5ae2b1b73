"""Whole-image fusion of folders of infrared/visible pairs (upstream's test path).

Each pair is read like upstream (``images.read_gray``), scaled with
``x / 127.5 - 1``, fed to the network whole (no padding, no crop) and saved
as an 8-bit image, by default min-max stretched as ``scipy.misc.imsave`` did.
"""

import os
import time

import numpy as np

from . import fileio, images, progress
from .errors import InputError
from .fileio import atomic_output


# Receptive-field radius of the network: the 5x5 conv (2) and seven 3x3
# convs (1 each) along the deepest path.  Tiles that carry this many pixels
# of context on every side reproduce the whole-image output exactly.
HALO = 9
PRECISIONS = ("float32", "bfloat16")

# Memory model of fusion, for choosing tiles from a budget (--max_memory).
# Peak RSS of the network per pixel it runs on (the image, or one tile with
# its halo), float32 on TF 2.21 + oneDNN, measured with bench/memory.py and
# rounded up; the TF runtime with the weights and the traced function; and
# what stays resident per pixel of the whole image whatever the tiling
# (the pair being fused and the next one read ahead, the fused float image,
# the 8-bit result and its temporaries, the previous result being saved).
# 2.13 KB/px measured on TF's BFC pool (the default), 1.30 KB/px with
# oneDNN on the system allocator (``lean_allocator``).
NETWORK_BYTES_PER_PIXEL = {"bfc": 2300, "system": 1500}
RUNTIME_BYTES = 1 << 30
IMAGE_BYTES_PER_PIXEL = 48
MIN_AUTO_TILE = 128
# Images above this size (2 Mpx: whole-image fusion needs ~4.5 GB) are read
# only one ahead.
LARGE_PIXELS = 2 << 20
# The default --max_memory: this share of the memory available now
# (MemAvailable of /proc/meminfo), leaving room for other processes.
DEFAULT_MEMORY_SHARE = 0.5


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
    """None (automatic), 0 (whole image) or >= 2 * HALO."""
    if tile_size is not None and tile_size != 0 and tile_size < 2 * HALO:
        raise InputError(None, f"--tile_size {tile_size} is smaller than "
                         f"twice the halo ({2 * HALO} pixels); 0 fuses "
                         "whole images")


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40,
          "TB": 1 << 40}


def parse_memory(text):
    """'8G', '1.5GB', '512M', '2000000000' -> bytes (binary units)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*",
                     str(text).upper())
    if not m or float(m.group(1)) <= 0:
        raise InputError(None, f"--max_memory {text!r}: expected a size "
                         "such as 8G, 1.5G or 500M")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def available_memory():
    """Bytes of memory available now: MemAvailable of /proc/meminfo (Linux),
    else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def allocator():
    """'system' when oneDNN allocates from the system (see lean_allocator),
    else 'bfc' (TensorFlow's default pool)."""
    value = os.environ.get("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "").lower()
    return "system" if value in ("1", "true") else "bfc"


def lean_allocator():
    """Make oneDNN allocate its tensors from the system allocator instead of
    TensorFlow's BFC pool, which keeps every block it ever grew to: the
    working memory of whole-image fusion drops from ~2.1 to ~1.3 KB per
    pixel (bench/memory.py), the arithmetic is the same.  Each op then gets
    fresh pages from the kernel, which costs time: ~1.6x slower on a
    2.7 Mpx image, so it is opt-in (test.py --lean_allocator).  Effective
    only before TensorFlow starts; returns whether it is in effect."""
    import sys

    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    return allocator() == "system"


def default_max_memory():
    return int(DEFAULT_MEMORY_SHARE * available_memory())


def gigabytes(n):
    return f"{n / 2 ** 30:.1f} GB"


def plan_tile_size(height, width, max_memory):
    """Tile size that keeps fusing an ``height x width`` pair under
    ``max_memory`` bytes (see the memory model above): None when the whole
    image fits, else the largest tile (tiles of equal size, so that no thin
    strip is left over).  Raises InputError when not even tiles of
    ``MIN_AUTO_TILE`` fit."""
    per_pixel = NETWORK_BYTES_PER_PIXEL[allocator()]
    fixed = RUNTIME_BYTES + IMAGE_BYTES_PER_PIXEL * height * width
    if fixed + per_pixel * height * width <= max_memory:
        return None
    room = (max_memory - fixed) / per_pixel
    largest = int(room ** 0.5) - 2 * HALO if room > 0 else 0
    if largest < MIN_AUTO_TILE:
        need = fixed + per_pixel * (MIN_AUTO_TILE + 2 * HALO) ** 2
        raise InputError(None, f"a {height}x{width} pair needs about "
                         f"{gigabytes(need)} even in tiles of "
                         f"{MIN_AUTO_TILE}, more than --max_memory "
                         f"{gigabytes(max_memory)}")
    side = max(height, width)
    count = -(-side // largest)
    return -(-side // count)


class Fuser:
    """The network behind one traced function for every image size
    (input signature ``[1, None, None, 1]``: no retracing across sizes).

    ``tile_size``: fuse in tiles of that size, each with ``HALO`` pixels of
    context, so that memory is bounded whatever the image size; the output
    is the whole-image output (to float rounding).  ``max_memory`` (bytes,
    with ``tile_size`` None): choose per image between whole-image fusion
    and tiles so as to stay under it (``plan_tile_size``).  Neither: whole
    images.

    The weights are snapshotted when the Fuser is made and enter the traced
    graph as constants (``model.stateless_call``), as they do in upstream's
    TF1 test graph: grappler can then hand oneDNN fused, pre-packed
    convolutions instead of re-reading variables on every call.
    """

    def __init__(self, model, tile_size=None, max_memory=None):
        import tensorflow as tf

        check_tile_size(tile_size)
        self.model = model
        self.tile_size = tile_size or None
        self.max_memory = max_memory if tile_size is None else None
        self.tiled_images = 0  # how many images were fused in tiles
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
        tile = self.tile_for(*ir.shape)
        if tile is None or max(ir.shape) <= tile:
            return self._run(ir, vi)
        self.tiled_images += 1
        return self._tiled(ir, vi, tile)

    def tile_for(self, height, width):
        """The tile size this Fuser uses for such an image (None: whole)."""
        if self.max_memory is not None:
            return plan_tile_size(height, width, self.max_memory)
        return self.tile_size

    def _tiled(self, ir, vi, t):
        h, w = ir.shape
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


def check_pairs(ir_dir, vi_dir, sizes=False, register=None):
    """Pair by name and decode every image once, so that a bad file or a size
    mismatch stops the run before anything is written.  -> (stems, paths),
    plus the (H, W) of each pair with ``sizes``.  ``register`` (a
    registration method): the sizes may differ, the pair's size is the
    visible image's, and each image must be registrable
    (``registering.check_image``)."""
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir)
    shapes = []
    if register is not None:
        from . import registering

        registering.check_method(register)
        for ir_path, vi_path in paths:
            registering.check_image(ir_path)
            shapes.append(registering.check_image(vi_path))
        return (stems, paths, shapes) if sizes else (stems, paths)
    for ir_path, vi_path in paths:
        ir_size, vi_size = images.image_size(ir_path), images.image_size(vi_path)
        if ir_size != vi_size:
            raise InputError(vi_path, "size mismatch: {}x{} (H x W) but the "
                             "infrared image {} is {}x{}".format(
                                 *vi_size, ir_path, *ir_size))
        shapes.append(ir_size)
    return (stems, paths, shapes) if sizes else (stems, paths)


def load_pair(ir_path, vi_path, ir_range="minmax", register=None):
    """Read and scale one pair like upstream: ([H, W], [H, W]) in [-1, 1].
    ``ir_range``: how a 16-bit or float infrared image is mapped to 0..255
    (``images.read_gray``).  ``register`` (a registration method): the
    infrared image is first registered onto the visible one (any sizes) and
    comes back in the visible frame (``registering.register``; a pair that
    falls back is named on stderr)."""
    if register is not None:
        from . import registering

        ir = images.read_gray(ir_path, ir_range=ir_range)
        vi = images.read_gray(vi_path)
        unit = np.float32(255.0)
        warped = registering.register(ir / unit, vi / unit, register,
                                      name=ir_path).warped
        return (images.scale_in(np.asarray(warped, np.float32) * unit,
                                inplace=True),
                images.scale_in(vi, inplace=True))
    return (images.scale_in(images.read_gray(ir_path, ir_range=ir_range),
                            inplace=True),
            images.scale_in(images.read_gray(vi_path), inplace=True))


def to_image(fused, vi_path, save_mode="minmax", color=False, inplace=False):
    """Fused [-1, 1] array -> uint8 image (gray, or RGB with ``color``).
    ``inplace``: ``fused`` may be overwritten (one float image less)."""
    out = images.to_uint8(fused, save_mode, inplace=inplace)
    if color:
        # The paper's RoadScene strategy: the network fuses the luma; the
        # visible image's chroma (Cb, Cr) is put back.
        out = images.merge_color(out, images.read_ycbcr(vi_path))
    return out


def prefetched_pairs(paths, depth=2, ir_range="minmax", register=None):
    """Decoded (and, with ``register``, registered) pairs in order, read
    ``depth`` ahead by a reader thread so that decoding overlaps the network
    (which releases the GIL)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        queue = [reader.submit(load_pair, *p, ir_range=ir_range,
                               register=register)
                 for p in paths[:depth]]
        for i in range(len(paths)):
            if i + depth < len(paths):
                queue.append(reader.submit(load_pair, *paths[i + depth],
                                           ir_range=ir_range,
                                           register=register))
            yield queue.pop(0).result()


def fuse_folders(fuser, ir_dir, vi_dir, output_dir, save_mode="minmax",
                 color=False, ext=".bmp", verbose=1, ir_range="minmax",
                 extra=None, register=None):
    """Fuse every pair; returns [(stem, height, width, seconds)].

    Inputs are all checked first (including that the output paths can be
    written and that each pair fits the Fuser's memory budget).  Decoding
    runs ahead in a reader thread and encoding/saving in a writer thread,
    both overlapping the network.  Outputs are written atomically, and if
    the run fails half-way the files it wrote are removed again.
    ``ir_range``: the mapping of 16-bit / float infrared images
    (``images.read_gray``).  ``extra(stem, ir, vi, fused)`` -> ``{path:
    uint8 image}``: more images per pair (``salient.MapWriter``), computed
    and saved in the writer thread, outside the timings, staged and renamed
    with the rest.  ``register`` (a registration method, e.g. 'auto'):
    register each infrared image onto its visible image first (in the reader
    thread, outside the timings); the pair's sizes may then differ and the
    fused image is in the visible frame, the visible image's size.
    """
    import concurrent.futures

    if save_mode not in images.SAVE_MODES:
        raise InputError(None, f"--save_mode must be one of "
                         f"{', '.join(images.SAVE_MODES)}, got {save_mode!r}")
    images.parse_ir_range(ir_range)
    stems, paths, shapes = check_pairs(ir_dir, vi_dir, sizes=True,
                                       register=register)
    targets = [os.path.join(str(output_dir), stem + ext) for stem in stems]
    fileio.check_writable(output_dir, targets
                          + [os.path.join(str(output_dir), "timings.csv")])
    for (ir_path, _), (h, w) in zip(paths, shapes):
        try:
            fuser.tile_for(h, w)
        except InputError as exc:
            raise InputError(ir_path, exc.problem)
    depth = 2 if max(h * w for h, w in shapes) <= LARGE_PIXELS else 1
    fuser.warm_up()
    timings, pending = [], []
    out = fileio.StagedOutputs(output_dir)
    bar = progress.progbar(len(stems), verbose=verbose, unit_name="pair",
                           stateful_metrics=["seconds"])

    def save(fused, i, ir, vi):
        # extra images first: to_image(inplace=True) reuses ``fused``
        for path, array in (extra(stems[i], ir, vi, fused) if extra
                            else {}).items():
            images.save_image(array, out.stage(path))
        with out.writing(targets[i]) as tmp:
            images.save_image(to_image(fused, paths[i][1], save_mode, color,
                                       inplace=True), tmp)

    try:
        out.makedirs()
        with concurrent.futures.ThreadPoolExecutor(1) as writer:
            for i, (ir, vi) in enumerate(prefetched_pairs(
                    paths, depth, ir_range, register)):
                start = time.perf_counter()
                fused = fuser(ir, vi)
                seconds = time.perf_counter() - start
                pending.append(writer.submit(save, fused, i, ir, vi))
                timings.append((stems[i], ir.shape[0], ir.shape[1], seconds))
                bar.update(i + 1, values=[("seconds", seconds)])
            for job in pending:
                job.result()  # re-raise a failed write
        with out.writing(out.path("timings.csv")) as tmp:
            write_timings(timings, tmp)
        out.commit()
    except BaseException:
        for job in pending:
            job.cancel()
        concurrent.futures.wait(pending)
        out.rollback()  # only this run's temporary files and folders
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
