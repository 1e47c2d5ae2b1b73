"""Where bfloat16 training loses what float32 keeps: per-layer gradient
agreement against float32 at the same weights and batch, and the output's
saturation, for plain ``mixed_bfloat16`` and for the fix (the output block
in float32, ``STDFusionNet(float32_output=True)``).

    python bench/bf16_diagnosis.py [--steps 100] [--batch_size 8] \
        [--probe_every 10] [--weights weights/retrained_30ep.weights.h5] \
        [--json results/bf16_diagnosis.json]

Two parts, both on upstream's training patches (in stored order):

1. **A trained point.**  At the given weights (default: the project's
   30-epoch float32 retrain, whose output uses the full [-1, 1] range) and
   one batch, the gradient of the loss for float32, plain bf16 and bf16 with
   a float32 output block; per conv layer: cosine and sign agreement with
   float32 (Adam's first update is ``lr sign(g)``, so the sign agreement is
   the update agreement), and the fraction of output pixels at exactly
   +-1.
2. **Training from the seed-1 init** (the released recipe's
   initialisation, Adam 1e-3, TF1 epsilon) for ``--steps`` steps, once per
   bf16 variant; every step the fraction of output pixels whose tanh is
   exactly +-1 in bf16 (their gradient ``1 - y^2`` is then exactly 0), every
   ``--probe_every`` steps the per-layer gradient agreement with float32 at
   the variant's own weights and batch.

Variants: ``bf16`` (whole network in bf16, as ``--precision bfloat16`` was),
``bf16fix`` (what ``--precision bfloat16`` is now).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 100, "Training steps per variant (0: part 1 only).")
flags.DEFINE_integer("batch_size", 8, "Patches per step.")
flags.DEFINE_integer("probe_every", 10, "Steps between gradient probes.")
flags.DEFINE_string("weights", "weights/retrained_30ep.weights.h5",
                    "Trained weights of part 1 ('' to skip part 1).")
flags.DEFINE_list("shifts", ["-4", "-3", "-2", "0", "2", "3", "4"],
                  "Part 1: shifts of the output bias (pre-tanh) to try.")
flags.DEFINE_list("variants", ["bf16", "bf16fix"], "Variants of part 2.")
flags.DEFINE_list("extra_probes", [], "More variants probed at the "
                  "trajectory's weights (e.g. bf16elu32).")
flags.DEFINE_string("json", "", "Also write the figures to this JSON file.")

VARIANTS = {"fp32": ("float32", False), "bf16": ("bfloat16", False),
            "bf16fix": ("bfloat16", "output"),
            # + block1's ELU and reconstruction blocks 2-3 in float32 (what
            # --precision bfloat16 trains with)
            "bf16elu32": ("bfloat16", "elu")}


def make_trainer(variant, patches, batch_size):
    import tensorflow as tf

    from stdfusion_tf import training

    precision, f32_out = VARIANTS[variant]

    class Probe(training.Trainer):
        """Adds the saturation of the output to the step's terms."""

        def replica_loss(self, ir, vi, mask):
            out = self.model((ir, vi), training=True)
            fused = tf.cast(out, tf.float32)
            terms = training.fusion_loss(fused, ir, vi, mask, self.mask_norm,
                                         global_batch_size=self.batch_size)
            in_bf16 = tf.cast(tf.cast(out, tf.bfloat16), tf.float32)
            terms["sat_bf16"] = tf.reduce_mean(
                tf.cast(tf.abs(in_bf16) >= 1.0, tf.float32))
            terms["sat_own"] = tf.reduce_mean(
                tf.cast(tf.abs(fused) >= 1.0, tf.float32))
            return terms

    trainer = Probe(patches, batch_size=batch_size, precision=precision,
                    float32_output=f32_out)
    variables = list(trainer.model.tf1_variables().values())

    @tf.function
    def grads(ir, vi, mask):
        with tf.GradientTape() as tape:
            terms = trainer.replica_loss(ir, vi, mask)
        return terms, tape.gradient(terms["total"], variables)

    trainer.grads = grads
    return trainer


