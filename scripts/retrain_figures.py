"""Figures and the verdict of the 30-epoch STDFusionNet retrain
(docs/retraining.md), used by scripts/retrain_report.sh.

    python scripts/retrain_figures.py curves --log RUN/log/log.txt --out curves.png
    python scripts/retrain_figures.py side_by_side --left released_dir \
        --right retrained_dir --names 01,05,09 --out side_by_side.png
    python scripts/retrain_figures.py verdict --metrics_csv report/metrics.csv \
        --released STDFusionNet --retrained retrained

curves: the loss terms of upstream's log.txt (50-step window means; the
epoch's last, shorter window included) against the global step.
side_by_side: a few fused images, released | retrained, one row each.
verdict: per metric, the retrained mean against the released mean ± its
per-image sample std (the expectation: within one std), one line
each and a last line with how many hold.
"""

import csv
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("log", None, "curves: upstream-format log.txt.")
flags.DEFINE_integer("steps_per_epoch", 216, "curves: steps in an epoch.")
flags.DEFINE_string("compare_log", None, "curves: another run's log.txt "
                    "(e.g. the float32 retrain's), its epoch means drawn "
                    "beside this run's.")
flags.DEFINE_string("label", "this run", "curves: this run's name in the "
                    "legend.")
flags.DEFINE_string("compare_label", "compared run", "curves: the "
                    "--compare_log run's name in the legend.")
flags.DEFINE_string("left", None, "side_by_side: released fused images.")
flags.DEFINE_string("right", None, "side_by_side: retrained fused images.")
flags.DEFINE_list("names", ["01", "05", "09"], "side_by_side: file stems.")
flags.DEFINE_string("metrics_csv", None, "verdict: evaluate.py's "
                    "metrics.csv.")
flags.DEFINE_string("released", "released", "verdict: the released "
                    "method's name.")
flags.DEFINE_string("retrained", "retrained", "verdict: the retrained "
                    "method's name.")
flags.DEFINE_string("out", None, "Output PNG (curves, side_by_side).")

LINE = re.compile(r"Epoch:\[(\d+)/\d+\], step:\[(\d+)/\d+\].*loss_g:\[([\d.]+)\]"
                  r", vi_p_loss:\[([\d.]+)\], ir_p_loss:\[([\d.]+)\], "
                  r"vi_grad_loss:\[([\d.]+)\], ir_grad_loss:\[([\d.]+)\]")
TERMS = ("total", "vi_pixel", "ir_pixel", "vi_grad", "ir_grad")


def read_log(path, steps_per_epoch):
    """[(global step at the window's end, {term: mean})] of a log.txt, in
    step order.  A run killed mid-epoch and resumed (from the epoch's start)
    logs that epoch's first windows again: the later line of a step wins."""
    rows = {}
    with open(path) as f:
        for line in f:
            m = LINE.search(line)
            if m:
                epoch, step = int(m.group(1)), int(m.group(2))
                values = dict(zip(TERMS, map(float, m.groups()[2:])))
                rows[(epoch - 1) * steps_per_epoch + step] = values
    if not rows:
        raise SystemExit(f"{path}: no loss lines")
    return sorted(rows.items())


def epoch_means(rows, spe):
    """[(the epoch's last step, its mean loss)] of read_log's rows, complete
    epochs only.  Unshuffled batches: each window sees the same patches
    every epoch, so the window means repeat a per-position pattern; the
    epoch means (windows weighted by their length) show the trend."""
    epochs, prev = {}, 0
    for s, v in rows:
        e = (s - 1) // spe
        n = s - max(prev, e * spe)
        prev = s
        total, count, _ = epochs.get(e, (0.0, 0, 0))
        epochs[e] = (total + n * v["total"], count + n, s)
    return [(end, total / spe) for _, (total, count, end)
            in sorted(epochs.items()) if count == spe]


def curves(out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(FLAGS.log, FLAGS.steps_per_epoch)
    steps = [s for s, _ in rows]
    means = epoch_means(rows, FLAGS.steps_per_epoch)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(steps, [v["total"] for _, v in rows], linewidth=0.8,
                 alpha=0.6, label="50-step window means")
    axes[0].plot(*zip(*means), marker="o", linewidth=1.5,
                 label="epoch means"
                 + (f" ({FLAGS.label})" if FLAGS.compare_log else ""))
    if FLAGS.compare_log:
        other = epoch_means(read_log(FLAGS.compare_log,
                                     FLAGS.steps_per_epoch),
                            FLAGS.steps_per_epoch)
        axes[0].plot(*zip(*other), marker="s", markersize=3, linewidth=1.2,
                     label=f"epoch means ({FLAGS.compare_label})")
    axes[0].set_title("loss_g")
    axes[0].legend(fontsize=7)
    for term in TERMS[1:]:
        axes[1].plot(steps, [v[term] for _, v in rows], linewidth=1,
                     label=term)
    axes[1].set_title("loss terms")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel(f"global step ({FLAGS.steps_per_epoch} per epoch)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    last = rows[-1][0] / FLAGS.steps_per_epoch
    print(f"{out}: {len(rows)} windows, up to epoch {last:.2f}; epoch means "
          + ", ".join(f"{m:.4f}" for _, m in means))


def side_by_side(out):
    import numpy as np

    from stdfusion_tf import images

    tiles = []
    for name in FLAGS.names:
        row = []
        for folder in (FLAGS.left, FLAGS.right):
            match = images.by_stem(folder).get(name)
            if match is None:
                raise SystemExit(f"{folder}: no image {name}")
            row.append(images.read_gray(os.path.join(folder, match)))
        h = max(r.shape[0] for r in row)
        row = [np.pad(r, ((0, h - r.shape[0]), (0, 0))) for r in row]
        gap = np.full((h, 8), 255.0)
        tiles.append(np.concatenate([row[0], gap, row[1]], axis=1))
    w = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 8), (0, w - t.shape[1])), constant_values=255)
             for t in tiles]
    images.save_image(np.clip(np.concatenate(tiles), 0, 255).astype(
        np.uint8), out)
    print(f"{out}: {', '.join(FLAGS.names)} (left {FLAGS.left}, right "
          f"{FLAGS.right})")


def verdict():
    with open(FLAGS.metrics_csv) as f:
        rows = list(csv.DictReader(f))
    metrics = [c for c in rows[0] if c not in ("method", "name")]
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["name"]] = r
    released, retrained = by[FLAGS.released], by[FLAGS.retrained]
    names = sorted(set(released) & set(retrained))
    held = 0
    for m in metrics:
        a = [float(released[n][m]) for n in names]
        b = [float(retrained[n][m]) for n in names]
        mean_a, std_a, mean_b = (statistics.mean(a), statistics.stdev(a),
                                 statistics.mean(b))
        ok = abs(mean_b - mean_a) <= std_a
        held += ok
        print(f"{m:6s} released {mean_a:.4f} ± {std_a:.4f}  retrained "
              f"{mean_b:.4f} ± {statistics.stdev(b):.4f}  "
              f"{'within' if ok else 'OUTSIDE'} one std")
    print(f"{held} of {len(metrics)} metric means within one per-image std "
          f"of the release's ({len(names)} pairs)")


def main(argv):
    if len(argv) != 2 or argv[1] not in ("curves", "side_by_side",
                                         "verdict"):
        raise SystemExit("usage: retrain_figures.py curves|side_by_side|"
                         "verdict [flags]")
    if argv[1] == "curves":
        curves(FLAGS.out)
    elif argv[1] == "side_by_side":
        side_by_side(FLAGS.out)
    else:
        verdict()


if __name__ == "__main__":
    app.run(main)
