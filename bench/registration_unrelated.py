"""How often the default registration accepts a global result for a pair
that shows two different scenes (it should fall back to the plain resize).

    python bench/registration_unrelated.py [--every 11] [--offset 7] [--night]

Pairs: every ``--every``-th RoadScene infrared image
(``../shared/datasets/RoadScene/ir``) against the visible image
``--offset`` places further in the same subset (a different scene), resized
to the infrared size.  ``--night``: the visible image darkened to 15 % and
Gaussian noise (sigma 3 % of full scale, seed 0) added (``benchmark.night``,
as the night case of ``registration_stress.py``).  Prints each accepted pair
with its confidence and the count.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import register_pair  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--every", type=int, default=11)
    p.add_argument("--offset", type=int, default=7)
    p.add_argument("--night", action="store_true",
                   help="darken the visible image to 15 %% and add noise")
    args = p.parse_args()
    import cv2

    todo = B.pairs("roadscene")[::args.every]
    accepted = 0
    for i, (stem, ir_path, _) in enumerate(todo):
        other = todo[(i + args.offset) % len(todo)]
        ir, vi = B.read01(ir_path), B.read01(other[2])
        vi = cv2.resize(vi, (ir.shape[1], ir.shape[0]),
                        interpolation=cv2.INTER_AREA)
        if args.night:
            vi = B.night(vi)
        r = register_pair(ir, vi)
        if r.method.startswith("global"):
            accepted += 1
            print(f"accepted: infrared {stem} against visible {other[0]} "
                  f"({r.method}, confidence {r.confidence:.3f})", flush=True)
    print(f"{accepted} of {len(todo)} unrelated pairs accepted (global); "
          f"the rest fell back to the plain resize or kept it with a "
          f"dense residual")


if __name__ == "__main__":
    main()
