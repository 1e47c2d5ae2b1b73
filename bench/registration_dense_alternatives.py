"""The dense stage against other weight-free dense estimators, and against
its own one-modality floor, on a synthetic level.

    python bench/registration_dense_alternatives.py [--dataset roadscene]
        [--level easy] [--every 16] [--var_alpha 5]

Every estimator starts from the plain resize and gets the same deformed
infrared image and the same visible image (``benchmark.synthetic_case``,
seed 0); the error is the EPE against the deformation's true field, in
infrared pixels, as in ``bench/registration.py``:

* ``patches``: the library's dense stage, ``register_pair(ir, vi,
  "dense")`` (doubled-angle features, patch matching, normalised
  convolution).
* ``mind``: a textbook cross-modal dense matcher. MIND descriptors
  (Heinrich et al., Medical Image Analysis 16, 2012: patch distances to the
  8 neighbours at 2 px, exp(-D / V)) of both images at 320 px, a cost
  volume of their summed absolute differences over +-6 px, aggregated by a
  Gaussian window of 4 px, solved by five soft-min rounds coupled
  quadratically to the field's own Gaussian smoothing (8 px).  The
  parameters are the best of 9 settings tried on RoadScene easy.
* ``variational``: OpenCV's variational refinement (brightness and
  gradient constancy with a smoothness term, coarse to fine over 1/4, 1/2
  and 1) on each image's normalised gradient magnitude
  ``|g| / sqrt(|g|^2 + mean |g|^2)``, which does not depend on edge
  polarity.
* ``one modality``: the library's dense stage registering the deformed
  infrared image onto the original infrared image: what the same matching
  reaches without the modality gap.

Prints the EPE per pair, then per estimator mean / median / p90 and its
mean as a ratio to ``patches``.
"""

import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import features, register_pair  # noqa: E402

MIND_WORK, MIND_RANGE, MIND_WINDOW = 320, 6, 4.0
MIND_COUPLING, MIND_SPREAD, MIND_ROUNDS, MIND_TEMPERATURE = 0.05, 8.0, 5, 0.1


def mind(image, radius=2, sigma=0.8):
    """[8, H, W] MIND descriptor: exp(-D(x, r) / V(x)) over the 8
    neighbours r at ``radius`` px, D the Gaussian-weighted squared patch
    difference, V its mean over r; divided by its maximum over r."""
    image = np.asarray(image, np.float32)
    h, w = image.shape
    d = []
    for dy in (-radius, 0, radius):
        for dx in (-radius, 0, radius):
            if dy == 0 and dx == 0:
                continue
            shifted = cv2.warpAffine(image, np.float32([[1, 0, dx],
                                                        [0, 1, dy]]),
                                     (w, h), borderMode=cv2.BORDER_REPLICATE)
            d.append(cv2.GaussianBlur((image - shifted) ** 2, (0, 0), sigma))
    d = np.stack(d)
    v = d.mean(0)
    v = np.clip(v, 1e-3 * v.mean() + 1e-8, 1e3 * v.mean())
    m = np.exp(-d / v)
    return m / m.max(0, keepdims=True)


def mind_field(ir, vi):
    """[2, H, W] field (dy, dx) with vi(p) ~ ir(p + field(p))."""
    h, w = vi.shape
    k = MIND_WORK / max(h, w)
    size = (int(round(w * k)), int(round(h * k)))
    small = [cv2.resize(np.asarray(a, np.float32), size,
                        interpolation=cv2.INTER_AREA) for a in (ir, vi)]
    mi, mv = mind(small[0]), mind(small[1])
    r, n = MIND_RANGE, 2 * MIND_RANGE + 1
    hs, ws = mv.shape[1:]
    padded = np.pad(mi, ((0, 0), (r, r), (r, r)), mode="edge")
    cost = np.empty((n * n, hs, ws), np.float32)
    for a in range(n):
        for b in range(n):
            sad = np.abs(mv - padded[:, a:a + hs, b:b + ws]).sum(0)
            cost[a * n + b] = cv2.GaussianBlur(sad, (0, 0), MIND_WINDOW)
    cost -= cost.min(0, keepdims=True)
    cost /= float(np.median(cost.mean(0))) + 1e-6
    offsets = np.arange(n, dtype=np.float32) - r
    ly = np.repeat(offsets, n)[:, None, None]
    lx = np.tile(offsets, n)[:, None, None]
    fy = np.zeros((hs, ws), np.float32)
    fx = np.zeros((hs, ws), np.float32)
    for _ in range(MIND_ROUNDS):
        sy = cv2.GaussianBlur(fy, (0, 0), MIND_SPREAD)
        sx = cv2.GaussianBlur(fx, (0, 0), MIND_SPREAD)
        total = cost + MIND_COUPLING * ((ly - sy) ** 2 + (lx - sx) ** 2)
        p = np.exp(-(total - total.min(0, keepdims=True)) / MIND_TEMPERATURE)
        p /= p.sum(0, keepdims=True)
        fy, fx = (p * ly).sum(0), (p * lx).sum(0)
    field = [cv2.GaussianBlur(f, (0, 0), MIND_SPREAD) for f in (fy, fx)]
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
                     for f in field]) / k


