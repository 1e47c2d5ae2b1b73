r"""Convert upstream UMF-CMGR PyTorch weights (.pth) to Keras weights.

    stdfusion-convert from_torch --src ../shared/umf-cmgr/weights/reg_0800.pth \
        --dst checkpoint/umf/reg_0800.weights.h5

The .pth file is read without PyTorch and without running pickled code
(stdfusion_tf.checkpoints.pth: an allow-list unpickler; any other global is refused).
The network -- MRRN, DIFN, CPSTN generator or discriminator -- is detected
from the state_dict keys (--network to insist on one); official files'
{'net': ...} wrapping, DataParallel 'module.' prefixes, MRRN's enc.6-enc.21
aliases (checked equal, dropped) and its grid buffers are handled.

Before the file is put in place, the written weights are read back (bitwise
equal or an error), and where the weights are the known public ones
(reg_0800.pth / fus_0200.pth by sha256) and the shared reference outputs are
found (--reference_dir, default ../shared/umf-cmgr beside the project), the
converted network is run on the first --pairs reference pairs and the max
abs difference to the upstream outputs is printed; above --tolerance_gray
(or --tolerance_flow for MRRN's flow) it is an error and nothing is written.

From a clone: ``python -m convert.from_torch``, the same program and flags.
"""

import os

from absl import flags

from stdfusion_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "Upstream PyTorch weights (.pth), or a "
                    "UMF-CMGR preset name (umfcmgr_retrain_reg_0800, "
                    "umfcmgr_retrain_fus_0200: fetched into the Keras cache, "
                    "from $STDFUSION_UMF_MIRROR when set).")
flags.DEFINE_string("dst", None, "Output Keras weights file (.weights.h5).")
flags.DEFINE_enum("network", "auto", ["auto", "mrrn", "difn", "cpstn_g",
                                      "cpstn_d"],
                  "Network the file must hold (auto: detect it).")
flags.DEFINE_string("reference_dir", None,
                    "UMF-CMGR reference material (a folder with reference/ "
                    "and RoadScene/); default ../shared/umf-cmgr beside the "
                    "project when it exists.")
flags.DEFINE_integer("pairs", 3, "Reference pairs to run (at most 40).",
                     lower_bound=1)
flags.DEFINE_integer("tolerance_gray", 1, "Largest max abs difference to "
                     "the upstream outputs allowed, in gray levels.")
flags.DEFINE_float("tolerance_flow", 1e-3, "Largest max abs difference to "
                   "upstream's flow allowed (MRRN), in pixels.")
flags.mark_flags_as_required(["src", "dst"])



def default_reference_dir():
    from stdfusion_tf.assets import PROJECT_ROOT  # the clone's root

    return os.path.join(os.path.dirname(PROJECT_ROOT), "shared", "umf-cmgr")


def validate(kind, model, src):
    """Print (and enforce) the numerical checks that apply."""
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import validate as ref

    known = ref.known_weights(src)
    if known is None or known[0] != kind:
        print("No reference available: not one of the known public weight "
              "files (reg_0800.pth / fus_0200.pth by sha256); checked by the "
              "bitwise round trip only.")
        return
    shared = FLAGS.reference_dir or default_reference_dir()
    if not ref.reference_available(shared):
        print(f"No reference available: {shared} has no reference/ and "
              f"RoadScene/ (give --reference_dir); checked by the bitwise "
              "round trip only.")
        return
    figures = ref.compare_with_reference(kind, model, shared, FLAGS.pairs)
    what = {"mrrn": "registered ir_warp -> pseudo_ir vs reference/reg",
            "difn": "fused ir_reg + vi_256 vs reference/fused_reg"}[kind]
    names = figures["names"]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    print(f"Validation on {len(names)} pair(s) ({shown}), {what}: "
          f"max abs diff = {figures['max_gray']} gray level(s), "
          f"{100 * figures['identical']:.3f}% identical pixels in the worst "
          f"image (tolerance {FLAGS.tolerance_gray})")
    if figures["max_gray"] > FLAGS.tolerance_gray:
        raise InputError(src, f"converted {kind} differs from the upstream "
                         f"outputs by {figures['max_gray']} gray levels > "
                         f"{FLAGS.tolerance_gray}; nothing written")
    if kind == "mrrn" and figures["max_flow"] is not None:
        print(f"Flow vs reference/flow ({figures['flows']} pair(s)): max abs "
              f"diff = {figures['max_flow']:.3e} px (tolerance "
              f"{FLAGS.tolerance_flow:.0e})")
        if not figures["max_flow"] <= FLAGS.tolerance_flow:
            raise InputError(src, f"converted MRRN flow differs from "
                             f"upstream's by {figures['max_flow']:.3e} px > "
                             f"{FLAGS.tolerance_flow:.0e}; nothing written")


def main(argv):
    import numpy as np

    from stdfusion_tf.errors import InputError
    from stdfusion_tf.fileio import atomic_output
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf import weights

    from stdfusion_tf import presets

    dst = weights.check_destination(FLAGS.dst)
    FLAGS.src = str(presets.resolve_umf(FLAGS.src))  # a preset name: its .pth
    if weights.is_keras_weights(FLAGS.src):
        raise InputError(FLAGS.src, "is already a Keras .weights.h5 file")
    if os.path.isdir(FLAGS.src):
        raise InputError(FLAGS.src, "is a folder, not a .pth file")
    if not os.path.isfile(FLAGS.src):
        raise InputError(FLAGS.src, "no such file")
    expect = None if FLAGS.network == "auto" else FLAGS.network
    state = weights.unwrap_state_dict(load_pth(FLAGS.src), FLAGS.src)
    kind, model = weights.state_dict_to_model(state, FLAGS.src, expect)
    converted = weights.model_state_dict(model)
    config = weights.infer_config(
        kind, {k: v.shape for k, v in converted.items()}, FLAGS.src)
    sizes = "".join(f", {k}={v}" for k, v in config.items())
    print(f"Read {FLAGS.src}: {weights.TITLES[kind]} ({kind}{sizes}), "
          f"{len(state)} tensors, {len(converted)} variables assigned"
          + (f" ({len(state) - len(converted)} aliases/buffers checked and "
             "dropped)" if len(state) > len(converted) else ""))

    with atomic_output(dst, suffix=".weights.h5") as tmp:
        weights.write_weights(model, tmp)
        _, back = weights.read_keras(tmp, expect=kind)
        again = weights.model_state_dict(back)
        same = all(np.array_equal(again[k], converted[k])
                   and again[k].tobytes() == np.asarray(
                       state.get(k, converted[k]), again[k].dtype).tobytes()
                   for k in converted)
        if not same:
            raise InputError(dst, "written weights do not read back bitwise "
                             "equal to the .pth tensors; nothing written")
        print(f"Round trip: {len(again)} variables read back from the "
              ".weights.h5 bitwise equal to the .pth tensors")
        validate(kind, back, FLAGS.src)
    print(f"Wrote {dst}")


def run():
    """Console script ``stdfusion-convert from_torch``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
