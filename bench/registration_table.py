"""Tables from ``bench/registration.py --jsonl`` files (also of a run that
was stopped early: every finished pair is in the file).

    python bench/registration_table.py runs/bench/rs_hard.jsonl [...]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402


def main(paths):
    for path in paths:
        rows = {}
        meta = None
        with open(path) as fh:
            for line in fh:
                r = json.loads(line)
                meta = (r["dataset"], r["level"])
                rows.setdefault(r["requested"], []).append(r)
        if not rows:
            continue
        what = ("RoadScene_raw (real pairs)" if meta[0] == "raw"
                else f"{meta[0]}, level {meta[1]}")
        print(f"\n{what} ({path})\n")
        print("| method | pairs | mean | median | p90 | failures > 10 px | "
              "worst | fallbacks | s / pair |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m in ("none", "global", "auto"):
            if m not in rows:
                continue
            s = B.summary(rows[m])
            fb = s["fallbacks"] if m == "auto" else "-"
            print(f"| {m} | {s['n']} | {s['mean']:.2f} | {s['median']:.2f} "
                  f"| {s['p90']:.2f} | {s['failures']} | {s['max']:.2f} | "
                  f"{fb} | {s['seconds']:.2f} |")
        if "none" in rows and "auto" in rows:
            worse = [a["error"] - b["error"]
                     for a, b in zip(rows["auto"], rows["none"])]
            print(f"\nauto: largest excess over no registration "
                  f"{max(worse):+.2f} px ({sum(w > 0.5 for w in worse)} "
                  "pairs > +0.5 px)")


if __name__ == "__main__":
    main(sys.argv[1:])
