r"""Registration metrics before / after, as upstream's Evaluation/metrics.py.

    stdfusion-umf evaluate_reg --warped_dir ir_warp --registered_dir ir_reg \
        --gt_dir ir_256 [--out_dir report] \
        [--flow_dir reg_out/flow --true_flow_dir misaligned/flow]

Pairs the three folders by file stem, reads the images as upstream
(cv2 IMREAD_GRAYSCALE semantics, u8 / 255 in float32) and prints the mean
± std of MSE, NCC, LNCC (window 17, float32 as upstream) and MI (bits) of
the deformed and of the registered infrared images against the ground
truth.  With both flow folders (``umf.make_misaligned``'s ``flow/``: the
true displacement; the registration's ``flow/``: the estimated flow) the
end-point error (pixels) is added.  ``--out_dir`` writes table.md,
metrics.csv (one row per image and method) and mean.csv.
"""

import os

from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string("warped_dir", None, "Deformed (misaligned) infrared "
                    "images.")
flags.DEFINE_string("registered_dir", None, "Registered infrared images.")
flags.DEFINE_string("gt_dir", None, "Aligned ground-truth infrared images.")
flags.DEFINE_string("out_dir", None, "Where table.md, metrics.csv and "
                    "mean.csv go (nothing is written without it).")
flags.DEFINE_string("flow_dir", None, "The registration's flows "
                    "(<stem>.npy, [2, H, W], rows/dy then cols/dx, pixels, "
                    "registered(p) = warped(p + flow(p))).  Default with "
                    "--true_flow_dir: <registered_dir>/flow.")
flags.DEFINE_string("true_flow_dir", None, "The true displacements written "
                    "by umf.make_misaligned (<stem>.npy, deformed(p) = "
                    "original(p + d(p))): adds the end-point error of the "
                    "registration flow against the flow that undoes them.")
flags.DEFINE_bool("allow_missing", False, "Skip (and report) names missing "
                  "from some image folder instead of stopping.")
flags.mark_flags_as_required(["warped_dir", "registered_dir", "gt_dir"])


def main(argv):
    from stdfusion_tf.umf import reg_evaluation

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    flow_dir = FLAGS.flow_dir
    if FLAGS.true_flow_dir and not flow_dir:
        flow_dir = os.path.join(FLAGS.registered_dir, "flow")
    rows, columns, skipped = reg_evaluation.evaluate_folders(
        FLAGS.warped_dir, FLAGS.registered_dir, FLAGS.gt_dir,
        flow_dir=flow_dir, true_flow_dir=FLAGS.true_flow_dir,
        allow_missing=FLAGS.allow_missing)
    if skipped:
        print(f"Skipped {len(skipped)} name(s) missing from some folder: "
              + ", ".join(skipped))
    table, per_image, mean = reg_evaluation.report(rows, columns)
    if FLAGS.out_dir:
        from stdfusion_tf.evaluation import write_report

        write_report(FLAGS.out_dir, {"table.md": table,
                                     "metrics.csv": per_image,
                                     "mean.csv": mean})
    print(table)
    if FLAGS.out_dir:
        print(f"Wrote table.md, metrics.csv, mean.csv to {FLAGS.out_dir}")


def run():
    """``stdfusion-umf evaluate_reg``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
