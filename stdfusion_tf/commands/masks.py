"""Salient-target masks for train.py from labelme annotations.

    stdfusion-masks --ir_dir my/Train_ir --output_dir my/Train_ir_mask
    stdfusion-masks --ir_dir Train_ir --json_dir labels --blur 2
    stdfusion-train --ir_dir my/Train_ir --vi_dir my/Train_vi --mask_dir my/Train_ir_mask

From a clone: ``python make_masks.py``, the same program and flags.

The authors drew their masks by hand in labelme.  For every infrared image
<stem>.<ext> this reads <json_dir>/<stem>.json (labelme saves it beside the
image, hence --json_dir defaults to --ir_dir) and writes
<output_dir>/<stem>.bmp: 8-bit gray, the image's size, 255 inside every
shape (polygon, rectangle, circle, oriented_rectangle, line, linestrip,
point, mask; drawn as labelme's shape_to_mask draws them), 0 elsewhere --
like the released Train_ir_mask/.  Every annotation is checked before any
mask is written.
"""

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", "Train_ir", "Folder of infrared images; one "
                    "mask is written per image.")
flags.DEFINE_string("json_dir", None, "Folder of the labelme files "
                    "<stem>.json (default: --ir_dir, where labelme saves "
                    "them).")
flags.DEFINE_string("output_dir", "Train_ir_mask", "Where the masks go "
                    "(<stem>.bmp); existing masks of the same names are "
                    "replaced.")
flags.DEFINE_float("blur", 0.0, "Gaussian sigma in pixels for soft masks "
                   "(0: none, binary 0/255 like the released masks; the "
                   "released Train_ir_mask_blur/ is byte-identical to "
                   "Train_ir_mask/, i.e. unblurred).")
flags.DEFINE_list("labels", None, "Only shapes with these labels are salient "
                  "(default: every shape).")
flags.DEFINE_bool("allow_outside", False, "Accept points outside the image "
                  "(shapes are drawn clipped); by default they are an error, "
                  "as labelme keeps points inside the image.")
flags.DEFINE_integer("line_width", 10, "Width of line/linestrip shapes "
                     "(labelme's default).")
flags.DEFINE_integer("point_size", 5, "Radius of point shapes (labelme's "
                     "default).")


def main(argv):
    import os

    from stdfusion_tf import masks

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    report = masks.make_masks(
        FLAGS.ir_dir, FLAGS.json_dir, FLAGS.output_dir, blur=FLAGS.blur,
        labels=FLAGS.labels, allow_outside=FLAGS.allow_outside,
        line_width=FLAGS.line_width, point_size=FLAGS.point_size)
    salient = sum(f for _, f in report) / len(report)
    print(f"Wrote {len(report)} masks into {os.path.abspath(FLAGS.output_dir)}"
          f" ({salient:.2%} salient pixels on average"
          + (f", blurred with sigma {FLAGS.blur:g}" if FLAGS.blur else "")
          + ")")


def run():
    """Console script ``stdfusion-masks``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
