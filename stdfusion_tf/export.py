"""Export STDFusionNet as a TensorFlow SavedModel and a TFLite model.

    python -m stdfusion_tf.export --format=saved_model --output_dir export
    python -m stdfusion_tf.export --format=tflite --output_dir export --quantize

SavedModel (Keras ``ExportArchive``) signatures, any image size:

* ``serving_default``: ``ir``, ``vi`` float32 [N, H, W, 1] in [-1, 1]
  -> ``fused`` float32 [N, H, W, 1] in [-1, 1];
* ``fuse_uint8``: ``ir``, ``vi`` uint8 [H, W] (0..255 gray)
  -> ``fused_minmax`` (upstream's min-max stretched saving) and
  ``fused_clip`` (``clip(round((y + 1) * 127.5))``), uint8 [H, W].

``--format=tflite`` writes the SavedModel and converts its float signature
(``stdfusion.tflite``, float32; ``--quantize`` adds a dynamic-range
quantised ``stdfusion_dynamic_range.tflite``).  Each export is run against
the Keras model on the 9 upstream test pairs in the same run: SavedModel max
abs diff <= 1e-5, TFLite float <= 1e-4; the quantised model's PSNR is
reported.
"""

import os

import numpy as np

SAVED_MODEL_TOLERANCE = 1e-5
TFLITE_TOLERANCE = 1e-4


def _uint8_endpoint(model):
    import tensorflow as tf

    def fuse_uint8(ir, vi):
        x = [tf.cast(v, tf.float32)[None, :, :, None] / 127.5 - 1.0
             for v in (ir, vi)]
        y = (tf.cast(model((x[0], x[1]), training=False), tf.float32)[0, :, :, 0]
             + 1.0) * 127.5
        lo, hi = tf.reduce_min(y), tf.reduce_max(y)
        scale = 255.0 / tf.where(hi > lo, hi - lo, 1.0)
        minmax = tf.cast(tf.clip_by_value((y - lo) * scale, 0.0, 255.0) + 0.5,
                         tf.uint8)  # scipy.misc.bytescale
        clip = tf.cast(tf.clip_by_value(tf.round(y), 0.0, 255.0), tf.uint8)
        return {"fused_minmax": minmax, "fused_clip": clip}

    return fuse_uint8


def export_saved_model(model, path):
    """Write the SavedModel into a temporary folder beside ``path``, then
    swap it in: a failed export leaves ``path`` as it was."""
    import shutil
    import tempfile

    from .fileio import write_error

    path = os.path.abspath(str(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-saved_model-",
                           dir=os.path.dirname(path))
    try:
        try:
            _write_saved_model(model, tmp)
        except OSError as exc:
            raise write_error(path, exc) from exc
        except Exception as exc:  # TF's file errors are not OSErrors
            if "space" in str(exc).lower() or type(exc).__name__ in (
                    "ResourceExhaustedError", "PermissionDeniedError",
                    "FailedPreconditionError", "InternalError"):
                raise write_error(path, exc) from exc
            raise
        if os.path.isdir(path):
            old = tmp + "-old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_saved_model(model, path):
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    f32 = tf.TensorSpec([None, None, None, 1], tf.float32)
    u8 = tf.TensorSpec([None, None], tf.uint8)
    archive.add_endpoint(
        "serving_default",
        lambda ir, vi: {"fused": tf.cast(model((ir, vi), training=False),
                                         tf.float32)},
        input_signature=[tf.TensorSpec.from_spec(f32, "ir"),
                         tf.TensorSpec.from_spec(f32, "vi")])
    archive.add_endpoint(
        "fuse_uint8", _uint8_endpoint(model),
        input_signature=[tf.TensorSpec.from_spec(u8, "ir"),
                         tf.TensorSpec.from_spec(u8, "vi")])
    archive.write_out(str(path), verbose=False)
    return str(path)


def convert_tflite(saved_model, path, quantize=False):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=["serving_default"])
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = converter.convert()
    from .fileio import atomic_output

    with atomic_output(path, suffix=".tflite") as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return str(path)


class TFLiteFuser:
    """Run a converted model on [H, W] float pairs (inputs resized per image)."""

    def __init__(self, path):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=str(path))
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def __call__(self, ir, vi):
        out = self.runner(ir=np.asarray(ir, np.float32)[None, :, :, None],
                          vi=np.asarray(vi, np.float32)[None, :, :, None])
        return out["fused"][0, :, :, 0]


def psnr(a, b):
    """PSNR (dB) between two fused images in [-1, 1], on the 0..255 scale."""
    mse = np.mean(((a - b) * 127.5) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))


