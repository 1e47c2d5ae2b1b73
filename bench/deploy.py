"""Deployment paths side by side: speed and PSNR against Keras float32.

    python bench/deploy.py [--runs 7] [--calibration_size 32] [--threads 2]
    python bench/deploy.py --models_dir export   # the files stdfusion-export wrote

Keras float32 / bfloat16 (stdfusion_tf.fusion.Fuser), TFLite float /
dynamic-range / int8 in LiteRT, ONNX Runtime float / static QDQ int8, on
upstream's TNO pair 06 (620x450) and its 256x256 centre crop, batch 1.
The models are built in the run (stdfusion_tf.export, the same recipes as
stdfusion-export) and timed interleaved (a, b, c, a, b, c, ...: load drift
hits every path alike): median seconds over --runs after 2 warm-up runs,
the ratio Keras float32 / path (> 1: faster) and the PSNR (dB, 0..255
scale) of each path's output against Keras float32.  LiteRT and ONNX
Runtime run with --threads intra-op threads; Keras with TensorFlow's
defaults.  Needs the [litert] and [onnx] extras; paths whose package is
missing are left out.  --markdown prints the table as Markdown.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)
from bench.released import released_and_data  # noqa: E402
from bench.timing import timed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 7, "Timed runs per path and size.")
flags.DEFINE_integer("calibration_size", 32, "int8 calibration patches.")
flags.DEFINE_bool("calibration_invert", True, "int8 calibration: also the "
                  "patches with inverted intensities (the export default).")
flags.DEFINE_integer("threads", 2, "LiteRT / ONNX Runtime threads.")
flags.DEFINE_string("checkpoint", None, "Weights (default: the released "
                    "jiayi-ma model-29).")
flags.DEFINE_string("models_dir", None, "Time the models stdfusion-export "
                    "wrote there (stdfusion.tflite, stdfusion_dynamic_range"
                    ".tflite, stdfusion_int8.tflite, stdfusion.onnx, "
                    "stdfusion_int8.onnx; those present) instead of "
                    "converting them in the run.")


def main(argv):
    del argv
    import importlib.util

    from stdfusion_tf import export
    from stdfusion_tf.fusion import Fuser, bf16_supported
    from stdfusion_tf.loading import load_model

    checkpoint, root, train = released_and_data(FLAGS.checkpoint)
    pairs = export.test_pairs(os.path.join(root, "Test_ir"),
                              os.path.join(root, "Test_vi"))
    ir, vi = pairs[5]  # 06.bmp, TNO, 620x450
    assert ir.shape == (450, 620), ir.shape
    r, c = (450 - 256) // 2, (620 - 256) // 2
    cases = [("620x450 (TNO 06)", (ir, vi)),
             ("256x256 crop", (ir[r:r + 256, c:c + 256],
                               vi[r:r + 256, c:c + 256]))]

    model = load_model(checkpoint)
    paths = [("Keras float32", Fuser(model))]
    if bf16_supported():
        paths.append(("Keras bfloat16", Fuser(load_model(
            checkpoint, dtype="mixed_bfloat16"))))
    calibration = None if FLAGS.models_dir else export.calibration_patches(
        *train, count=FLAGS.calibration_size,
        invert=FLAGS.calibration_invert)
    t = FLAGS.threads
    if FLAGS.models_dir:
        for label, name, runner in (
                ("TFLite float32 (LiteRT)", "stdfusion.tflite",
                 export.LiteRTFuser),
                ("TFLite dynamic-range (LiteRT)",
                 "stdfusion_dynamic_range.tflite", export.LiteRTFuser),
                ("TFLite int8 (LiteRT)", "stdfusion_int8.tflite",
                 export.LiteRTFuser),
                ("ONNX Runtime float32", "stdfusion.onnx", export.OnnxFuser),
                ("ONNX Runtime int8 (QDQ)", "stdfusion_int8.onnx",
                 export.OnnxFuser)):
            path = os.path.join(FLAGS.models_dir, name)
            if os.path.isfile(path):
                paths.append((label, runner(path, threads=t)))
    elif importlib.util.find_spec("ai_edge_litert"):
        for label, q in (("float32", "none"), ("dynamic-range", "dynamic"),
                         ("int8", "int8")):
            content = export.convert_tflite(
                model, q, calibration if q == "int8" else None)
            paths.append((f"TFLite {label} (LiteRT)",
                          export.LiteRTFuser(content=content, threads=t)))
    if not FLAGS.models_dir and importlib.util.find_spec("onnxruntime") \
            and importlib.util.find_spec("tf2onnx"):
        content = export.convert_onnx(model)
        paths.append(("ONNX Runtime float32",
                      export.OnnxFuser(content=content, threads=t)))
        paths.append(("ONNX Runtime int8 (QDQ)", export.OnnxFuser(
            content=export.convert_onnx_int8(model, calibration),
            threads=t)))

    rows = {}
    for case, (a, b) in cases:
        reference = paths[0][1](a, b)
        fns = [(lambda f=f: f(a, b)) for _, f in paths]
        seconds = [m for m, _, _ in timed(fns, FLAGS.runs)]
        for (label, f), s in zip(paths, seconds):
            rows.setdefault(label, []).append(
                (s, seconds[0] / s, export.psnr(reference, f(a, b))))
        print(f"timed {case}", file=sys.stderr, flush=True)

    head = ["path"] + [f"{case}: {k}" for case, _ in cases
                       for k in ("s", "x fp32", "PSNR dB")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, cells in rows.items():
        out = [label]
        for s, ratio, p in cells:
            out += [f"{s:.3f}", f"{ratio:.2f}",
                    "ref" if p == float("inf") and label == paths[0][0]
                    else f"{p:.1f}"]
        print("| " + " | ".join(out) + " |")
    print(f"\n{FLAGS.runs} timed runs, median; LiteRT / ONNX Runtime "
          f"{t} threads; {FLAGS.calibration_size} calibration patches"
          f"{' and their inversions' if FLAGS.calibration_invert else ''}; "
          f"{os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    app.run(main)
