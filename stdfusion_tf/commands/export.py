"""Export STDFusionNet as a SavedModel, TFLite or ONNX model, verified.

    stdfusion-export --format saved_model --output_dir export
    stdfusion-export --format tflite --output_dir export            # float32
    stdfusion-export --format tflite --quantize dynamic --output_dir export
    stdfusion-export --format tflite --quantize int8 --output_dir export
    stdfusion-export --format onnx --output_dir export               # float32
    stdfusion-export --format onnx --quantize int8 --output_dir export

Files in --output_dir: ``saved_model/``, ``stdfusion.tflite``,
``stdfusion_dynamic_range.tflite``, ``stdfusion_int8.tflite``,
``stdfusion.onnx``, ``stdfusion_int8.onnx`` (ONNX Runtime's static QDQ int8).
Every model takes ``ir`` and ``vi`` float32 [1, H, W, 1] in [-1, 1], any H
and W, and gives ``fused`` in the same range (int8 models quantise and
dequantise inside).  Each model is run on the verification pairs (--ir_dir,
--vi_dir; upstream's 9 test pairs by default) against the Keras model
before it is written: float models must reach 60 dB PSNR, quantised ones
--min_psnr; a model below its floor is not written.  TFLite runs in LiteRT
(pip install 'stdfusion-tf[litert]'), ONNX in ONNX Runtime
('stdfusion-tf[onnx]').  int8 models are calibrated on --calibration_size
patches of the training pairs (--calibration_ir_dir, --calibration_vi_dir)
and, unless --nocalibration_invert, the same patches with inverted
intensities.

Same program: ``python -m stdfusion_tf.commands.export``.
"""

import os

import numpy as np
from absl import flags

from stdfusion_tf import presets

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "onnx"],
                  "What to export.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8"],
                  "none: float32; dynamic (tflite): int8 weights, float "
                  "activations; int8: int8 weights and activations "
                  "calibrated on training patches (tflite: LiteRT, with the "
                  "few layers that need it kept in float; onnx: ONNX "
                  "Runtime's static QDQ).")
flags.DEFINE_string("checkpoint", "checkpoint/Fusion.model-29",
                    "Weights: a .weights.h5 file, a TF1 checkpoint, or a "
                    "preset (a folder written by save_to_preset, or a "
                    "built-in name: " + ", ".join(presets.names()) + ").")
flags.DEFINE_string("output_dir", "export", "Where the models go.")
flags.DEFINE_bool("overwrite", False, "Replace a model already there.")
flags.DEFINE_string("ir_dir", "Test_ir", "Verification pairs (infrared).")
flags.DEFINE_string("vi_dir", "Test_vi", "Verification pairs (visible).")
flags.DEFINE_string("calibration_ir_dir", "Train_ir", "int8 calibration: "
                    "infrared training images.")
flags.DEFINE_string("calibration_vi_dir", "Train_vi", "int8 calibration: "
                    "visible training images.")
flags.DEFINE_integer("calibration_size", 32, "int8 calibration: number of "
                     "128x128 training patch pairs.", lower_bound=1)
flags.DEFINE_bool("calibration_invert", True, "int8 calibration: also the "
                  "same patch pairs with inverted intensities (255 - gray), "
                  "so that dark scenes, which the training images lack, "
                  "stay inside the calibrated ranges "
                  "(--nocalibration_invert: the patches only).")
flags.DEFINE_enum("int8_float", "auto", ["auto", "standard", "wide"],
                  "--quantize int8: which layers stay float.  standard: "
                  "reconstruction blocks 3-4 and block 2 but its 3x3 conv "
                  "(8 percent of the multiply-adds); wide: also block 1's "
                  "1x1 convs (19 percent): slower, closer to float32; auto: "
                  "standard for TFLite, wide for ONNX Runtime, whose int8 "
                  "kernels lose more (docs/deployment.md).")
flags.DEFINE_float("min_psnr", None, "Floor (dB, against the Keras model, "
                   "worst verification pair) below which a quantised model "
                   "is not written.  Default: 40 for dynamic, the int8 "
                   "floor of docs/deployment.md for int8.")
flags.DEFINE_enum("network", "stdfusion", ["stdfusion", "difn", "mrrn"],
                  "stdfusion: STDFusionNet.  difn / mrrn: a UMF-CMGR "
                  "fusion / registration network (--checkpoint: its .pth "
                  "or .weights.h5), float32 only, written as difn.<ext> / "
                  "mrrn.<ext>; see docs/deployment.md for which formats "
                  "convert.")
