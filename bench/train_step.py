"""Training step: ours (float32 and bfloat16) against upstream's TF1 graph
step, same run, and the projected time of the 30-epoch recipe.

    python bench/train_step.py [--runs 5] [--batch_size 32] [--precisions float32,bfloat16] [--notf1]

A precision may name the float32 part of a bf16 network:
``bfloat16:output`` (only the output block in float32), ``bfloat16:none``;
plain ``bfloat16`` is what ``--precision bfloat16`` trains (from
reconstruction block1's ELU on in float32, docs/bf16.md).

Both start from the same weights and run Adam steps on the same batches of
128x128 training patches (the first of upstream's training pairs, from
../shared, $STDFUSION_MIRROR or the pinned origin).  Ours:
stdfusion_tf.training.Trainer.train_step (tf.function under the default
tf.distribute strategy); baseline: stdfusion_tf.reference.ReferenceTraining
(tf.compat.v1 graph, AdamOptimizer.minimize, Session.run).  Steps are
interleaved; prints median / min / max seconds, patches/s, the ratios and
the projected hours of 30 epochs of 216 steps (6921 patches / 32).
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
flags.DEFINE_bool("tf1", True, "Also time upstream's TF1 graph step.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Our precisions to "
                  "time (bfloat16 is skipped where it is not native).")
EPOCHS, STEPS_PER_EPOCH = 30, 216  # the released recipe: 6921 // 32


def main(argv):
    del argv
    import numpy as np

    from stdfusion_tf import assets, data, fusion, training
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
    precisions = [p for p in FLAGS.precisions
                  if p == "float32" or fusion.bf16_supported()]
    parts = {"none": False, "output": "output", "elu": "elu"}
    if len(precisions) < len(FLAGS.precisions):
        print("bfloat16 skipped: not native on this machine")
    stacked = tuple(np.concatenate([x[k] for x in batches]) for k in range(3))
    ours = {p: training.Trainer(
        stacked, batch_size=b, precision=p.split(":")[0],
        float32_output=parts[p.split(":")[1]] if ":" in p else None)
        for p in precisions}
    init = {k: np.asarray(v) for k, v in
            ours[precisions[0]].model.tf1_variables().items()}
    for trainer in ours.values():
        for k, v in trainer.model.tf1_variables().items():
            v.assign(init[k])
    tf1 = ReferenceTraining(init) if FLAGS.tf1 else None
    datasets = {p: iter(t.dataset(0)) for p, t in ours.items()}
    times = ({"tf1": []} if tf1 else {}) | {p: [] for p in precisions}
    for i, batch in enumerate(batches):
        if tf1:
            start = time.perf_counter()
            tf1.step(*batch)
            if i >= 2:
                times["tf1"].append(time.perf_counter() - start)
        for p, trainer in ours.items():
            mine = next(datasets[p])
            start = time.perf_counter()
            trainer.train_step(mine)
            if i >= 2:
                times[p].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = ({"tf1": "TF1 graph + AdamOptimizer"} if tf1 else {}) | {
        p: f"ours {p}" for p in precisions}
    for k, label in labels.items():
        v = times[k]
        hours = med[k] * EPOCHS * STEPS_PER_EPOCH / 3600
        print(f"{label:<28} {med[k]:6.3f} s [{min(v):.3f}-{max(v):.3f}]  "
              f"{b / med[k]:6.1f} patches/s  30 epochs ~{hours:4.1f} h")
    for p in precisions if tf1 else []:
        print(f"ratio TF1 / ours {p} = {med['tf1'] / med[p]:.2f}")
    for p in precisions:
        if p != "float32" and "float32" in med:
            print(f"ratio float32 / {p} = {med['float32'] / med[p]:.2f}")
    print(f"(batch {b} of 128x128, {FLAGS.runs} steps each, interleaved)")


if __name__ == "__main__":
    app.run(main)
