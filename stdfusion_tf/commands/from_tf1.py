r"""Convert a released TF1 STDFusionNet checkpoint to Keras weights.

    stdfusion-convert from_tf1 --src ../shared/upstream/checkpoints/jiayi-ma \
        --dst checkpoint/jiayi-ma-29.weights.h5

--src is a directory holding a 'checkpoint' state file (its
model_checkpoint_path is used) or a prefix such as .../Fusion.model-28.
The root scope (STMFusion_model/ or STDFusion_model/) is detected.  Before
anything is written, the Keras model is run against an upstream-style
tf.compat.v1 graph built from the checkpoint tensors; a max abs difference
above --tolerance is an error.

From a clone: ``python -m convert.from_tf1``, the same program and flags.
"""

from absl import flags

from stdfusion_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "TF1 checkpoint directory or prefix.")
flags.DEFINE_string("dst", None, "Output Keras weights file (.weights.h5).")
flags.DEFINE_float("tolerance", 1e-5, "Largest max abs difference allowed "
                   "between Keras and the TF1 graph (outputs in [-1, 1]).")
flags.mark_flags_as_required(["src", "dst"])


def main(argv):
    import numpy as np

    from stdfusion_tf.checkpoints import (assign_weights, is_keras_weights,
                                          read_keras_weights, read_tf1_weights,
                                          save_keras_weights)
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.model import STDFusionNet, tf1_variable_shapes
    from stdfusion_tf.reference import max_abs_diff

    from stdfusion_tf import fileio

    if not is_keras_weights(FLAGS.dst):
        raise InputError(FLAGS.dst, "--dst must end in .weights.h5")
    fileio.check_file_target(FLAGS.dst)  # before the slow validation
    expected = tf1_variable_shapes()
    root, arrays, prefix = read_tf1_weights(FLAGS.src, expected)
    print(f"Read {len(arrays)} variables under '{root}/' from {prefix}")
    model = assign_weights(STDFusionNet(), arrays)

    diff = max_abs_diff(model, arrays)
    print(f"Validation against the tf.compat.v1 graph: max abs diff = "
          f"{diff:.3e} (tolerance {FLAGS.tolerance:.0e})")
    if not diff <= FLAGS.tolerance:
        raise InputError(prefix, f"converted model differs from the TF1 "
                         f"graph by {diff:.3e} > {FLAGS.tolerance:.0e}; "
                         "nothing written")

    path = save_keras_weights(model, FLAGS.dst)
    back = read_keras_weights(path, STDFusionNet)
    same = all(np.array_equal(back[k], arrays[k]) for k in arrays)
    if not same:
        raise InputError(path, "written weights do not read back bitwise")
    print(f"Wrote {path} ({len(arrays)} variables, read back bitwise equal)")


def run():
    """Console script ``stdfusion-convert from_tf1``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