flags.DEFINE_string("size", None, "--network difn / mrrn only: H,W -- a "
                    "model for this one size (the verification pairs are "
                    "centre-cropped to it) instead of any size.  MRRN "
                    "converts to TFLite only this way (sides multiples "
                    "of 4).")
flags.DEFINE_string("mirror", None, "Local mirror of the upstream files.")


def target_name():
    from stdfusion_tf.export import FILE_NAMES

    if FLAGS.network != "stdfusion":
        if FLAGS.format == "saved_model" or FLAGS.quantize != "none":
            raise_input(f"--network {FLAGS.network}", "exported as float32 "
                        "tflite or onnx only")
        if FLAGS.checkpoint == flags.FLAGS["checkpoint"].default:
            raise_input(f"--network {FLAGS.network}", "give --checkpoint "
                        "(the network's .pth or .weights.h5)")
        return f"{FLAGS.network}.{FLAGS.format}"
    if FLAGS.format == "saved_model":
        if FLAGS.quantize != "none":
            raise_input(f"--quantize {FLAGS.quantize}",
                        "saved_model is float32 only")
        return "saved_model"
    key = (FLAGS.format, FLAGS.quantize)
    if key not in FILE_NAMES:
        raise_input(f"--quantize {FLAGS.quantize}",
                    f"not available for --format {FLAGS.format}")
    return FILE_NAMES[key]


def raise_input(what, problem):
    from stdfusion_tf.errors import InputError

    raise InputError(what, problem)


def main(argv):
    from stdfusion_tf import export, fileio
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.fusion import Fuser
    from stdfusion_tf.loading import ensure_defaults, load_model

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    name = target_name()
    target = os.path.join(FLAGS.output_dir, name)
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(
            FLAGS.output_dir):
        raise InputError(FLAGS.output_dir, "exists and is not a folder")
    fileio.check_folder(FLAGS.output_dir)
    if name == "saved_model":
        if os.path.exists(target) and not os.path.isdir(target):
            raise InputError(target, "exists and is not a folder")
    else:
        fileio.check_writable(FLAGS.output_dir, [target])
    if os.path.exists(target) and not FLAGS.overwrite:
        raise InputError(target, "exists (--overwrite to replace)")
    # the optional runtimes first: a missing one fails before the work
    try:
        if FLAGS.format == "tflite":
            export._need("ai_edge_litert.interpreter", "litert")
        if FLAGS.format == "onnx":
            export._need("tf2onnx", "onnx")
            export._need("onnxruntime", "onnx")
    except export.MissingPackage as exc:
        raise InputError(f"--format {FLAGS.format}", str(exc))

    if FLAGS.network != "stdfusion":
        return export_umf(target)
    ensure_defaults(FLAGS.checkpoint, FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.mirror)
    model = load_model(FLAGS.checkpoint)
    keras_fuser = Fuser(model)
    pairs = export.test_pairs(FLAGS.ir_dir, FLAGS.vi_dir)
    print(f"Keras reference on {len(pairs)} verification pairs ...",
          flush=True)
    reference = [keras_fuser(ir, vi) for ir, vi in pairs]

    if name == "saved_model":
        saved = export.export_saved_model(model, target)
        diff, low = export.verify(reference, export.SavedModelFuser(saved),
                                  pairs)
        print(f"SavedModel {saved}: max abs diff vs Keras on {len(pairs)} "
              f"pairs = {diff:.3e} (tolerance "
              f"{export.SAVED_MODEL_TOLERANCE:.0e})")
        if not diff <= export.SAVED_MODEL_TOLERANCE:
            raise InputError(saved, f"export differs from Keras by {diff:.3e}")
        return

    calibration = None
    if FLAGS.quantize == "int8":
        folders = [FLAGS.calibration_ir_dir, FLAGS.calibration_vi_dir]
        if folders == ["Train_ir", "Train_vi"] and \
                not any(os.path.exists(f) for f in folders):
            from stdfusion_tf import assets

            assets.fetch("train_images", root=".", mirror=FLAGS.mirror)
        calibration = export.calibration_patches(
            *folders, count=FLAGS.calibration_size,
            invert=FLAGS.calibration_invert)
        print(f"Calibrating on {FLAGS.calibration_size} training patch "
              f"pairs (128x128)"
              + (" and their intensity inversions"
                 if FLAGS.calibration_invert else "") + " ...", flush=True)

    floor = export.FLOAT_PSNR_FLOOR
    if FLAGS.quantize != "none":
        floor = FLAGS.min_psnr if FLAGS.min_psnr is not None else \
            export.QUANTIZED_PSNR_FLOORS[FLAGS.format, FLAGS.quantize]
    float_layers = {"standard": export.INT8_FLOAT_LAYERS,
                    "wide": export.INT8_FLOAT_LAYERS_WIDE}.get(
                        FLAGS.int8_float)
    if FLAGS.format == "tflite":
        content = export.convert_tflite(
            model, FLAGS.quantize, calibration, float_layers=float_layers)
        runner = export.LiteRTFuser
        runtime = "LiteRT"
    else:
        try:
            content = (export.convert_onnx_int8(model, calibration,
                                                float_layers=float_layers)
                       if FLAGS.quantize == "int8"
                       else export.convert_onnx(model))
        except export.ConversionError as exc:
            raise InputError(target, f"not written: {exc}")
        runner = export.OnnxFuser
        runtime = "ONNX Runtime"
    diff, low = export.write_verified(target, content, runner, reference,
                                      pairs, floor)
    kind = {"none": "float32", "dynamic": "dynamic-range quantised",
            "int8": "int8"}[FLAGS.quantize]
    print(f"{FLAGS.format} {kind} {target} ({len(content) / 1e6:.2f} MB): "
          f"vs Keras on {len(pairs)} pairs in {runtime}: max abs diff "
          f"{diff:.3e}, worst PSNR {low:.1f} dB (floor {floor:g} dB)")


