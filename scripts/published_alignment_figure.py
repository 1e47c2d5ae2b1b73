"""A published "aligned" RoadScene pair that is not aligned, as a picture.

    python scripts/published_alignment_figure.py [--pair FLIR_04607]

Writes ``docs/images/published_alignment.png``: a detail of the published
pair (``../shared/datasets/RoadScene/{ir,vi}``), the infrared image with the
visible image's edges drawn over it in red, as published (left) and after
the global stage moved the infrared image (right:
``register_pair(ir, vi, "global", model="similarity")``).  Edges: Canny on
the visible image, lightly blurred.  Nothing of ``../shared`` is copied
beyond this enlarged detail.
"""

import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from stdfusion_tf import images  # noqa: E402
from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import geometry, register_pair  # noqa: E402

ZOOM = 3
GAP = 6


def overlay(ir, edges):
    rgb = np.repeat((np.clip(ir, 0, 1) * 255).astype(np.uint8)[..., None],
                    3, axis=2)
    rgb[edges > 0] = (230, 20, 20)
    return rgb


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    p.add_argument("--pair", default="FLIR_04607")
    p.add_argument("--box", default="90,215,100,300",
                   help="detail rows y0,y1 and columns x0,x1 (published "
                        "pixels)")
    p.add_argument("--out", default=os.path.join(
        ROOT, "docs", "images", "published_alignment.png"))
    args = p.parse_args()
    base = os.path.join(args.shared, "datasets", "RoadScene")
    names = {k: images.by_stem(os.path.join(base, k)) for k in ("ir", "vi")}
    ir = B.read01(os.path.join(base, "ir", names["ir"][args.pair]))
    vi = B.read01(os.path.join(base, "vi", names["vi"][args.pair]))
    r = register_pair(ir, vi, "global", model="similarity")
    moved = geometry.warp_matrix(ir, r.matrix, vi.shape)
    y0, y1, x0, x1 = (int(v) for v in args.box.split(","))

    def detail(a):
        return cv2.resize(a[y0:y1, x0:x1], None, fx=ZOOM, fy=ZOOM,
                          interpolation=cv2.INTER_CUBIC)
    v8 = (detail(vi) * 255).clip(0, 255).astype(np.uint8)
    edges = cv2.Canny(cv2.GaussianBlur(v8, (0, 0), ZOOM), 20, 60)
    left, right = overlay(detail(ir), edges), overlay(detail(moved), edges)
    gap = np.full((left.shape[0], GAP, 3), 255, np.uint8)
    out = np.concatenate([left, gap, right], axis=1)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    from PIL import Image
    Image.fromarray(out).save(args.out, optimize=True)
    print(f"wrote {args.out} ({out.shape[1]}x{out.shape[0]}); global move "
          f"{B.mean_move(r.matrix, vi.shape):.2f} px, fallback {r.fallback}")


if __name__ == "__main__":
    main()
