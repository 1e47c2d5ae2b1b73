"""How well the Fig. 15 salient map agrees with hand-drawn masks (IoU).

    PYTHONPATH=. python scripts/salient_iou.py \
        --ir_dir ../shared/upstream/Train_ir --vi_dir ../shared/upstream/Train_vi \
        --mask_dir ../shared/upstream/Train_ir_mask \
        --checkpoint ../shared/upstream/checkpoints/jiayi-ma

Per pair: the map of ``test.py --salient_map`` (|fused - visible| x 127.5,
uint8), thresholded ``map > t`` with ``t`` from Otsu's method on that map
(default; parameter-free, chosen before looking at the masks) or a fixed
gray level (``--threshold 64``), against ``mask > 127``.  Prints IoU,
precision and recall per image and their means; ``--csv`` writes the rows.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", "Train_ir", "Infrared images.")
flags.DEFINE_string("vi_dir", "Train_vi", "Visible images.")
flags.DEFINE_string("mask_dir", "Train_ir_mask", "Salient-target masks "
                    "(same names).")
flags.DEFINE_string("checkpoint", "checkpoint/Fusion.model-29", "Weights, "
                    "as test.py's --checkpoint (the default is fetched).")
flags.DEFINE_list("threshold", ["otsu"], "Threshold rule(s): 'otsu' "
                  "(per image) and/or fixed gray levels 0..254.")
flags.DEFINE_string("csv", None, "Also write name,rule,threshold,iou,"
                    "precision,recall rows here.")
flags.DEFINE_string("mirror", None, "As test.py's --mirror.")


def main(argv):
    import numpy as np

    from stdfusion_tf import fusion, images, salient
    from stdfusion_tf.loading import ensure_defaults, load_model
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.fileio import atomic_output

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    for rule in FLAGS.threshold:
        if rule != "otsu" and not (rule.isdigit() and int(rule) < 255):
            raise InputError(None, f"--threshold {rule!r}: 'otsu' or a gray "
                             "level 0..254")
    stems, paths, _ = images.pair_folders(FLAGS.ir_dir, FLAGS.vi_dir,
                                          FLAGS.mask_dir)
    for ir_path, vi_path, mask_path in paths:
        for p in (vi_path, mask_path):
            if images.image_size(p) != images.image_size(ir_path):
                raise InputError(p, f"size differs from {ir_path}")
    ensure_defaults(FLAGS.checkpoint, None, None, FLAGS.mirror)
    fuser = fusion.Fuser(load_model(FLAGS.checkpoint))
    rows = []
    print("name   " + "".join(f"{r:>26}" for r in FLAGS.threshold))
    print("       " + "     t    IoU  prec   rec" * len(FLAGS.threshold))
    for stem, (ir_path, vi_path, mask_path) in zip(stems, paths):
        ir, vi = fusion.load_pair(ir_path, vi_path)
        m = salient.salient_map(fuser(ir, vi), vi)
        mask = images.read_gray(mask_path) > 127
        line = f"{stem:6s} "
        for rule in FLAGS.threshold:
            a = salient.agreement(m, mask, rule)
            rows.append((stem, rule, a))
            line += (f"{a['threshold']:6d} {a['iou']:6.3f} "
                     f"{a['precision']:5.3f} {a['recall']:5.3f}")
        print(line)
    line = "mean   "
    for rule in FLAGS.threshold:
        a = [r[2] for r in rows if r[1] == rule]
        line += "       " + " ".join(
            f"{np.mean([x[k] for x in a]):{w}.3f}"
            for k, w in (("iou", 6), ("precision", 5), ("recall", 5)))
    print(line)
    if FLAGS.csv:
        with atomic_output(FLAGS.csv) as tmp:
            with open(tmp, "w") as f:
                f.write("name,rule,threshold,iou,precision,recall\n")
                for stem, rule, a in rows:
                    f.write(f"{stem},{rule},{a['threshold']},{a['iou']:.6f},"
                            f"{a['precision']:.6f},{a['recall']:.6f}\n")


if __name__ == "__main__":
    cli.run(main)
