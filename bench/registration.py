"""Registration benchmark: EPE of the weight-free registration.

    python bench/registration.py --dataset roadscene --level hard \
        [--every 1] [--seed 0] [--jsonl rows.jsonl] [--relative]
    python bench/registration.py --dataset raw [--vi_size 640x512]
        [--ir_field 0.33]

``--dataset roadscene|tno42``: each aligned infrared image of
``../shared/datasets/<set>/ir`` is deformed at ``--level``
(``stdfusion_tf.umf.deform.LEVELS``; ``none`` = the aligned pair as it is),
seeded per image from ``(--seed, stem)``, and registered onto its visible
image; error = EPE (px) against the flow that undoes the deformation.
``--dataset raw``: the 60 real pairs of ``../shared/datasets/RoadScene_raw``
(raw 640x512 infrared against the high-resolution visible crop); error =
the mean distance, in infrared pixels, between the predicted and the true
infrared position on a grid of visible pixels; ``--vi_size WxH`` first
resizes the visible crop (area) to that size, as a user who brought both
images to one size would (another aspect ratio: the pair is then related
by an affine), the truth following the resize (ground truth:
``stdfusion_tf.registration.benchmark``, cached under runs/);
``--ir_field F`` crops the infrared frame to what the central F x F of the
visible frame shows, keeping the sensor's own pixels: an infrared camera
with a narrower field than the visible one (F = 1/3: the infrared image
covers about a ninth of the visible frame).

Each pair is registered once with the default method (``auto``); three
rows are scored from that call: ``none`` (the plain resize: no
registration), ``global`` (the call's global matrix alone) and ``auto``
(global + dense as returned, fallback included).  Prints a Markdown table:
pairs, mean / median / 90th percentile of the per-pair error, failures
(> 10 px), the worst pair, fallbacks, and seconds per pair (wall time of
``register_pair``; ``global`` shows the whole ``auto`` call's time; one
process, the machine may be shared: compare rows of one run), and the
largest excess of ``auto`` over no registration.  ``--jsonl`` keeps every
pair's rows.

The synthetic truth assumes the published pair is aligned; it is not
always (``bench/registration_published.py``).  ``--relative`` adds two rows
scoring the same ``auto`` result against the truth taken relative to a
registration of the undeformed pair: ``auto_vs_moved`` (the published
alignment moved by the undeformed pair's global similarity, where the
global stage did not fall back; ``none_vs_moved``: no registration against
that truth) and ``auto_vs_self`` (the undeformed
pair's own ``auto`` result: self-consistency, which does not reward being
right, only being consistent).  Both cost two more registrations per pair.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("roadscene", "tno42", "raw"),
                   required=True)
    p.add_argument("--level", default="hard",
                   choices=("none", "easy", "normal", "hard", "extreme"))
    p.add_argument("--every", type=int, default=1,
                   help="use every N-th pair (a quick subset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jsonl", default=None)
    p.add_argument("--vi_size", default=None,
                   help="WxH: (raw pairs) resize the visible crop to this "
                        "size first, e.g. 640x512 (the infrared frame's "
                        "size, another aspect ratio)")
    p.add_argument("--ir_field", type=float, default=None,
                   help="F in (0, 1]: (raw pairs) crop the infrared frame "
                        "to what the central F x F of the visible frame "
                        "shows (a narrower infrared field)")
    p.add_argument("--relative", action="store_true",
                   help="(synthetic levels) also score auto against the "
                        "truth taken relative to the registration of the "
                        "undeformed pair: its global move (auto_vs_moved) "
                        "and its own auto result (auto_vs_self)")
    p.add_argument("--dense", default="patches",
                   help="the dense stage: patches (default) or a "
                        ".weights.h5 of the learned refinement "
                        "(scripts/train_registration_net.py)")
    args = p.parse_args()
    todo = B.pairs(args.dataset)[::args.every]
    vi_size = None
    if args.vi_size:
        if args.dataset != "raw":
            p.error("--vi_size is for --dataset raw")
        w, h = (int(v) for v in args.vi_size.lower().split("x"))
        vi_size = (h, w)
    if args.ir_field is not None:
        if args.dataset != "raw":
            p.error("--ir_field is for --dataset raw")
        if not 0 < args.ir_field <= 1:
            p.error(f"--ir_field must be in (0, 1], got {args.ir_field}")
    if args.relative and args.dataset == "raw":
        p.error("--relative is for the synthetic levels")
    methods = ["none", "global", "auto"]
    if args.relative:
        methods += ["none_vs_moved", "auto_vs_moved", "auto_vs_self"]
    rows = {m: [] for m in methods}
    out = open(args.jsonl, "a") if args.jsonl else None
    for i, (stem, ir_path, vi_path) in enumerate(todo):
        line = []
        res = B.run_pair(args.dataset, stem, ir_path, vi_path, args.level,
                         args.seed, vi_size, relative=args.relative,
                         dense=args.dense, ir_field=args.ir_field)
        for m in methods:
            r = res[m]
            rows[m].append(r)
            line.append(f"{m} {r['error']:.2f}")
            if out:
                out.write(json.dumps(dict(r, dataset=args.dataset,
                                          level=args.level, requested=m))
                          + "\n")
                out.flush()
        print(f"[{i + 1}/{len(todo)}] {stem}: " + ", ".join(line),
              flush=True)
    what = (f"{args.dataset}, level {args.level}" if args.dataset != "raw"
            else "RoadScene_raw (real pairs)")
    print(f"\n{what}, {len(todo)} pairs, seed {args.seed}, dense stage "
          f"{args.dense}\n")
    print("| method | pairs | mean | median | p90 | failures > 10 px | "
          "worst | fallbacks | s / pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        s = B.summary(rows[m])
        fb = s["fallbacks"] if m.startswith("auto") else "-"
        print(f"| {m} | {s['n']} | {s['mean']:.2f} | {s['median']:.2f} | "
              f"{s['p90']:.2f} | {s['failures']} | {s['max']:.2f} | "
              f"{fb} | {s['seconds']:.2f} |")
    if "none" in methods and len(methods) > 1:
        for m in methods:
            # (no registration has no auto_vs_self truth)
            if m.startswith("none") or m == "auto_vs_self":
                continue
            # auto_vs_moved against no registration with the same truth
            ref = {"auto_vs_moved": "none_vs_moved"}.get(m, "none")
            base = [r["error"] for r in rows[ref]]
            worse = [r["error"] - b for r, b in zip(rows[m], base)]
            print(f"\n{m}: largest excess over no registration "
                  f"{max(worse):+.2f} px ({sum(w > 0.5 for w in worse)} "
                  "pairs > +0.5 px)")


if __name__ == "__main__":
    main()
