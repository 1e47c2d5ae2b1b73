"""Where the STDFusionNet training step's time goes (one step profiled):
the parts timed as separate tf.functions, same run, same batch.

    python bench/train_step_parts.py [--runs 5] [--batch_size 32] [--precision float32]

Parts: the forward pass; forward + the loss (Eq. (2)-(6), Sobel gradients
included); the loss and its gradient alone, on a fixed fused image; forward +
loss + backward (the gradients, no update); the full step of
``training.Trainer`` (with the Adam update).  Prints min / median seconds,
each part's share of the full step and the backward / forward ratio.  The
batch is random 128 x 128 patches in [-1, 1] (timings do not depend on the
values).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 5, "Timed calls of each part (after 1 warm-up).")
flags.DEFINE_integer("batch_size", 32, "Patches per step.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "Compute precision of the step.")


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from stdfusion_tf import fusion, training
    from stdfusion_tf.losses import fusion_loss

    fusion.check_precision(FLAGS.precision)
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, 128, 128, 1)
    ir, vi, mask = (rng.uniform(-1, 1, shape).astype(np.float32)
                    for _ in range(3))
    trainer = training.Trainer((ir, vi, mask), batch_size=FLAGS.batch_size,
                               precision=FLAGS.precision)
    model = trainer.model
    batch = tuple(tf.constant(a) for a in (ir, vi, mask))

    def fused_of(ir, vi):
        return tf.cast(model((ir, vi), training=True), tf.float32)

    @tf.function
    def forward(ir, vi, mask):
        return fused_of(ir, vi)

    @tf.function
    def forward_loss(ir, vi, mask):
        return fusion_loss(fused_of(ir, vi), ir, vi, mask)["total"]

    fixed = forward(*batch)

    @tf.function
    def loss_alone(ir, vi, mask):
        with tf.GradientTape() as tape:
            tape.watch(fixed)
            loss = fusion_loss(fixed, ir, vi, mask)["total"]
        return tape.gradient(loss, fixed)

    @tf.function
    def backward(ir, vi, mask):
        with tf.GradientTape() as tape:
            loss = fusion_loss(fused_of(ir, vi), ir, vi, mask)["total"]
        return tape.gradient(loss, model.trainable_variables)

    parts = [("forward", forward), ("forward + loss", forward_loss),
             ("loss + its gradient alone", loss_alone),
             ("forward + loss + backward", backward),
             ("full step (with Adam)", trainer._step)]
    times = {name: [] for name, _ in parts}
    for _, fn in parts:  # warm-up (tracing)
        fn(*batch)
    for _ in range(FLAGS.runs):  # interleaved
        for name, fn in parts:
            start = time.perf_counter()
            out = fn(*batch)
            tf.nest.map_structure(lambda t: t.numpy(), out)
            times[name].append(time.perf_counter() - start)
    full = statistics.median(times["full step (with Adam)"])
    print(f"STDFusionNet training step parts, batch {FLAGS.batch_size} x "
          f"128^2, {FLAGS.precision}, {FLAGS.runs} runs (median / min s, "
          "share of the full step's median):")
    for name, _ in parts:
        med = statistics.median(times[name])
        print(f"  {name:28s} {med:7.3f} / {min(times[name]):7.3f} s  "
              f"{100 * med / full:5.1f} %")
    fwd = statistics.median(times["forward"])
    bwd = statistics.median(times["forward + loss + backward"]) - fwd
    print(f"  backward / forward: {bwd / fwd:.2f}  (the FLOPs ratio of a "
          "convolution's two gradients to its forward is about 2)")


if __name__ == "__main__":
    app.run(main)
