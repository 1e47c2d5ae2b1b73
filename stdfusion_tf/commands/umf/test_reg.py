r"""Register misaligned infrared images to their targets with MRRN, as
upstream's ``Test/test_reg.py``.

    stdfusion-umf test_reg --ir_dir ir_warp --target_dir pseudo_ir \
        --checkpoint umfcmgr_retrain_reg_0800 --output_dir reg
    stdfusion-umf test_reg --ir_dir ir_warp --vi_dir vi --cpstn latest_net_G.pth \
        --checkpoint umfcmgr_retrain_reg_0800 --output_dir reg

Writes ``<output_dir>/<name>.png`` (registered infrared; ``--save_format
jpg`` as upstream), ``flow/<name>.npy`` (float32 [2, H, W]: rows/dy, then
cols/dx, in pixels) and ``flow_rgb/<name>.png`` (upstream's flow picture).
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Misaligned (distorted) infrared images.")
flags.DEFINE_string("vi_dir", None, "Visible images (for --cpstn or "
                    "--target visible).")
flags.DEFINE_string("checkpoint", None, "MRRN weights: upstream .pth "
                    "(converted on the fly), .weights.h5, or the preset "
                    "umfcmgr_retrain_reg_0800" + _common.PRESET_HELP)
flags.DEFINE_string("output_dir", None, "Where the results go.")
_common.define_target_flags()
flags.mark_flags_as_required(["ir_dir", "output_dir"])


def main(argv):
    from stdfusion_tf.umf import pipeline

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    pipeline.target_source(FLAGS.target_dir, FLAGS.vi_dir, bool(FLAGS.cpstn),
                           FLAGS.target)  # flag errors before loading
    registrar = _common.registrar(FLAGS.checkpoint, FLAGS.cpstn)
    timings = pipeline.register_folders(
        registrar, FLAGS.ir_dir, FLAGS.output_dir, FLAGS.target_dir,
        FLAGS.vi_dir, FLAGS.target, FLAGS.save_format)
    print(f"Registered {len(timings)} images into "
          f"{os.path.abspath(FLAGS.output_dir)}: {_common.summary(timings)}")


def run():
    """``stdfusion-umf test_reg``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
