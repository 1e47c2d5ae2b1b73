"""Registration under large transforms and at night (robustness check).

    python bench/registration_stress.py [--every 20] [--dataset roadscene]

For every N-th aligned pair of ``../shared/datasets/<set>``, the infrared
image is resampled by a similarity into a new frame (zeros outside) and
registered onto the visible image with the default method: ``zoom 1/3``
(the infrared content shrunk 3x in a frame of the same size: the infrared
sees a 3x wider field than the visible camera), ``zoom 3`` (enlarged 3x:
the infrared sees the central third of the visible field), rotations of
+-15 deg, a translation of 25 % of the frame, and a mixed case (frame and
content at 2x resolution, -10 deg, 15 % shift).  ``night``:
the hard level's deformation with the visible image darkened to 15 % and
Gaussian noise (sigma 3 % of full scale) added.  Error = EPE (px, in the
infrared frame) over the visible pixels whose true position is inside the
infrared image.  Prints one line per case and a table per transform.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import geometry, register_pair  # noqa: E402

CASES = {  # name: (content scale k, frame scale, angle deg, shift (x, y))
    "zoom 1/3": (1 / 3, 1.0, 0.0, (0.0, 0.0)),
    "zoom 3": (3.0, 1.0, 0.0, (0.0, 0.0)),
    "rotate +15": (1.0, 1.0, 15.0, (0.0, 0.0)),
    "rotate -15": (1.0, 1.0, -15.0, (0.0, 0.0)),
    "shift 25 %": (1.0, 1.0, 0.0, (0.25, -0.25)),
    "2x resolution, -10 deg, 15 %": (2.0, 2.0, -10.0, (-0.15, 0.15)),
}


def transformed(ir, k, frame, angle, shift):
    """(infrared in the new frame, matrix visible pixel -> new pixel)."""
    h, w = ir.shape
    out_shape = (max(16, int(round(frame * h))),
                 max(16, int(round(frame * w))))
    c = ((w - 1) / 2.0, (h - 1) / 2.0)
    co = ((out_shape[1] - 1) / 2.0, (out_shape[0] - 1) / 2.0)
    # new pixel q -> original pixel: content moved by shift (of the frame)
    t = geometry.similarity(1.0 / k, angle, co,
                            (c[0] - shift[0] * w, c[1] - shift[1] * h))
    import cv2
    moved = geometry.warp_matrix(ir, t, out_shape, cv2.BORDER_CONSTANT)
    return moved, np.linalg.inv(t)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="roadscene",
                   choices=("roadscene", "tno42"))
    p.add_argument("--every", type=int, default=20)
    args = p.parse_args()
    rows = {name: [] for name in list(CASES) + ["night (hard)"]}
    for stem, ir_path, vi_path in B.pairs(args.dataset)[::args.every]:
        ir, vi = B.read01(ir_path), B.read01(vi_path)
        h, w = vi.shape
        for name, (k, frame, angle, shift) in CASES.items():
            moved, truth = transformed(ir, k, frame, angle, shift)
            true_flow = geometry.matrix_flow(truth, vi.shape)
            hh, ww = moved.shape
            ty, tx = (np.arange(h)[:, None] + true_flow[0],
                      np.arange(w)[None, :] + true_flow[1])
            mask = (tx >= 0) & (tx <= ww - 1) & (ty >= 0) & (ty <= hh - 1)
            t0 = time.perf_counter()
            r = register_pair(moved, vi)
            sec = time.perf_counter() - t0
            none = register_pair(moved, vi, "none")
            e = B.epe(r.flow, true_flow, mask)
            e0 = B.epe(none.flow, true_flow, mask)
            rows[name].append((e, e0, r.fallback, sec))
            print(f"{stem} {name}: none {e0:.2f}, auto {e:.2f} "
                  f"({r.method}, {sec:.1f} s)", flush=True)
        dark, f, mask = B.synthetic_case(ir_path, stem, "hard")
        night = B.night(vi)
        t0 = time.perf_counter()
        r = register_pair(dark, night)
        sec = time.perf_counter() - t0
        e = B.epe(r.flow, f, mask)
        e0 = B.epe(register_pair(dark, night, "none").flow, f, mask)
        rows["night (hard)"].append((e, e0, r.fallback, sec))
        print(f"{stem} night: none {e0:.2f}, auto {e:.2f} ({r.method})",
              flush=True)
    print(f"\n{args.dataset}, every {args.every}-th pair\n")
    print("| case | pairs | no registration | auto mean | auto median | "
          "failures > 10 px | fallbacks | s / pair |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        e = np.array([r[0] for r in rs])
        e0 = np.array([r[1] for r in rs])
        print(f"| {name} | {len(rs)} | {e0.mean():.2f} | {e.mean():.2f} | "
              f"{np.median(e):.2f} | {(e > 10).sum()} | "
              f"{sum(r[2] for r in rs)} | {np.mean([r[3] for r in rs]):.2f} |")


if __name__ == "__main__":
    main()
