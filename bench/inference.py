"""Inference speed: our path against an upstream-style TF1 graph, same run.

    python bench/inference.py [--runs 7] [--sizes tno,roadscene,768,2048]

Baseline: the authors' test graph restated in tf.compat.v1 (placeholders
[1, None, None, 1], explicit padding + VALID convs, Session.run) with the
same released weights (stdfusion_tf.reference.ReferenceGraph).  Ours:
stdfusion_tf.fusion.Fuser (one tf.function for every size), in float32 and,
where the hardware has native bf16, in bfloat16.  Prints median / min / max
milliseconds over --runs timed runs after 2 warm-up runs, the ratio
TF1 / ours (> 1: ours is faster), GFLOP/s at 5.65e5 FLOP per pixel, and the
number of traced concrete functions (1 expected across all sizes).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)
from bench.timing import timed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 7, "Timed runs per case (after 2 warm-ups).")
flags.DEFINE_list("sizes", ["tno", "roadscene", "768", "2048"], "Cases.")
flags.DEFINE_string("checkpoint", None, "Weights (default: the released "
                    "jiayi-ma model-29 from ../shared or the pinned origin).")
flags.DEFINE_bool("bf16", True, "Also time --precision=bfloat16 where the "
                  "hardware supports it.")

FLOP_PER_PIXEL = 5.65e5  # 2 x 282,513 multiply-adds per output pixel


def cases(test_dir):
    import numpy as np

    from stdfusion_tf import images

    def pair(stem):
        return tuple(images.scale_in(images.read_gray(
            os.path.join(test_dir, d, f"{stem}.bmp"))) for d in
            ("Test_ir", "Test_vi"))

    ir8, vi8 = pair("08")
    big = (np.tile(ir8, (4, 3))[:2048, :2048], np.tile(vi8, (4, 3))[:2048, :2048])
    table = {"tno": ("TNO 620x450", pair("06")),
             "roadscene": ("RoadScene 537x306", pair("01")),
             "768": ("768x576", (ir8, vi8)),
             "2048": ("2048x2048", big)}
    return [table[s] for s in FLAGS.sizes]


def main(argv):
    del argv
    from stdfusion_tf import assets
    from stdfusion_tf.loading import load_model, read_weights
    from stdfusion_tf.fusion import Fuser, bf16_supported
    from stdfusion_tf.reference import ReferenceGraph

    mirror = assets.mirror_or_shared("jiayi-ma-29")
    checkpoint = FLAGS.checkpoint or assets.ensure_weights(mirror=mirror)
    test_dir = str(assets.PROJECT_ROOT)
    assets.ensure_test_data(mirror=mirror)

    arrays = read_weights(checkpoint)
    tf1 = ReferenceGraph(arrays)
    fp32 = Fuser(load_model(checkpoint))
    bf16 = (Fuser(load_model(checkpoint, dtype="mixed_bfloat16"))
            if FLAGS.bf16 and bf16_supported() else None)
    print(f"{'case':<18} {'TF1 graph ms':>22} {'ours fp32 ms':>22} "
          f"{'ratio':>6} {'GFLOP/s':>8}"
          + (f" {'ours bf16 ms':>22} {'bf16/fp32':>9}" if bf16 else ""))
    for label, (ir, vi) in cases(test_dir):
        flop = FLOP_PER_PIXEL * ir.size
        fns = [lambda: tf1(ir, vi), lambda: fp32(ir, vi)]
        if bf16:
            fns.append(lambda: bf16(ir, vi))
        base, ours, *rest = timed(fns, FLAGS.runs)
        line = (f"{label:<18} {base[0] * 1e3:8.1f} [{base[1] * 1e3:5.0f}-"
                f"{base[2] * 1e3:5.0f}] {ours[0] * 1e3:8.1f} [{ours[1] * 1e3:5.0f}-"
                f"{ours[2] * 1e3:5.0f}] {base[0] / ours[0]:6.2f} "
                f"{flop / ours[0] / 1e9:8.1f}")
        if bf16:
            fast = rest[0]
            line += (f" {fast[0] * 1e3:8.1f} [{fast[1] * 1e3:5.0f}-"
                     f"{fast[2] * 1e3:5.0f}] {ours[0] / fast[0]:9.2f}")
        print(line, flush=True)
    print(f"traced concrete functions: fp32 {fp32.traces}"
          + (f", bf16 {bf16.traces}" if bf16 else "")
          + " (1 each = no retracing across sizes)")
    if not bf16:
        print("bf16: not timed (" + ("--nobf16" if not FLAGS.bf16 else
                                     "no native bf16 on this machine") + ")")


if __name__ == "__main__":
    app.run(main)
