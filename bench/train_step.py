"""Training step: ours against upstream's TF1 graph step, same run.

    python bench/train_step.py [--runs 5] [--batch_size 32]

Both start from the same weights and run Adam steps on the same batches of
128x128 training patches (the first of upstream's training pairs, from
../shared, $STDFUSION_MIRROR or the pinned origin).  Ours:
stdfusion_tf.training.Trainer.train_step (tf.function under the default
tf.distribute strategy); baseline: stdfusion_tf.reference.ReferenceTraining
(tf.compat.v1 graph, AdamOptimizer.minimize, Session.run).  Steps are
interleaved; prints median / min / max seconds, patches/s and the ratio.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 5, "Timed steps of each (after 2 warm-ups).")
flags.DEFINE_integer("batch_size", 32, "Patches per step.")


def main(argv):
    del argv
    import numpy as np

    from stdfusion_tf import assets, data, training
    from stdfusion_tf.reference import ReferenceTraining

    root = assets.PROJECT_ROOT
    assets.fetch("train_images",
                 mirror=assets.mirror_or_shared("train_images"))
    folders = [root / f for f in data.TRAIN_FOLDERS]
    names = data.check_folders(folders)[0][:2]
    patches = [data.build_patches(f, names) for f in folders]
    b = FLAGS.batch_size
    batches = [tuple(p[i * b:(i + 1) * b] for p in patches)
               for i in range(FLAGS.runs + 2)]
    if len(batches[-1][0]) < b:
        sys.exit("not enough patches for the requested batches")
    ours = training.Trainer(tuple(np.concatenate([x[k] for x in batches])
                                  for k in range(3)), batch_size=b)
    init = {k: np.asarray(v) for k, v in ours.model.tf1_variables().items()}
    tf1 = ReferenceTraining(init)
    dataset = iter(ours.dataset(0))
    times = {"tf1": [], "ours": []}
    for i, batch in enumerate(batches):
        mine = next(dataset)
        start = time.perf_counter()
        tf1.step(*batch)
        t1 = time.perf_counter()
        ours.train_step(mine)
        t2 = time.perf_counter()
        if i >= 2:
            times["tf1"].append(t1 - start)
            times["ours"].append(t2 - t1)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, label in (("tf1", "TF1 graph + AdamOptimizer"),
                     ("ours", "ours (Trainer.train_step)")):
        v = times[k]
        print(f"{label:<28} {med[k]:6.3f} s [{min(v):.3f}-{max(v):.3f}]  "
              f"{b / med[k]:6.1f} patches/s")
    print(f"ratio TF1 / ours = {med['tf1'] / med['ours']:.2f} "
          f"(batch {b} of 128x128, {FLAGS.runs} steps each)")


if __name__ == "__main__":
    app.run(main)
