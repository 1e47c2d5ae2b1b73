"""Folders of infrared/visible pairs of any sizes -> the infrared image in the
visible frame (``stdfusion-register``), and the registration step that
``stdfusion-fuse --register`` and the UMF-CMGR commands put before fusion.

Per pair, ``register_folders`` writes

* ``<output_dir>/<stem>.png``: the infrared image resampled into the visible
  image's frame (the visible image's size, 8-bit: ``x * 255`` rounded half to
  even and clipped, as the UMF-CMGR commands save);
* ``<output_dir>/flow/<stem>.npy``: float32 ``[2, Hv, Wv]``, channel 0 = rows
  (dy), 1 = columns (dx), pixels, ``registered(p) = ir(p + flow(p))`` with
  ``p`` a visible pixel (0-based centres) and ``p + flow(p)`` in the infrared
  image's own pixels;
* ``<output_dir>/transform/<stem>.json``: the global 3x3 matrix (visible
  pixel ``(x, y, 1)`` -> infrared pixel), the confidence, whether the
  fallback was taken, the method used, the sizes and seconds.

Every image is decoded and checked before any work (unreadable, too small,
featureless -> one line naming the file); the outputs are written under
hidden temporary names and renamed into place only when every pair is done,
so a run that stops half-way (bad input found late, a full disk, Ctrl-C)
leaves the output folder as it was.  A pair whose registration is not
trusted (``fallback``) is reported by name and written with the fallback
result, never silently warped.
"""

import json
import os
import sys
import time

import numpy as np

from . import fileio, images, progress
from .errors import InputError

METHODS = ("auto", "global", "dense", "none")
# the global stage's transform (``registration.MODELS``)
MODELS = ("auto", "similarity", "affine", "projective")


# ----------------------------------------------------------- checking --
def check_image(path):
    """(H, W) of an image to be registered, after a full decode: unreadable,
    too small or featureless (a single gray level) -> one-line InputError
    naming the file."""
    from .registration import MIN_SIDE

    im = images.open_image(path)
    w, h = im.size
    if min(h, w) < MIN_SIDE:
        raise InputError(path, f"too small to register ({h}x{w} pixels, "
                         f"H x W; at least {MIN_SIDE}x{MIN_SIDE})")
    extrema = im.getextrema()
    if not isinstance(extrema[0], tuple):  # single band: (min, max)
        extrema = (extrema,)
    if all(lo == hi for lo, hi in extrema):
        raise InputError(path, "featureless image (a single gray level): "
                         "nothing to register")
    return h, w


def check_pairs(ir_dir, vi_dir):
    """Pair by stem; decode and check every image once, before anything is
    written.  -> (stems, [(ir_path, vi_path)], [visible (H, W)])."""
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir)
    sizes = []
    for ir_path, vi_path in paths:
        check_image(ir_path)
        sizes.append(check_image(vi_path))
    return stems, paths, sizes


def check_method(method, model="auto"):
    if method not in METHODS:
        raise InputError(None, f"--method must be one of {', '.join(METHODS)}"
                         f", got {method!r}")
    if model not in MODELS:
        raise InputError(None, f"--model must be one of {', '.join(MODELS)}"
                         f", got {model!r}")


# -------------------------------------------------------- registering --
def read_unit_pair(ir_path, vi_path, ir_range="minmax"):
    """A pair read as the project reads it (``images.read_gray``: float luma
    0..255; 16-bit / float infrared mapped by ``ir_range``) -> float32
    [0, 1] arrays of their own sizes."""
    ir = images.read_gray(ir_path, ir_range=ir_range) / np.float32(255.0)
    vi = images.read_gray(vi_path) / np.float32(255.0)
    return ir, vi


def register(ir, vi, method="auto", name=None, report=None,
             model="auto"):
    """``registration.register_pair`` with the pair's name on its errors and
    a line on ``report`` (default stderr) when the fallback was taken.
    ``ir``, ``vi``: [H, W] float32 in [0, 1]."""
    from .registration import register_pair

    try:
        result = register_pair(np.asarray(ir, np.float32),
                               np.asarray(vi, np.float32), method=method,
                               model=model)
    except InputError as exc:
        if exc.path is None and name is not None:
            raise InputError(name, exc.problem) from exc
        raise
    if result.fallback and method != "none":
        line = (f"{name or 'pair'}: low registration confidence "
                f"({result.confidence:.3g}); fell back to "
                f"'{result.method}' instead of warping")
        if report is None:
            print(line, file=sys.stderr, flush=True)
        else:
            report(line)
    return result


