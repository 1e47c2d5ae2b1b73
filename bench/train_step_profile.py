"""Where the training step's time goes, op type by op type, float32 against
bfloat16 (``--precision bfloat16``'s set-up: mixed_bfloat16 with the output
block in float32), from TensorFlow's profiler trace.

    python bench/train_step_profile.py [--steps 3] [--batch_size 32] \
        [--precisions float32,bfloat16] [--top 18]

Each precision: 2 warm-up steps, then ``--steps`` traced steps of
``training.Trainer.train_step`` on random 128x128 patches in [-1, 1]
(timings do not depend on the values).  The trace's CPU op events
(``tf_op`` type, e.g. ``Conv2DBackpropFilter``, ``Cast``, ``LeakyReluGrad``)
are summed per op type; prints each type's seconds per step and share, for
both precisions side by side, and the share of the casts.  Op times are
thread times summed over the intra-op pool, so their total exceeds the wall
time of the step; the shares are what to compare.
"""

import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 3, "Traced steps per precision.")
flags.DEFINE_integer("batch_size", 32, "Patches per step.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Precisions.")
flags.DEFINE_integer("top", 18, "Op types to list.")


def op_times(logdir):
    """{op type: seconds} summed over the trace's host op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                            recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    op_type = re.compile(r"^_?[A-Z][A-Za-z0-9_]*$")
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        meta = plane.event_metadata
        for line in plane.lines:
            for ev in line.events:
                # op events are named "scope/op_name:OpType"
                name = meta[ev.metadata_id].name
                if ":" not in name or "::" in name:  # executor wrappers
                    continue
                op = name.rsplit(":", 1)[1]
                if op_type.match(op):
                    totals[op.replace("_MklNative", "").replace("_Mkl", "")
                           ] += ev.duration_ps * 1e-12
    return totals


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from stdfusion_tf import training

    b = FLAGS.batch_size
    rng = np.random.default_rng(0)
    patches = tuple(rng.uniform(-1, 1, (b * (FLAGS.steps + 2), 128, 128, 1))
                    .astype(np.float32) for _ in range(3))
    results, walls = {}, {}
    for precision in FLAGS.precisions:
        keras.utils.set_random_seed(1)
        trainer = training.Trainer(patches, batch_size=b, precision=precision)
        it = iter(trainer.dataset(0))
        for _ in range(2):
            trainer.train_step(next(it))
        logdir = tempfile.mkdtemp(prefix=f"profile_{precision}_")
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            trainer.train_step(next(it))
        walls[precision] = (time.perf_counter() - start) / FLAGS.steps
        tf.profiler.experimental.stop()
        results[precision] = {k: v / FLAGS.steps
                              for k, v in op_times(logdir).items()}
    ops = sorted(set().union(*results.values()),
                 key=lambda k: -max(r.get(k, 0) for r in results.values()))
    head = "".join(f"{p:>22}" for p in FLAGS.precisions)
    print(f"{'op type':<28}{head}   (s per step summed over threads, share)")
    for op in ops[:FLAGS.top]:
        cells = ""
        for p in FLAGS.precisions:
            t = results[p].get(op, 0.0)
            total = sum(results[p].values())
            cells += f"{t:12.3f} {100 * t / total:6.1f} %  "
        print(f"{op:<28}{cells}")
    for p in FLAGS.precisions:
        total = sum(results[p].values())
        casts = results[p].get("Cast", 0.0)
        print(f"{p}: wall {walls[p]:.3f} s per step (traced); op time "
              f"{total:.3f} s; casts {casts:.3f} s ({100 * casts / total:.1f} %)")
    print(f"(batch {b} of 128x128, {FLAGS.steps} traced steps each)")


if __name__ == "__main__":
    app.run(main)
