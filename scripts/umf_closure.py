"""Gap closure of registered rows in an evaluate.py report.

    python scripts/umf_closure.py results/umf/report_difn

Reads ``<report>/metrics.csv`` (evaluate.py: one row per method and image),
takes each method's mean per metric and prints, for every method other than
the "(a) ..." (no registration) and "(c) ..." (aligned) rows, how much of the
(a) -> (c) gap it closes: ``(x - a) / (c - a)``, in per cent, for MI, VIF and
Qabf (the metrics that compare the fused image with its sources).  Also
written to ``<report>/closure.md``.
"""

import csv
import os
import sys

METRICS = ("MI", "VIF", "Qabf")


def closure(folder):
    with open(os.path.join(folder, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    metrics = [c for c in METRICS if c in rows[0]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean = {}
    for m in methods:
        chosen = [r for r in rows if r["method"] == m]
        mean[m] = {c: sum(float(r[c]) for r in chosen) / len(chosen)
                   for c in metrics}
    a = next(m for m in methods if m.startswith("(a)"))
    c = next(m for m in methods if m.startswith("(c)"))
    lines = ["| gap closure, (x - a) / (c - a) | " + " | ".join(metrics)
             + " |", "|---|" + "---|" * len(metrics)]
    for m in methods:
        if m in (a, c):
            continue
        cells = [f"{100 * (mean[m][k] - mean[a][k]) / (mean[c][k] - mean[a][k]):.0f} %"
                 for k in metrics]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = closure(sys.argv[1])
    with open(os.path.join(sys.argv[1], "closure.md"), "w") as f:
        f.write(text)
    print(text, end="")
