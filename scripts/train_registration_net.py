"""Train the learned dense refinement (stdfusion_tf.registration.refine_net)
on synthetic deformations of aligned RoadScene pairs; resumable.

    python scripts/train_registration_net.py --out runs/regnet \
        [--steps 20000] [--batch 8] [--lr 5e-4] [--seed 0]

Every sample: an aligned pair (flipped, rescaled by 0.7-1.2, cropped at
random), the infrared crop deformed by a random smooth field (an affine of
up to 1.5 degrees, 1.5 % scale and 6 px shift about the crop centre, and an
elastic field of random smoothness whose mean size is 0-4 px; 15 % of the
samples are not deformed), and the ground-truth registration field (the
exact inverse of the deformation, fixed-point iterations).  The loss is the
mean end-point error (px) plus ``--warp_weight`` x the mean absolute
difference between the infrared crop warped by the prediction and the
undeformed infrared crop: a dense signal from the first step, without
which the network's output stayed at zero.  For the first
``--curriculum`` steps the fixed input is blended from the undeformed
infrared crop (matching within one modality, learnt first) towards the
visible crop; ``--mono`` keeps the infrared crop (a check that the network
learns at all).

Held out (never seen in training): every 8th RoadScene pair (the subset of
``bench/registration.py --every 8``), the pairs that RoadScene_raw holds, and
all of TNO42.  Every ``--save_every`` steps the weights and the optimizer's
state are written to ``--out`` (``last.weights.h5``, ``optimizer.npz``,
``state.json``); a run started again with the same ``--out`` continues
from there.  The samples of step ``k`` depend only on (seed, k).
"""

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import refine_net  # noqa: E402
from stdfusion_tf.umf import warp  # noqa: E402

CROP = (160, 224)
MARGIN = 24


def sample_at(image, rows, cols):
    """image [B, H, W, 1] at pixel positions rows, cols [B, h, w]:
    bilinear, clamped to the border, differentiable in the positions
    (MRRN's ``grid_sample``, given normalised coordinates)."""
    from keras import ops

    h = ops.cast(ops.shape(image)[1] - 1, "float32")
    w = ops.cast(ops.shape(image)[2] - 1, "float32")
    return warp.grid_sample(image, rows * (2.0 / h) - 1.0,
                            cols * (2.0 / w) - 1.0)[..., 0]


def training_stems(root=B.SHARED):
    pairs = B.pairs("roadscene", root)
    held = {s for s, _, _ in pairs[::8]}
    held |= {s for s, _, _ in B.pairs("raw", root)}
    return [(s, i, v) for s, i, v in pairs if s not in held]


def load(pairs):
    return [(B.read01(i), B.read01(v)) for _, i, v in pairs]


def _smooth_noise(rng, shape, spacing):
    h, w = shape
    gh, gw = int(np.ceil(h / spacing)) + 3, int(np.ceil(w / spacing)) + 3
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(g, (int(gw * spacing), int(gh * spacing)),
                     interpolation=cv2.INTER_CUBIC)
    oy, ox = int(spacing), int(spacing)
    return big[oy:oy + h, ox:ox + w]


