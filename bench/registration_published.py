"""How well aligned are the published "aligned" pairs?

    python bench/registration_published.py --dataset roadscene [--every 1]
    python bench/registration_published.py --dataset tno42 [--jsonl rows.jsonl]

The synthetic benchmark (``bench/registration.py --level ...``) scores a
registration against the flow that undoes a known deformation, so it
assumes the published pair was aligned to begin with.  This script checks
that assumption: each published pair (``../shared/datasets/<set>/{ir,vi}``)
is registered as it is with the global stage (``method="global"``, the
similarity model), and for every pair where the global stage moves the
infrared image (it did not fall back), the move is checked with a measure
the registration does not use: the normalised mutual information of the
intensities (32-bin joint histogram, ``(H(A) + H(B)) / H(A, B)``, over the
frame less a 5 % border), at the published alignment, at the registration's
matrix, and at the opposite move (``2 I - M``: as far the other way, the
control).  If the published alignment were right, moving away from it in
either direction would lower NMI.

Prints a Markdown table: pairs, pairs moved, the move (mean distance,
pixels, over the frame; 0 for pairs not moved) mean / median / 90th
percentile / max over all pairs, and, over the moved pairs, the mean NMI
change at the registration and at the opposite move and how many pairs
gain NMI at each.  ``--jsonl`` keeps every pair's figures.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("roadscene", "tno42"),
                   required=True)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--jsonl", default=None)
    args = p.parse_args()
    todo = B.pairs(args.dataset)[::args.every]
    out = open(args.jsonl, "a") if args.jsonl else None
    rows = []
    for i, (stem, ir_path, vi_path) in enumerate(todo):
        ir, vi = B.read01(ir_path), B.read01(vi_path)
        if ir.shape != vi.shape:
            print(f"[{i + 1}/{len(todo)}] {stem}: sizes differ, skipped")
            continue
        rec = dict(B.check_published(ir, vi), stem=stem)
        rows.append(rec)
        if out:
            out.write(json.dumps(dict(rec, dataset=args.dataset)) + "\n")
            out.flush()
        gain = ("" if rec["fallback"] else
                f", NMI {rec['nmi_gain']:+.4f} (opposite "
                f"{rec['nmi_gain_opposite']:+.4f})")
        print(f"[{i + 1}/{len(todo)}] {stem}: move {rec['move']:.2f} px"
              f"{gain}", flush=True)
    if out:
        out.close()
    moves = np.array([r["move"] for r in rows])
    moved = [r for r in rows if not r["fallback"]]
    g = np.array([r["nmi_gain"] for r in moved])
    go = np.array([r["nmi_gain_opposite"] for r in moved])
    print(f"\n{args.dataset}, published pairs\n")
    print("| pairs | moved | move mean | median | p90 | max | NMI change "
          "at the registration (pairs up) | at the opposite move "
          "(pairs up) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(rows)} | {len(moved)} | {moves.mean():.2f} | "
          f"{np.median(moves):.2f} | {np.percentile(moves, 90):.2f} | "
          f"{moves.max():.2f} | {g.mean():+.4f} ({(g > 0).sum()}) | "
          f"{go.mean():+.4f} ({(go > 0).sum()}) |")


if __name__ == "__main__":
    main()
