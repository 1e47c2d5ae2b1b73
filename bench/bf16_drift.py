"""How bfloat16 training parts from float32, against a float32 control
perturbed by the same order of error.

    python bench/bf16_drift.py [--steps 150] [--batch_size 8] \
        [--variants fp32,bf16,fp32noise0.01,bf16tanh32]

Every variant starts from the same init (Keras seed 1) and trains on the
same unshuffled batches of 128x128 training patches (upstream's first
training pairs, fetched as bench/train_step.py does).  Variants:

* ``fp32``: ``Trainer(precision="float32")``, the reference;
* ``bf16``: ``precision="bfloat16"`` (Keras mixed_bfloat16);
* ``fp32noiseR``: float32 with every gradient multiplied by
  ``1 + R N(0, 1)`` (element-wise): a control with ~R relative gradient
  error and no bf16 at all;
* ``bf16tanh32``: bf16 with the last block's tanh in float32 (bf16 rounds a
  saturated tanh to exactly 1, where its gradient 1 - y^2 becomes 0).

Prints, per variant, the first step whose loss is > 1 % off float32, the
25-step window means relative to float32, and the relative L2 distance of
all weights from float32's every 25 steps.  Runs the variants one after the
other (about 1-4 s per step each at batch 8 on a 2-core CPU).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 150, "Optimizer steps per variant.")
flags.DEFINE_integer("batch_size", 8, "Patches per step.")
flags.DEFINE_list("variants", ["fp32", "bf16", "fp32noise0.01", "bf16tanh32"],
                  "Variants to run (the first is the reference).")
WINDOW = 25


def run(variant, patches, steps, batch_size):
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import ops

    from stdfusion_tf import model as model_lib
    from stdfusion_tf import training

    noise = float(variant.split("noise")[1]) if "noise" in variant else 0.0

    class Perturbed(training.Trainer):
        def _replica_step(self, *batch):
            with tf.GradientTape() as tape:
                terms = self.replica_loss(*batch)
            variables = self.model.trainable_variables
            grads = tape.gradient(terms["total"], variables)
            if noise:
                grads = [g * (1 + noise * tf.random.normal(tf.shape(g), seed=7))
                         for g in grads]
            self.optimizer.apply_gradients(zip(grads, variables))
            return terms

    tanh = model_lib.ACTIVATIONS["tanh"]
    if "tanh32" in variant:
        model_lib.ACTIVATIONS["tanh"] = lambda x: ops.tanh(
            ops.cast(x, "float32"))
    try:
        keras.utils.set_random_seed(1)
        trainer = Perturbed(patches, batch_size=batch_size,
                            precision="bfloat16" if variant.startswith("bf16")
                            else "float32")
        losses, weights = [], []
        for i, batch in enumerate(trainer.dataset(0)):
            if i == steps:
                break
            losses.append(trainer.train_step(batch)["total"])
            if (i + 1) % WINDOW == 0:
                weights.append(np.concatenate(
                    [np.ravel(v.numpy())
                     for v in trainer.model.tf1_variables().values()]))
    finally:
        model_lib.ACTIVATIONS["tanh"] = tanh
    return np.array(losses), weights


def main(argv):
    del argv
    import numpy as np

    from stdfusion_tf import assets, data

    root = assets.PROJECT_ROOT
    assets.fetch("train_images",
                 mirror=assets.mirror_or_shared("train_images"))
    folders = [root / f for f in data.TRAIN_FOLDERS]
    names = data.check_folders(folders)[0]
    need = FLAGS.steps * FLAGS.batch_size
    patches, k = None, 1
    while patches is None or len(patches[0]) < need:
        if k > len(names):
            sys.exit(f"fewer than {need} training patches")
        patches = [data.build_patches(f, names[:k]) for f in folders]
        k += 1
    results = {v: run(v, patches, FLAGS.steps, FLAGS.batch_size)
               for v in FLAGS.variants}
    ref_loss, ref_w = results[FLAGS.variants[0]]
    for v, (loss, w) in results.items():
        rel = np.abs(loss - ref_loss) / ref_loss
        first = int(np.argmax(rel > 0.01)) + 1 if (rel > 0.01).any() else None
        n = len(loss) // WINDOW * WINDOW
        win = (loss[:n].reshape(-1, WINDOW).mean(1)
               / ref_loss[:n].reshape(-1, WINDOW).mean(1) - 1)
        drift = [np.linalg.norm(a - b) / np.linalg.norm(b)
                 for a, b in zip(w, ref_w)]
        print(f"{v:<14} first step >1% off: {first}; {WINDOW}-step windows "
              f"rel: {' '.join(f'{x:+.4f}' for x in win)}; weights rel L2: "
              f"{' '.join(f'{x:.1e}' for x in drift)}")
    print(f"(batch {FLAGS.batch_size} of 128x128, {FLAGS.steps} steps, "
          f"seed 1, same batches)")


if __name__ == "__main__":
    app.run(main)
