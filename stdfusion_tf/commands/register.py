"""Register infrared images onto visible images of any size: the infrared
image resampled into the visible image's frame, no weights needed.

    stdfusion-register --ir_dir my/ir --vi_dir my/vi --output_dir registered
    python -m stdfusion_tf.commands.register --ir_dir ir --vi_dir vi \
        --output_dir registered --method global

Pairs are matched by file name without extension; the two images of a pair
may differ in size and field of view.  Per pair it writes
``<output_dir>/<name>.png`` (the infrared image in the visible frame, the
visible image's size, 8-bit), ``flow/<name>.npy`` (float32 [2, Hv, Wv]: rows
(dy), then columns (dx), pixels; registered(p) = ir(p + flow(p))) and
``transform/<name>.json`` (the global 3x3 matrix, visible pixel (x, y, 1) ->
infrared pixel, the confidence and whether the fallback was taken).  A pair
that cannot be registered with confidence is named on stderr and written
with the fallback (the infrared image resized to the visible frame).  Bad
input stops the run with one line naming the file, and nothing is written.
"""

import os

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Folder of infrared images.")
flags.DEFINE_string("vi_dir", None, "Folder of visible images, paired with "
                    "the infrared ones by file name without extension.")
flags.DEFINE_string("output_dir", None, "Where the registered infrared "
                    "images (<name>.png), flow/ and transform/ go.")
flags.DEFINE_enum("method", "auto", ["auto", "global", "dense", "none"],
                  "auto: global (see --model) then "
                  "dense refinement; global: the global stage only; dense: "
                  "the dense stage only (pairs of the same size); none: the "
                  "infrared image resized to the visible size (the plain "
                  "no-registration baseline).")
flags.DEFINE_enum("model", "auto", ["auto", "similarity", "affine",
                                      "projective"],
                  "The global transform.  similarity: rotation, one scale, "
                  "shift (two cameras with square pixels side by side); "
                  "affine: also shear and a scale per axis (images resized "
                  "to a common size from different aspect ratios); "
                  "projective: a homography where it scores better "
                  "(cameras at an angle looking at a plane); auto: the "
                  "similarity, or the affine where clearly more of the "
                  "image agrees with it.  The dense stage of --method auto "
                  "takes up what the global transform leaves.")
flags.DEFINE_string("ir_range", "minmax", "How 16-bit and float infrared "
                    "images are mapped to 0..255: minmax or percentile:P "
                    "(as stdfusion-fuse).  8-bit images are read as they "
                    "are.")
flags.mark_flags_as_required(["ir_dir", "vi_dir", "output_dir"])


def main(argv):
    from stdfusion_tf import registering

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    done = registering.register_folders(
        FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.output_dir, method=FLAGS.method,
        ir_range=FLAGS.ir_range, model=FLAGS.model)
    fell_back = [stem for stem, r in done if r.fallback]
    seconds = [r.seconds for _, r in done]
    print(f"Registered {len(done)} pairs into "
          f"{os.path.abspath(FLAGS.output_dir)} ({FLAGS.method}): "
          f"{sum(seconds) / max(len(seconds), 1):.3f} s per pair")
    if fell_back and FLAGS.method != "none":
        print(f"{len(fell_back)} pair(s) fell back (low confidence, "
              f"infrared resized, not warped): {', '.join(fell_back)}")


def run():
    """Console script ``stdfusion-register``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
