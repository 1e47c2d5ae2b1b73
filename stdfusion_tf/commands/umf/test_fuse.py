r"""Fuse (registered) infrared/visible pairs with DIFN, as upstream's
``Test/test_fuse.py`` -- or with this project's STDFusionNet.

    stdfusion-umf test_fuse --ir_dir reg --vi_dir vi --checkpoint umfcmgr_retrain_fus_0200 \
        --output_dir fused [--color]
    stdfusion-umf test_fuse --ir_dir reg --vi_dir vi --fuser stdfusionnet \
        --output_dir fused_std
    stdfusion-umf test_fuse --ir_dir ir_raw --vi_dir vi --registration auto \
        --checkpoint fus_0200.pth --output_dir fused   # register first

Writes ``<output_dir>/<name>.png`` (``--save_format jpg`` as upstream).
DIFN output is saved as upstream: x 255, clipped, rounded half to even;
``--color`` puts the visible image's chroma back as upstream's
``data/fuse_Ycbcr_rgb.py`` (OpenCV YCrCb).  STDFusionNet keeps its own
reading and min-max saving (``test.py``).
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Infrared images (registered).")
flags.DEFINE_string("vi_dir", None, "Visible images, paired by file name.")
flags.DEFINE_string("checkpoint", None, "Fuser weights: DIFN .pth/.weights.h5"
                    " (required for difn); for stdfusionnet any test.py "
                    "checkpoint (default: the released model-29).  DIFN "
                    "preset: umfcmgr_retrain_fus_0200" + _common.PRESET_HELP)
flags.DEFINE_string("output_dir", None, "Where the fused images go.")
flags.DEFINE_enum("fuser", "difn", ["difn", "stdfusionnet"], "difn: "
                  "UMF-CMGR's fusion network; stdfusionnet: this project's "
                  "STDFusionNet on the registered pair.")
flags.DEFINE_bool("color", False, "RGB output: fused luma + the visible "
                  "image's chroma.")
flags.DEFINE_enum("save_format", "png", ["png", "jpg"], "png (lossless) or "
                  "jpg (JPEG quality 95, as upstream's cv2.imwrite).")
flags.DEFINE_string("mirror", None, "Local copy of the STDFusionNet release "
                    "(for the default stdfusionnet weights).")
_common.define_registration_flag("none")
flags.mark_flags_as_required(["ir_dir", "vi_dir", "output_dir"])


def main(argv):
    from stdfusion_tf.umf import pipeline

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    fuser = _common.fuser(FLAGS.fuser, FLAGS.checkpoint, FLAGS.mirror)
    timings = pipeline.fuse_folders(fuser, FLAGS.ir_dir, FLAGS.vi_dir,
                                    FLAGS.output_dir, FLAGS.color,
                                    FLAGS.save_format,
                                    registration=_common.registration_method())
    print(f"Fused {len(timings)} pairs into "
          f"{os.path.abspath(FLAGS.output_dir)}: {_common.summary(timings)}")


def run():
    """``stdfusion-umf test_fuse``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