def to_uint8(x):
    """[0, 1] float -> uint8: ``x * 255`` rounded half to even, clipped."""
    y = np.asarray(x, np.float32) * np.float32(255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def transform_record(result, ir_path, vi_path, ir_shape, vi_shape, method,
                     model="auto"):
    """The ``transform/<stem>.json`` content."""
    matrix = getattr(result, "matrix", None)
    return {
        "infrared": os.path.abspath(str(ir_path)),
        "visible": os.path.abspath(str(vi_path)),
        "infrared_size": [int(ir_shape[0]), int(ir_shape[1])],
        "visible_size": [int(vi_shape[0]), int(vi_shape[1])],
        "matrix": (None if matrix is None else
                   np.asarray(matrix, np.float64).reshape(3, 3).tolist()),
        "matrix_maps": "visible pixel (x, y, 1) -> infrared pixel "
                       "(homogeneous, 0-based pixel centres)",
        "confidence": float(result.confidence),
        "fallback": bool(result.fallback),
        "method_requested": method,
        "model": model,
        "method": str(result.method),
        "seconds": float(result.seconds),
    }


def check_flow(flow, vi_shape, name):
    flow = np.asarray(flow, np.float32)
    if flow.shape != (2,) + tuple(vi_shape):
        raise AssertionError(f"{name}: registration returned a flow of shape "
                             f"{flow.shape}, expected {(2,) + tuple(vi_shape)}")
    return flow


# ------------------------------------------------------------- saving --
def save_npy(array, path):
    with fileio.atomic_output(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return path


def save_json(record, path):
    with fileio.atomic_output(path, suffix=".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    return path


def output_paths(output_dir, stem):
    """(png, flow .npy, transform .json) of one pair."""
    out = str(output_dir)
    return (os.path.join(out, f"{stem}.png"),
            os.path.join(out, "flow", f"{stem}.npy"),
            os.path.join(out, "transform", f"{stem}.json"))


def register_folders(ir_dir, vi_dir, output_dir, method="auto",
                     ir_range="minmax", verbose=1, report=None,
                     model="auto"):
    """Register every pair of two folders (matched by file stem, any sizes)
    and write the three outputs per pair (module docstring).  Returns
    ``[(stem, result)]``; ``report(line)`` gets a line per pair that fell
    back (default: stderr).  ``model``: the global transform (``MODELS``)."""
    check_method(method, model)
    images.parse_ir_range(ir_range)
    stems, paths, sizes = check_pairs(ir_dir, vi_dir)
    targets = [p for s in stems for p in output_paths(output_dir, s)]
    fileio.check_writable(output_dir, targets)
    for sub in ("flow", "transform"):
        d = os.path.join(str(output_dir), sub)
        if os.path.exists(d) and not os.path.isdir(d):
            raise InputError(d, "exists and is not a folder")
    out = fileio.StagedOutputs(output_dir)
    bar = progress.progbar(len(stems), verbose=verbose, unit_name="pair",
                           stateful_metrics=["seconds"])
    done = []
    with out:  # all renamed into place at the end, or none
        for i, (stem, (ir_path, vi_path)) in enumerate(zip(stems, paths)):
            ir, vi = read_unit_pair(ir_path, vi_path, ir_range)
            start = time.perf_counter()
            result = register(ir, vi, method, name=ir_path, report=report,
                              model=model)
            seconds = time.perf_counter() - start
            flow = check_flow(result.flow, vi.shape, ir_path)
            png, npy, js = output_paths(output_dir, stem)
            images.save_image(to_uint8(result.warped), out.stage(png))
            save_npy(flow, out.stage(npy))
            save_json(transform_record(result, ir_path, vi_path, ir.shape,
                                       vi.shape, method, model),
                      out.stage(js))
            done.append((stem, result))
            bar.update(i + 1, values=[("seconds", seconds)])
    return done