def deformation(rng, shape):
    """d [2, H, W] (dy, dx): deformed(q) = original(q + d(q))."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.15:
        return np.zeros((2, h, w), np.float32)
    a = np.deg2rad(rng.uniform(-1.5, 1.5))
    s = np.exp(rng.uniform(-0.015, 0.015))
    ty, tx = rng.uniform(-6, 6, 2)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ry, rx = yy - cy, xx - cx
    dy = cy + s * (np.cos(a) * ry - np.sin(a) * rx) + ty - yy
    dx = cx + s * (np.sin(a) * ry + np.cos(a) * rx) + tx - xx
    spacing = rng.uniform(20, 70)
    e = np.stack([_smooth_noise(rng, shape, spacing),
                  _smooth_noise(rng, shape, spacing)])
    mag = np.hypot(e[0], e[1]).mean()
    e *= rng.uniform(0, 4) / max(mag, 1e-6)
    return np.stack([dy + e[0], dx + e[1]]).astype(np.float32)


def inverse(d, iterations=20):
    """f: p + f(p) = D^-1(p), D(q) = q + d(q).  ``deform.invert_displacement``
    in float32 with OpenCV and a fixed number of steps: the same field to
    1e-5 px on these deformations, 4-6x faster, and it runs for every
    sample of every step."""
    _, h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fy, fx = -d[0], -d[1]
    for _ in range(iterations):
        sy = cv2.remap(d[0], xx + fx, yy + fy, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        sx = cv2.remap(d[1], xx + fx, yy + fy, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        fy, fx = -sy, -sx
    return np.stack([fy, fx])


def sample(rng, data, crop=CROP, margin=MARGIN, mix=0.0):
    ir, vi = data[rng.integers(len(data))]
    z = rng.uniform(0.7, 1.2)
    if abs(z - 1) > 0.02:
        size = (max(8, int(round(ir.shape[1] * z))),
                max(8, int(round(ir.shape[0] * z))))
        ir = cv2.resize(ir, size, interpolation=cv2.INTER_AREA)
        vi = cv2.resize(vi, size, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        ir, vi = ir[:, ::-1], vi[:, ::-1]
    H, W = crop[0] + 2 * margin, crop[1] + 2 * margin
    ph, pw = max(0, H - ir.shape[0]), max(0, W - ir.shape[1])
    if ph or pw:
        ir = np.pad(ir, ((0, ph), (0, pw)), mode="reflect")
        vi = np.pad(vi, ((0, ph), (0, pw)), mode="reflect")
    y0 = rng.integers(ir.shape[0] - H + 1)
    x0 = rng.integers(ir.shape[1] - W + 1)
    ir = np.ascontiguousarray(ir[y0:y0 + H, x0:x0 + W], np.float32)
    vi = np.ascontiguousarray(vi[y0:y0 + H, x0:x0 + W], np.float32)
    d = deformation(rng, (H, W))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    moving = cv2.remap(ir, xx + d[1], yy + d[0], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    f = inverse(d)
    # photometric: gamma on both, sometimes a dark noisy visible image
    moving = moving ** np.exp(rng.uniform(-0.3, 0.3))
    vi = vi ** np.exp(rng.uniform(-0.3, 0.3))
    if rng.random() < 0.2:
        vi = np.clip(vi * rng.uniform(0.15, 0.6)
                     + rng.normal(0, rng.uniform(0, 0.02), vi.shape), 0, 1)
    m = margin
    sl = (slice(m, m + crop[0]), slice(m, m + crop[1]))
    # ``mix`` of the infrared image in the fixed input (a curriculum:
    # matching within one modality is learnt first)
    fixed = mix * ir + (1 - mix) * vi
    x = refine_net.inputs(moving[sl], fixed[sl])
    # the target: the field, the moving crop with its margin and the
    # original infrared crop (the warp loss)
    y = np.concatenate([np.moveaxis(f[(slice(None),) + sl], 0, -1),
                        ir[sl][..., None]], -1)
    big = moving[..., None]
    return x, y, big


def batch(seed, step, data, size, curriculum=0, mono=False):
    """``mono``: the fixed input is the undeformed infrared crop."""
    rng = np.random.default_rng([seed, step])
    if mono:
        mix = 1.0
    else:
        mix = max(0.0, 1.0 - step / curriculum) if curriculum else 0.0
    xs, ys, bs = zip(*[sample(rng, data, mix=mix) for _ in range(size)])
    return (np.stack(xs), np.stack(ys).astype(np.float32),
            np.stack(bs).astype(np.float32))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warp_weight", type=float, default=100.0)
    p.add_argument("--curriculum", type=int, default=3000,
                   help="steps over which the fixed input goes from the "
                   "original infrared to the visible image (0: none)")
    p.add_argument("--mono", action="store_true",
                   help="fixed image = the original infrared (a check)")
    p.add_argument("--save_every", type=int, default=200)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    os.makedirs(args.out, exist_ok=True)
    model = refine_net.build()
    opt = keras.optimizers.Adam(args.lr)
    opt.build(model.trainable_variables)
    state_path = os.path.join(args.out, "state.json")
    step0, log = 0, []
    if os.path.exists(state_path):
        with open(state_path) as fh:
            state = json.load(fh)
        step0, log = state["step"], state["log"]
        model.load_weights(os.path.join(args.out, "last.weights.h5"))
        saved = np.load(os.path.join(args.out, "optimizer.npz"))
        for i, v in enumerate(opt.variables):
            v.assign(saved[f"v{i}"])
        print(f"resumed at step {step0}", flush=True)
    data = load(training_stems())
    print(f"{len(data)} training pairs", flush=True)

    hc, wc = CROP
    grid_r, grid_c = np.mgrid[0:hc, 0:wc].astype(np.float32) + MARGIN

    @tf.function(jit_compile=False)
    def train_step(x, y, big):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            epe = tf.reduce_mean(tf.sqrt(tf.reduce_sum(
                tf.square(pred - y[..., :2]), -1) + 1e-6))
            # the moving crop warped by the prediction against the
            # original infrared crop: a dense signal from the start
            warped = sample_at(big, grid_r + pred[..., 0],
                               grid_c + pred[..., 1])
            photo = tf.reduce_mean(tf.abs(warped - y[..., 2]))
            loss = epe + args.warp_weight * photo
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return epe

    def save(step):
        tmp = os.path.join(args.out, "tmp")
        model.save_weights(tmp + ".weights.h5")
        np.savez(tmp + ".npz", **{f"v{i}": np.asarray(v)
                                  for i, v in enumerate(opt.variables)})
        with open(tmp + ".json", "w") as fh:
            json.dump({"step": step, "log": log, "args": vars(args)}, fh)
        os.replace(tmp + ".weights.h5",
                   os.path.join(args.out, "last.weights.h5"))
        os.replace(tmp + ".npz", os.path.join(args.out, "optimizer.npz"))
        os.replace(tmp + ".json", state_path)

    t0, losses, zeros = time.time(), [], []
    for step in range(step0, args.steps):
        # cosine decay over the planned steps
        opt.learning_rate = args.lr * 0.5 * (1 + np.cos(np.pi * step
                                                        / args.steps))
        x, y, big = batch(args.seed, step, data, args.batch,
                          args.curriculum, args.mono)
        losses.append(float(train_step(x, y, big)))
        zeros.append(float(np.hypot(y[..., 0], y[..., 1]).mean()))
        if (step + 1) % 50 == 0:
            log.append([step + 1, float(np.mean(losses)),
                        float(np.mean(zeros))])
            print(f"step {step + 1} loss {np.mean(losses):.3f} px (no "
                  f"field {np.mean(zeros):.3f}) "
                  f"{(time.time() - t0) / len(losses):.2f} s/step",
                  flush=True)
            losses, zeros, t0 = [], [], time.time()
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            save(step + 1)


if __name__ == "__main__":
    main()
