"""Epoch-1 loss curves of bfloat16 and float32 training in one picture
(``docs/bf16_epoch1_curves.png``).

    python scripts/bf16_curves.py --bf16_log RUN/log/log.txt \
        [--bf16_events RUN/log] [--fp32_log weights/retrained_30ep_log.txt] \
        [--before "50:1.1328,100:1.5417,200:1.7143,216:2.4260"] \
        --out docs/bf16_epoch1_curves.png

The 50-step window means of the total loss (train.py's log.txt lines) of
epoch 1: float32 (the 30-epoch retrain's first epoch, same seed and
batches), bfloat16 as ``--precision bfloat16`` trains now, and, if given,
the window means bf16 logged before the fix (``--before``); with
``--bf16_events`` also bf16's per-step loss (TensorBoard ``g_loss_2``).
"""

import os
import re

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("bf16_log", None, "log.txt of the bf16 run.")
flags.DEFINE_string("bf16_events", None, "TensorBoard folder of the bf16 run.")
flags.DEFINE_string("fp32_log", "weights/retrained_30ep_log.txt",
                    "log.txt of the float32 run.")
flags.DEFINE_string("before", "", "step:window mean,... of bf16 before the fix.")
flags.DEFINE_string("out", "docs/bf16_epoch1_curves.png", "Output PNG.")
STEPS = 216
LINE = re.compile(r"Epoch:\[(\d+)/\d+\], step:\[(\d+)/\d+\].*loss_g:\[([\d.]+)\]")


def read_log(path):
    """[(step, window mean of the loss)] of epoch 1 of a train.py log.txt
    (a resumed epoch's later line wins)."""
    rows = {}
    with open(path) as f:
        for line in f:
            m = LINE.search(line)
            if m and int(m.group(1)) == 1:
                rows[int(m.group(2))] = float(m.group(3))
    return sorted(rows.items())


def per_step(folder):
    import glob

    import numpy as np
    import tensorflow as tf

    rows = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == "g_loss_2":
                    value = (v.simple_value if v.HasField("simple_value")
                             else float(tf.make_ndarray(v.tensor)))
                    rows[event.step] = value
    steps = sorted(s for s in rows if s <= STEPS)
    return np.array(steps), np.array([rows[s] for s in steps])


def main(argv):
    del argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    if FLAGS.bf16_events:
        s, v = per_step(FLAGS.bf16_events)
        ax.plot(s, v, color="tab:orange", alpha=0.25, lw=0.8,
                label="bfloat16, per step")
    for path, label, color in ((FLAGS.fp32_log, "float32", "tab:blue"),
                               (FLAGS.bf16_log, "bfloat16 (ELU on in "
                                "float32)", "tab:orange")):
        rows = read_log(path)
        ax.plot([s for s, _ in rows], [v for _, v in rows], "o-",
                color=color, label=f"{label}, 50-step means")
    if FLAGS.before:
        pts = [tuple(map(float, p.split(":"))) for p in FLAGS.before.split(",")]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "x--",
                color="tab:red", label="bfloat16 before (all bf16), 50-step means")
    ax.set_xlabel("step (epoch 1: 216 steps of 32 patches, seed 1)")
    ax.set_ylabel("loss (Eq. 6)")
    ax.set_xlim(0, STEPS + 2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    fig.savefig(FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    flags.mark_flag_as_required("bf16_log")
    app.run(main)