def gradient_magnitude(image):
    """Normalised gradient magnitude, 8-bit (OpenCV's flow wants 8 bits):
    the square root of the doubled-angle feature's modulus, which is
    ``|g|^2 / (|g|^2 + mean |g|^2)``."""
    r = np.sqrt(np.abs(features.orientation(image, 1.0)))
    r = cv2.GaussianBlur(r, (0, 0), 1.0)
    return np.clip(r * 255.0, 0, 255).astype(np.uint8)


def variational_field(ir, vi, alpha):
    """[2, H, W] field from OpenCV's variational refinement, coarse to
    fine, on the normalised gradient magnitudes."""
    refine = cv2.VariationalRefinement_create()
    refine.setAlpha(alpha)
    refine.setFixedPointIterations(10)
    fi, fv = gradient_magnitude(ir), gradient_magnitude(vi)
    h, w = vi.shape
    flow = None
    for s in (4, 2, 1):
        size = (max(1, w // s), max(1, h // s))
        a = cv2.resize(fv, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(fi, size, interpolation=cv2.INTER_AREA)
        if flow is None:
            flow = np.zeros((size[1], size[0], 2), np.float32)
        else:
            flow = cv2.resize(flow, size) * 2.0
        refine.calc(a, b, flow)
    return np.stack([flow[..., 1], flow[..., 0]])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="roadscene",
                   choices=("roadscene", "tno42"))
    p.add_argument("--level", default="easy",
                   choices=("easy", "normal", "hard"))
    p.add_argument("--every", type=int, default=16)
    p.add_argument("--var_alpha", type=float, default=5.0,
                   help="smoothness weight of the variational refinement")
    args = p.parse_args()
    names = ("none", "patches", "mind", "variational", "one modality")
    rows = []
    for stem, ir_path, vi_path in B.pairs(args.dataset)[::args.every]:
        ir, true_flow, mask = B.synthetic_case(ir_path, stem, args.level, 0)
        vi = B.read01(vi_path)
        original = B.read01(ir_path)
        fields = (np.zeros_like(true_flow),
                  register_pair(ir, vi, "dense").flow,
                  mind_field(ir, vi),
                  variational_field(ir, vi, args.var_alpha),
                  register_pair(ir, original, "dense").flow)
        errors = [B.epe(f, true_flow, mask) for f in fields]
        rows.append(errors)
        print(f"{stem:>18}  " + "  ".join(
            f"{n} {e:.2f}" for n, e in zip(names, errors)), flush=True)
    r = np.array(rows)
    print(f"\n{args.dataset} {args.level}, {len(r)} pairs (every "
          f"{args.every}th), EPE in infrared px, starting from the plain "
          "resize")
    print(f"{'estimator':>14}  {'mean':>6}  {'median':>6}  {'p90':>6}  "
          "mean / patches")
    for i, n in enumerate(names):
        col = r[:, i]
        print(f"{n:>14}  {col.mean():6.2f}  {np.median(col):6.2f}  "
              f"{np.percentile(col, 90):6.2f}  {col.mean() / r[:, 1].mean():.2f}")


if __name__ == "__main__":
    main()
