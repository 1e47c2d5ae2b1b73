r"""Register, then fuse, in one run, as upstream's ``Test/test_reg_fusion.py``.

    stdfusion-umf test_reg_fusion --ir_dir ir_warp --vi_dir vi \
        --target_dir pseudo_ir --checkpoint_reg umfcmgr_retrain_reg_0800 \
        --checkpoint_fuse umfcmgr_retrain_fus_0200 --output_dir out

    stdfusion-umf test_reg_fusion --ir_dir ir_raw --vi_dir vi \
        --registration auto --checkpoint_fuse fus_0200.pth --output_dir out

``--registration auto`` (or global, dense) replaces MRRN and its target by
this project's weight-free registration straight onto the visible image
(pairs may differ in size; everything is in the visible frame, and
``reg/transform/<name>.json`` holds the global matrix and confidence).
Writes ``<output_dir>/reg/`` (as ``umf.test_reg``) and
``<output_dir>/fused/<name>.png``.  The fuser gets the registered image as
computed (float), not re-read from its 8-bit file, as upstream.
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Misaligned (distorted) infrared images.")
flags.DEFINE_string("vi_dir", None, "Visible images, paired by file name.")
flags.DEFINE_string("checkpoint_reg", None, "MRRN weights (.pth or "
                    ".weights.h5) or the preset umfcmgr_retrain_reg_0800"
                    + _common.PRESET_HELP + "  Upstream's --ckpt_reg.")
flags.DEFINE_string("checkpoint_fuse", None, "Fuser weights: DIFN (.pth or "
                    ".weights.h5; upstream's --ckpt_fus), or for --fuser "
                    "stdfusionnet a test.py checkpoint (default: released).  "
                    "DIFN preset: umfcmgr_retrain_fus_0200.")
flags.DEFINE_string("output_dir", None, "Results: reg/ and fused/ inside.")
flags.DEFINE_enum("fuser", "difn", ["difn", "stdfusionnet"], "The fusion "
                  "network.")
flags.DEFINE_bool("color", False, "RGB fused output (visible chroma kept).")
flags.DEFINE_string("mirror", None, "Local copy of the STDFusionNet release.")
_common.define_target_flags()
_common.define_registration_flag("mrrn")
flags.mark_flags_as_required(["ir_dir", "vi_dir", "output_dir"])


def main(argv):
    from stdfusion_tf.umf import pipeline

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    method = _common.registration_method()
    if method is None:
        pipeline.target_source(FLAGS.target_dir, FLAGS.vi_dir,
                               bool(FLAGS.cpstn), FLAGS.target)
        registrar = _common.registrar(FLAGS.checkpoint_reg, FLAGS.cpstn,
                                      flag="checkpoint_reg")
    else:
        given = [f for f in ("checkpoint_reg", "target_dir", "cpstn")
                 if getattr(FLAGS, f)] + (
            ["target"] if FLAGS.target != "pseudo_ir" else [])
        if given:
            from stdfusion_tf.errors import InputError

            raise InputError(None, f"--registration {method} registers onto "
                             "the visible image without MRRN: drop --"
                             + ", --".join(given))
        registrar = None
    fuser = _common.fuser(FLAGS.fuser, FLAGS.checkpoint_fuse, FLAGS.mirror,
                          flag="checkpoint_fuse")
    timings = pipeline.register_and_fuse(
        registrar, fuser, FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.output_dir,
        FLAGS.target_dir, FLAGS.target, FLAGS.color, FLAGS.save_format,
        registration=method)
    print(f"Registered and fused {len(timings)} pairs into "
          f"{os.path.abspath(FLAGS.output_dir)}: {_common.summary(timings)}")


def run():
    """``stdfusion-umf test_reg_fusion``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
