"""int8 TFLite recipes: worst-case PSNR on the test pairs and TNO42, and
speed against Keras float32, in one run.

    python bench/int8_accuracy.py [--runs 7] [--calibration_size 32] [--threads 2]
    python bench/int8_accuracy.py --variants default   # only the default recipe

Each variant is converted in the run (``stdfusion_tf.export``, the recipes
of ``stdfusion-export --format tflite --quantize int8``) and run in LiteRT
on upstream's 9 test pairs and TNO42's 42 pairs; the table gives, per set,
the worst pair's PSNR (dB, 0..255 scale, against the Keras float32 model)
and which pair it is, and the median.  Then Keras float32 and every variant
are timed interleaved (a, b, c, a, b, c, ...) on upstream's TNO pair 06
(620x450), batch 1: median seconds over --runs after 2 warm-up runs and
the ratio Keras float32 / variant (> 1: faster).  LiteRT runs with
--threads threads, Keras with TensorFlow's defaults.

Variants (--variants, comma-separated):

* ``default``: the command's defaults (training patches and their
  intensity inversions; ``export.INT8_FLOAT_LAYERS`` float);
* ``noinvert``: the same without the inverted patches
  (``--nocalibration_invert``);
* ``wide``: ``--int8_float wide`` (``export.INT8_FLOAT_LAYERS_WIDE``).

The calibration never sees the test pairs or TNO42: it uses the training
images only.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)
from bench.released import released_and_data  # noqa: E402
from bench.timing import timed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 7, "Timed runs per path.")
flags.DEFINE_integer("calibration_size", 32, "int8 calibration patches.")
flags.DEFINE_integer("threads", 2, "LiteRT threads.")
flags.DEFINE_string("variants", "default,noinvert,wide", "Which int8 "
                    "recipes (default, noinvert, wide).")
flags.DEFINE_string("checkpoint", None, "Weights (default: the released "
                    "jiayi-ma model-29).")


def _tno42(root):
    from stdfusion_tf import assets

    mirror = assets.mirror_or_shared("tno42")
    if mirror and os.path.isdir(os.path.join(mirror, "datasets", "TNO42")):
        base = mirror
    else:
        assets.fetch("tno42", root=root, mirror=mirror)
        base = root
    return [os.path.join(base, "datasets", "TNO42", d) for d in ("ir", "vi")]


def _names(ir_dir, vi_dir):
    from stdfusion_tf.fusion import check_pairs

    _, paths = check_pairs(ir_dir, vi_dir)
    return [os.path.splitext(os.path.basename(i))[0] for i, _ in paths]


def main(argv):
    del argv
    from stdfusion_tf import export
    from stdfusion_tf.fusion import Fuser
    from stdfusion_tf.loading import load_model

    checkpoint, root, train = released_and_data(FLAGS.checkpoint)
    sets = {"test pairs": [os.path.join(root, d)
                           for d in ("Test_ir", "Test_vi")],
            "TNO42": _tno42(root)}

    model = load_model(checkpoint)
    keras = Fuser(model)
    data = {}
    for label, dirs in sets.items():
        pairs = export.test_pairs(*dirs)
        data[label] = (_names(*dirs), pairs,
                       [keras(ir, vi) for ir, vi in pairs])
        print(f"Keras float32 on {len(pairs)} {label}", file=sys.stderr,
              flush=True)

    recipes = {"default": (True, None),
               "noinvert": (False, None),
               "wide": (True, export.INT8_FLOAT_LAYERS_WIDE)}
    variants = FLAGS.variants.split(",")
    fusers = []
    for name in variants:
        invert, layers = recipes[name]
        calibration = export.calibration_patches(
            *train, count=FLAGS.calibration_size, invert=invert)
        fusers.append(export.LiteRTFuser(content=export.convert_tflite(
            model, "int8", calibration, float_layers=layers),
            threads=FLAGS.threads))

    rows = []
    for name, fuser in zip(variants, fusers):
        cells = [name]
        for label, (names, pairs, reference) in data.items():
            values = [export.psnr(ref, fuser(ir, vi))
                      for ref, (ir, vi) in zip(reference, pairs)]
            k = min(range(len(values)), key=values.__getitem__)
            cells += [f"{values[k]:.2f} ({names[k]})",
                      f"{statistics.median(values):.2f}"]
        rows.append(cells)
        print(f"PSNR {name}", file=sys.stderr, flush=True)

    ir, vi = data["test pairs"][1][5]  # 06.bmp, TNO, 620x450
    assert ir.shape == (450, 620), ir.shape
    fns = [lambda: keras(ir, vi)] + [(lambda f=f: f(ir, vi)) for f in fusers]
    seconds = [m for m, _, _ in timed(fns, FLAGS.runs)]

    head = ["int8 variant"] + [f"{label}: {k}" for label in data
                               for k in ("worst dB (pair)", "median dB")] + [
        "620x450 s", "x Keras fp32"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    print("| Keras float32 | ref | ref | ref | ref | "
          f"{seconds[0]:.3f} | 1.00 |")
    for cells, s in zip(rows, seconds[1:]):
        print("| " + " | ".join(cells + [f"{s:.3f}",
                                          f"{seconds[0] / s:.2f}"]) + " |")
    print(f"\n{FLAGS.runs} timed runs, median; LiteRT {FLAGS.threads} "
          f"threads; {FLAGS.calibration_size} calibration patches; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at "
          "the end.")


if __name__ == "__main__":
    app.run(main)
