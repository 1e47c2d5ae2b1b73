"""Folders of deformed, registered and ground-truth infrared images -> the
registration table (before / after), as upstream's ``Evaluation/metrics.py``
with MI and end-point error added.

Images are read as upstream reads them (``cv2.imread(IMREAD_GRAYSCALE)``
semantics, ``stdfusion_tf.images.read_gray_cv2``) and paired by file stem
(upstream zipped two sorted listings).  Everything is computed before
anything is written.
"""

import csv
import io
import os

import numpy as np

from .. import evaluation, images
from ..errors import InputError, one_line
from . import deform, reg_metrics

BEFORE, AFTER = "warped", "registered"


def read_flow(path, shape):
    """A flow file: float [2, H, W] (rows/dy, cols/dx, pixels) of the
    image size ``shape``; anything else is a one-line InputError."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        flow = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"not a NumPy .npy array ({one_line(exc)})")
    if not isinstance(flow, np.ndarray) or flow.dtype.kind != "f":
        raise InputError(path, "a float array [2, H, W] is expected, got "
                         f"{getattr(flow, 'dtype', type(flow).__name__)}")
    if flow.ndim == 4 and flow.shape[0] == 1:
        flow = flow[0]  # a batch of one, as PyTorch code saves it
    if flow.shape != (2,) + tuple(shape):
        raise InputError(path, f"flow of shape {list(flow.shape)}, but the "
                         f"images are {shape[0]}x{shape[1]} (expected "
                         f"[2, {shape[0]}, {shape[1]}])")
    if not np.all(np.isfinite(flow)):
        raise InputError(path, "flow holds NaN or infinite values")
    return flow


def _read(path, shape=None, what="the ground truth"):
    u8 = images.read_gray_cv2(path)
    if shape is not None and u8.shape != shape:
        raise InputError(path, "size mismatch: {}x{} but {} is {}x{}".format(
            *u8.shape, what, *shape))
    return u8


def evaluate_folders(warped_dir, registered_dir, gt_dir, flow_dir=None,
                     true_flow_dir=None, allow_missing=False, progress=None):
    """-> (rows [{method, name, metric: value}], columns, skipped stems).

    A stem missing from one of the three folders is an error unless
    ``allow_missing`` (then it is skipped and returned).

    Rows come in pairs per image: method ``warped`` (deformed vs ground
    truth) and ``registered`` (registered vs ground truth).  With
    ``true_flow_dir`` (``umf.make_misaligned``'s ``flow/`` folder: the
    forward displacement ``d``, ``deformed(p) = original(p + d(p))``) and
    ``flow_dir`` (the registration's ``flow/``, ``registered(p) =
    warped(p + flow(p))``), EPE compares the registration flow with the
    flow that undoes ``d`` (``deform.invert_displacement``); the ``warped``
    row's EPE is that of a zero flow (no registration).
    """
    if (flow_dir is None) != (true_flow_dir is None):
        raise InputError(None, "end-point error needs both --flow_dir and "
                         "--true_flow_dir")
    stems, paths, skipped = images.pair_folders(
        warped_dir, registered_dir, gt_dir, allow_missing=allow_missing)
    columns = list(reg_metrics.IMAGE_METRICS) + (
        ["EPE"] if flow_dir is not None else [])
    rows = []
    for i, (stem, (warped_path, reg_path, gt_path)) in enumerate(
            zip(stems, paths)):
        gt = _read(gt_path)
        what = f"the ground truth {gt_path}"
        warped = _read(warped_path, gt.shape, what)
        registered = _read(reg_path, gt.shape, what)
        before = {"method": BEFORE, "name": stem}
        before.update(reg_metrics.evaluate(gt, warped))
        after = {"method": AFTER, "name": stem}
        after.update(reg_metrics.evaluate(gt, registered))
        if flow_dir is not None:
            flow = read_flow(os.path.join(str(flow_dir), stem + ".npy"),
                             gt.shape)
            d = read_flow(os.path.join(str(true_flow_dir), stem + ".npy"),
                          gt.shape)
            undo = deform.invert_displacement(d)
            before["EPE"] = reg_metrics.end_point_error(np.zeros_like(undo),
                                                        undo)
            after["EPE"] = reg_metrics.end_point_error(flow, undo)
        rows += [before, after]
        if progress:
            progress(i + 1, len(stems))
    return rows, columns, skipped


def report(rows, columns):
    """(table.md text, metrics.csv text, mean.csv text)."""
    summary = evaluation.summarize(rows, columns)
    table = evaluation.markdown_table(
        summary, columns, higher_is_better=reg_metrics.HIGHER_IS_BETTER,
        spec="#.5g", first_header="Infrared vs ground truth")
    n = len(rows) // 2
    text = (f"{n} image pairs; mean ± std (sample std); MSE, NCC, LNCC as "
            "upstream's Evaluation/metrics.py (float32), MI in bits"
            + (", EPE in pixels" if "EPE" in columns else "") + "\n\n"
            + table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "images"] + list(columns))
    for method, stats in summary.items():
        count = sum(r["method"] == method for r in rows)
        writer.writerow([method, count]
                        + [repr(stats[c][0]) for c in columns])
    return text, evaluation.metrics_csv(rows, columns), buf.getvalue()