def export_umf(target):
    """A UMF-CMGR network, float32, checked against Keras on the
    verification pairs (read as UMF-CMGR reads images: gray / 255)."""
    from stdfusion_tf import assets, export, images
    from stdfusion_tf.errors import InputError, one_line
    from stdfusion_tf.fusion import check_pairs
    from stdfusion_tf.umf import weights

    kind = FLAGS.network
    size = None
    if FLAGS.size:
        try:
            size = tuple(int(v) for v in FLAGS.size.split(","))
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise InputError(f"--size {FLAGS.size}", "expected H,W (two "
                             "positive integers)") from None
    if (FLAGS.ir_dir, FLAGS.vi_dir) == ("Test_ir", "Test_vi"):
        assets.ensure_test_data(root=".", mirror=FLAGS.mirror)
    _, model = weights.load_network(FLAGS.checkpoint, expect=kind)
    _, paths = check_pairs(FLAGS.ir_dir, FLAGS.vi_dir)
    # MRRN: the visible image as the target, the infrared as the source
    pairs = [tuple(images.read_gray(p).astype(np.float32) / 255.0
                   for p in ((i, v) if kind == "difn" else (v, i)))
             for i, v in paths]
    if size:
        pairs = [tuple(_centre_crop(x, size, p) for x in pair)
                 for pair, p in zip(pairs, paths)]
    reference = export.umf_reference(model, kind, size)
    reference = [reference(a, b) for a, b in pairs]
    try:
        content = export.convert_umf(model, kind, FLAGS.format, size)
    except Exception as exc:  # the converter's error: a page of MLIR
        hint = ("; a fixed --size (multiples of 4) converts"
                if kind == "mrrn" and not size else "")
        raise InputError(f"--network {kind} --format {FLAGS.format}",
                         "the converter cannot convert this network ("
                         f"{one_line(exc)[:160]}){hint}") from exc
    diff, low = export.write_verified(
        target, content, lambda path: export.UmfRunner(kind, path),
        reference, pairs, export.FLOAT_PSNR_FLOOR)
    print(f"{kind} {FLAGS.format} float32 {target} "
          f"({len(content) / 1e6:.2f} MB): vs Keras on {len(pairs)} pairs: "
          f"max abs diff {diff:.3e}, worst PSNR {low:.1f} dB "
          f"(floor {export.FLOAT_PSNR_FLOOR:g} dB)")


def _centre_crop(x, size, paths):
    from stdfusion_tf.errors import InputError

    h, w = size
    if x.shape[0] < h or x.shape[1] < w:
        raise InputError(paths[0], f"smaller than --size {h},{w}")
    r, c = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    return x[r:r + h, c:c + w]


def run():
    """Console script ``stdfusion-export``: ``--help`` shows this module's
    docstring and flags however it was started."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