def set_weights(trainer, arrays):
    for k, v in trainer.model.tf1_variables().items():
        v.assign(arrays[k])


def get_weights(trainer):
    import numpy as np

    return {k: np.asarray(v.numpy())
            for k, v in trainer.model.tf1_variables().items()}


def agreement(names, ref, other):
    """Per weight (``.../w``) and bias: cosine, sign agreement, exact-zero
    fractions, relative L2 error."""
    import numpy as np

    rows = {}
    for name, a, b in zip(names, ref, other):
        a = np.ravel(np.asarray(a, np.float64))
        b = np.ravel(np.asarray(b, np.float64))
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        rows[name] = {
            "cos": float(a @ b / (na * nb)) if na and nb else 0.0,
            "sign": float(np.mean(np.sign(a) == np.sign(b))),
            "rel": float(np.linalg.norm(a - b) / na) if na else float("inf"),
            "zero_ref": float(np.mean(a == 0)),
            "zero": float(np.mean(b == 0)),
        }
    return rows


def probe(trainers, batch, names):
    """Gradients of every trainer on ``batch`` at its current weights;
    agreement of each with the first (float32)."""
    results = {}
    outs = {v: t.grads(*batch) for v, t in trainers.items()}
    ref_terms, ref = outs["fp32"]
    for v, (terms, g) in outs.items():
        results[v] = {"loss": float(terms["total"]),
                      "sat_bf16": float(terms["sat_bf16"]),
                      "sat_own": float(terms["sat_own"]),
                      "layers": agreement(names, ref, g)}
    return results


def summary(layers, keys=("cos", "sign")):
    """Worst layer and the output block's last conv."""
    worst = min(layers, key=lambda k: layers[k]["cos"])
    last = "reconstruction_network/block4/conv3/w"
    bias = "reconstruction_network/block4/conv3/b"
    return (f"worst {worst} cos {layers[worst]['cos']:.4f}; "
            f"block4/conv3/w cos {layers[last]['cos']:.4f} sign "
            f"{layers[last]['sign']:.3f}; block4/conv3/b cos "
            f"{layers[bias]['cos']:+.3f}")