def verify(reference, candidate, pairs):
    """(max abs diff, min PSNR) of ``candidate`` against ``reference`` over
    the [(ir, vi)] float pairs."""
    worst, low = 0.0, float("inf")
    for ir, vi in pairs:
        a, b = reference(ir, vi), candidate(ir, vi)
        worst = max(worst, float(np.abs(a - b).max()))
        low = min(low, psnr(a, b))
    return worst, low


def test_pairs(ir_dir, vi_dir):
    from . import images
    from .fusion import check_pairs

    _, paths = check_pairs(ir_dir, vi_dir)
    return [(images.scale_in(images.read_gray(i)),
             images.scale_in(images.read_gray(v))) for i, v in paths]


def main(argv):
    import tensorflow as tf
    from absl import flags

    from . import fileio
    from .loading import ensure_defaults, load_model
    from .errors import InputError
    from .fusion import Fuser

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    fileio.check_writable(FLAGS.output_dir, [
        os.path.join(FLAGS.output_dir, n) for n in (
            "stdfusion.tflite", "stdfusion_dynamic_range.tflite")])
    if os.path.isdir(FLAGS.output_dir) and os.listdir(FLAGS.output_dir) \
            and not FLAGS.overwrite:
        raise InputError(FLAGS.output_dir, "exists and is not empty "
                         "(--overwrite to replace)")
    saved_model_dir = os.path.join(FLAGS.output_dir, "saved_model")
    if os.path.exists(saved_model_dir) and not os.path.isdir(saved_model_dir):
        raise InputError(saved_model_dir, "exists and is not a folder")
    ensure_defaults(FLAGS.checkpoint, FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.mirror)
    model = load_model(FLAGS.checkpoint)
    keras_fuser = Fuser(model)
    pairs = test_pairs(FLAGS.ir_dir, FLAGS.vi_dir)

    saved = export_saved_model(model, os.path.join(FLAGS.output_dir,
                                                   "saved_model"))
    loaded = tf.saved_model.load(saved)
    serve = loaded.signatures["serving_default"]
    diff, _ = verify(keras_fuser, lambda ir, vi: serve(
        ir=tf.constant(ir[None, :, :, None]),
        vi=tf.constant(vi[None, :, :, None]))["fused"].numpy()[0, :, :, 0],
        pairs)
    print(f"SavedModel {saved}: max abs diff vs Keras on {len(pairs)} pairs "
          f"= {diff:.3e} (tolerance {SAVED_MODEL_TOLERANCE:.0e})")
    if not diff <= SAVED_MODEL_TOLERANCE:
        raise InputError(saved, f"export differs from Keras by {diff:.3e}")

    if FLAGS.format == "tflite":
        path = convert_tflite(saved, os.path.join(FLAGS.output_dir,
                                                  "stdfusion.tflite"))
        diff, low = verify(keras_fuser, TFLiteFuser(path), pairs)
        print(f"TFLite float32 {path}: max abs diff = {diff:.3e} "
              f"(tolerance {TFLITE_TOLERANCE:.0e}), min PSNR {low:.1f} dB")
        if not diff <= TFLITE_TOLERANCE:
            raise InputError(path, f"TFLite model differs by {diff:.3e}")
        if FLAGS.quantize:
            path = convert_tflite(saved, os.path.join(
                FLAGS.output_dir, "stdfusion_dynamic_range.tflite"),
                quantize=True)
            diff, low = verify(keras_fuser, TFLiteFuser(path), pairs)
            print(f"TFLite dynamic-range quantised {path}: max abs diff = "
                  f"{diff:.3e}, min PSNR vs float32 {low:.1f} dB")


if __name__ == "__main__":
    from absl import flags

    from . import cli

    flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"],
                      "What to export (tflite also writes the SavedModel "
                      "it is converted from).")
    flags.DEFINE_string("checkpoint", "checkpoint/Fusion.model-29",
                        "Weights (.weights.h5, or TF1 checkpoint).")
    flags.DEFINE_string("output_dir", "export", "Where the exports go.")
    flags.DEFINE_bool("quantize", False, "Also write a dynamic-range "
                      "quantised TFLite model and report its PSNR.")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir.")
    flags.DEFINE_string("ir_dir", "Test_ir", "Verification pairs (infrared).")
    flags.DEFINE_string("vi_dir", "Test_vi", "Verification pairs (visible).")
    flags.DEFINE_string("mirror", None, "Local mirror of the upstream files.")
    cli.run(main)
