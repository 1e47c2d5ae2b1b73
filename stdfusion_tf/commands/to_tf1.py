r"""Export Keras STDFusionNet weights as a TF1-name checkpoint.

    stdfusion-convert to_tf1 --src checkpoint/jiayi-ma-29.weights.h5 \
        --dst export/Fusion.model-29 --root STDFusion_model

Writes <dst>.index and <dst>.data-00000-of-00001 with the 72 variables under
--root (the names the released checkpoints use), updates the folder's
'checkpoint' state file, and reads the result back with
tf.train.load_checkpoint: the round trip must be bitwise lossless.

From a clone: ``python -m convert.to_tf1``, the same program and flags.
"""

import re

from absl import flags

from stdfusion_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "Keras weights file (.weights.h5).")
flags.DEFINE_string("dst", None, "Output TF1 checkpoint prefix.")
flags.DEFINE_string("root", "STDFusion_model", "Root variable scope "
                    "(STDFusion_model: Linfeng-Tang release and upstream "
                    "training code; STMFusion_model: jiayi-ma release).")
flags.mark_flags_as_required(["src", "dst"])


def main(argv):
    import os

    import numpy as np

    from stdfusion_tf.checkpoints import (read_keras_weights, read_tf1_weights,
                                          write_tf1_checkpoint)
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.model import STDFusionNet, tf1_variable_shapes

    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", FLAGS.root):
        raise InputError(None, f"--root {FLAGS.root!r} is not a variable "
                         "scope name")
    from stdfusion_tf import fileio

    if os.path.isdir(FLAGS.dst):
        raise InputError(FLAGS.dst, "--dst is a folder; give a checkpoint "
                         "prefix such as <folder>/Fusion.model-29")
    for suffix in (".index", ".data-00000-of-00001"):
        fileio.check_file_target(FLAGS.dst + suffix)
    fileio.check_file_target(os.path.join(os.path.dirname(
        os.path.abspath(FLAGS.dst)), "checkpoint"))
    arrays = read_keras_weights(FLAGS.src, STDFusionNet)
    prefix = write_tf1_checkpoint(
        FLAGS.dst, {f"{FLAGS.root}/{k}": v for k, v in arrays.items()})
    root, back, _ = read_tf1_weights(prefix, tf1_variable_shapes())
    same = root == FLAGS.root and all(np.array_equal(back[k], arrays[k])
                                      for k in arrays)
    if not same:
        raise InputError(prefix, "checkpoint does not read back bitwise")
    print(f"Wrote {prefix} ({len(back)} variables under '{root}/'); "
          "read back with tf.train.load_checkpoint: bitwise equal")


def run():
    """Console script ``stdfusion-convert to_tf1``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