def main(argv):
    del argv
    import keras
    import numpy as np

    from stdfusion_tf import assets, data
    from stdfusion_tf.loading import read_weights

    root = assets.PROJECT_ROOT
    assets.fetch("train_images",
                 mirror=assets.mirror_or_shared("train_images"))
    folders = [root / f for f in data.TRAIN_FOLDERS]
    names_img = data.check_folders(folders)[0]
    need = max(FLAGS.steps, 1) * FLAGS.batch_size
    patches, k = None, 1
    while patches is None or len(patches[0]) < need:
        if k > len(names_img):
            sys.exit(f"fewer than {need} training patches")
        patches = [data.build_patches(f, names_img[:k]) for f in folders]
        k += 1
    b = FLAGS.batch_size
    report = {"batch_size": b, "steps": FLAGS.steps}

    keras.utils.set_random_seed(1)
    probes = {v: make_trainer(v, patches, b)
              for v in ["fp32", "bf16", "bf16fix"] + FLAGS.extra_probes}
    names = list(probes["fp32"].model.tf1_variables())
    init = get_weights(probes["fp32"])

    if FLAGS.weights:
        arrays = read_weights(FLAGS.weights)
        for t in probes.values():
            set_weights(t, arrays)
        # a batch with dark and bright regions: 32 patches from the middle
        mid = len(patches[0]) // 2
        batch = tuple(p[mid:mid + 32] for p in patches)
        res = probe(probes, batch, names)
        report["trained_point"] = {"weights": FLAGS.weights, **res}
        print(f"== trained point ({FLAGS.weights}, 32 patches)")
        for v, r in res.items():
            print(f"{v:<8} loss {r['loss']:.4f}  output at exactly +-1 in "
                  f"bf16: {r['sat_bf16']:.4f} (own dtype {r['sat_own']:.4f})"
                  f"  {summary(r['layers'])}")

    if FLAGS.weights and FLAGS.shifts:
        # The same point with the output pushed towards -1 / +1: the output
        # block's bias shifted by each of --shifts (pre-tanh units).
        bias = "reconstruction_network/block4/conv3/b"
        mid = len(patches[0]) // 2
        batch = tuple(p[mid:mid + FLAGS.batch_size] for p in patches)
        report["shifted"] = {}
        print(f"== the same weights, output bias shifted ({b} patches): "
              "block4/conv3/b gradient per variant, and its cosine with "
              "float32 over the output block's 7 variables")
        block4 = [i for i, n in enumerate(names)
                  if n.startswith("reconstruction_network/block4/")]
        for shift in FLAGS.shifts:
            shifted = dict(arrays)
            shifted[bias] = arrays[bias] + float(shift)
            for t in probes.values():
                set_weights(t, shifted)
            outs = {v: t.grads(*batch) for v, t in probes.items()}
            ref = np.concatenate([np.ravel(outs["fp32"][1][i]) for i in block4])
            row = {}
            for v, (terms, g) in outs.items():
                mine = np.concatenate([np.ravel(g[i]) for i in block4])
                cos = float(ref @ mine / (np.linalg.norm(ref)
                                          * np.linalg.norm(mine) + 1e-300))
                row[v] = {"sat_bf16": float(terms["sat_bf16"]),
                          "sat_own": float(terms["sat_own"]),
                          "loss": float(terms["total"]),
                          "bias_grad": float(np.ravel(g[names.index(bias)])[0]),
                          "block4_cos": cos}
            report["shifted"][float(shift)] = row
            print(f"shift {float(shift):+5.1f}: " + "; ".join(
                f"{v} sat {r['sat_own']:.3f} dL/db {r['bias_grad']:+.2e} "
                f"cos {r['block4_cos']:+.3f}" for v, r in row.items()),
                flush=True)

    report["training"] = {}
    for variant in (FLAGS.variants if FLAGS.steps else []):
        keras.utils.set_random_seed(1)
        trainer = make_trainer(variant, patches, b)
        set_weights(trainer, init)
        rows, probes_at = [], {}
        print(f"== {variant}: {FLAGS.steps} steps from the seed-1 init, "
              f"batch {b}")
        for step, batch in enumerate(trainer.dataset(0)):
            if step == FLAGS.steps:
                break
            if step % FLAGS.probe_every == 0:
                w = get_weights(trainer)
                for t in probes.values():
                    set_weights(t, w)
                local = trainer.batch_arrays(0, step)
                res = probe({"fp32": probes["fp32"], variant: probes[variant]}
                            | {v: probes[v] for v in FLAGS.extra_probes},
                            local, names)
                probes_at[step] = res
                r = res[variant]
                print(f"step {step:4d} loss {r['loss']:.4f} (fp32 at same "
                      f"weights {res['fp32']['loss']:.4f}) sat {r['sat_bf16']:.4f} "
                      f"(fp32 output that bf16 would round to +-1: "
                      f"{res['fp32']['sat_bf16']:.4f})  {summary(r['layers'])}",
                      flush=True)
            terms = trainer.train_step(batch)
            rows.append({k: terms[k] for k in ("total", "sat_bf16",
                                               "sat_own", "vi_pixel")})
        report["training"][variant] = {"steps": rows, "probes": probes_at}
        totals = np.array([r["total"] for r in rows])
        w = FLAGS.probe_every
        n = len(totals) // w * w
        print(f"{variant} window means of the loss: "
              + " ".join(f"{x:.4f}" for x in totals[:n].reshape(-1, w).mean(1)))
    if FLAGS.json:
        os.makedirs(os.path.dirname(FLAGS.json) or ".", exist_ok=True)
        with open(FLAGS.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
