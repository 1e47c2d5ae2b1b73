"""Folders of misaligned pairs -> registered infrared, flows, fused images.

What upstream's ``Test/test_reg.py``, ``test_fuse.py``, ``test_reg_fusion.py``
and ``data/fuse_Ycbcr_rgb.py`` do, on folders of any image size, reusing the
STDFusionNet wing's pairing, staged writes and error handling.  The rooms:

* ``image_io``: reading and saving as upstream (``read_unit``, ``to_uint8``,
  ``save_u8``, ``.npy`` flows), pairing folders;
* ``ycrcb``: OpenCV's YCrCb, the visible chroma put back on fused luma;
* ``flow_picture``: upstream's ``flow2rgb`` picture of a flow;
* ``fusers``: the ``Registrar`` (MRRN, CPSTN) and the fusers, one interface
  (``PairFuser``: DIFN or STDFusionNet);
* here: which target to register to, and the three folder runs.  A run's
  files are staged and renamed into place together at its end
  (``fileio.StagedOutputs``, as ``fusion.fuse_folders``): a run that fails
  half-way leaves earlier outputs as they were.
"""

import os
import time

from .. import progress
from ..errors import InputError
from ..fileio import StagedOutputs
# the names below are this module's public interface too (commands, bench)
from .flow_picture import flow_to_rgb  # noqa: F401
from .fusers import (DIFNFuser, PairFuser, Registrar,  # noqa: F401
                     STDFusionNetFuser)
from .image_io import (SAVE_FORMATS, check_output_dir,  # noqa: F401
                       check_save_format, pair, read_unit, save_npy, save_u8,
                       to_uint8)
from .ycrcb import merge_color, rgb_to_ycrcb, ycrcb_to_rgb  # noqa: F401

TARGETS = ("pseudo_ir", "visible")


def run_pairs(paths, work, outputs, verbose=1, unit="pair"):
    """Run ``work(i, paths[i])`` -> seconds for every pair with a progress
    bar, then put the staged ``outputs`` in place; on any failure remove
    this run's staged files instead."""
    bar = progress.progbar(len(paths), verbose=verbose, unit_name=unit,
                           stateful_metrics=["seconds"])
    timings = []
    with outputs:
        for i, p in enumerate(paths):
            seconds = work(i, p)
            timings.append(seconds)
            bar.update(i + 1, values=[("seconds", seconds)])
    return timings


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# -------------------------------------------------------------- targets --
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


# -------------------------------------------------------------- folders --
def _save_image(out, image, stem, save_format, *sub):
    with out.writing(out.path(*sub, f"{stem}.{save_format}"),
                     "." + save_format) as tmp:
        save_u8(image, tmp, save_format)


def registered(ir_path, vi_path, method, report=None):
    """The weight-free registration (``stdfusion_tf.registration``) of one
    pair read as upstream reads it (``read_unit``): the result, whose
    ``warped`` is the infrared image in the visible frame; a pair that falls
    back is named on ``report`` (default stderr)."""
    from .. import registering

    return registering.register(read_unit(ir_path), read_unit(vi_path),
                                method, name=ir_path, report=report)


def _save_registration(out, stem, reg, flow, save_format, sub=(),
                       record=None):
    _save_image(out, to_uint8(reg), stem, save_format, *sub)
    with out.writing(out.path(*sub, "flow", f"{stem}.npy")) as tmp:
        save_npy(flow, tmp)
    _save_image(out, flow_to_rgb(flow), stem, "png", *sub, "flow_rgb")
    if record is not None:  # the weight-free registration's transform
        from .. import registering

        with out.writing(out.path(*sub, "transform", f"{stem}.json"),
                         ".json") as tmp:
            registering.save_json(record, tmp)


def register_folders(registrar, ir_dir, output_dir, target_dir=None,
                     vi_dir=None, target="pseudo_ir", save_format="png",
                     verbose=1):
    """Upstream's ``test_reg.py`` on folders -> list of seconds per pair.

    Writes ``<output_dir>/<stem>.<fmt>`` (registered infrared),
    ``flow/<stem>.npy`` and ``flow_rgb/<stem>.png``."""
    mode = target_source(target_dir, vi_dir, registrar.cpstn is not None,
                         target)
    check_save_format(save_format)
    second = target_dir if mode == "dir" else vi_dir
    stems, paths = pair(ir_dir, second, what="its registration pair")
    check_output_dir(output_dir)
    out = StagedOutputs(output_dir)

    def work(i, row):
        tgt = _target(registrar, mode, row)
        src = read_unit(row[0])
        (reg, flow), seconds = timed(registrar, tgt, src)
        _save_registration(out, stems[i], reg, flow, save_format)
        return seconds

    return run_pairs(paths, work, out, verbose)


def fuse_folders(fuser, ir_dir, vi_dir, output_dir, color=False,
                 save_format="png", verbose=1, registration=None):
    """Upstream's ``test_fuse.py`` (DIFN) or STDFusionNet on folders of
    (registered) pairs -> seconds per pair.  ``<output_dir>/<stem>.<fmt>``.
    ``fuser``: a :class:`PairFuser`.  ``registration`` (e.g. 'auto'):
    register each infrared image onto its visible image first (weight-free,
    any sizes; outside the timings); the fused image is in the visible
    frame."""
    check_save_format(save_format)
    stems, paths = pair(ir_dir, vi_dir, what="the infrared image",
                        registration=registration)
    check_output_dir(output_dir)
    out = StagedOutputs(output_dir)

    def work(i, row):
        if registration:
            ir = registered(row[0], row[1], registration).warped
            image, seconds = timed(fuser.fuse_unit, ir, row[1], color)
        else:
            image, seconds = timed(fuser.fuse_files, row[0], row[1], color)
        _save_image(out, image, stems[i], save_format)
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
    check_save_format(save_format)
    folders = [ir_dir, vi_dir] + ([target_dir] if mode == "dir" else [])
    stems, paths = pair(*folders, what="its pair", registration=registration)
    check_output_dir(output_dir)
    check_output_dir(os.path.join(str(output_dir), "reg"))
    check_output_dir(os.path.join(str(output_dir), "fused"))
    out = StagedOutputs(output_dir)

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
        image = fuser.fuse_unit(reg, vi_path, color)
        seconds = time.perf_counter() - start
        _save_registration(out, stems[i], reg, flow, save_format, ("reg",),
                           record)
        _save_image(out, image, stems[i], save_format, "fused")
        return seconds

    return run_pairs(paths, work, out, verbose)
