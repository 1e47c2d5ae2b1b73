"""Flags and loaders shared by the UMF-CMGR command lines."""

from absl import flags

FLAGS = flags.FLAGS
# How the UMF-CMGR preset names get their weights (the flags' help).
PRESET_HELP = (" (the public retrain HaodeShi/UMF-CMGR-retrain-and-test @ "
               "43f9365, fetched on first use, sha256-checked, into the Keras "
               "cache $KERAS_HOME, else ~/.keras; from $STDFUSION_UMF_MIRROR "
               "when set: a folder with weights/reg_0800.pth and weights/"
               "fus_0200.pth, laid out like ../shared/umf-cmgr).")


def define_target_flags():
    flags.DEFINE_string("target_dir", None, "Registration targets: pseudo-"
                        "infrared images (CPSTN outputs), paired with the "
                        "infrared images by file name.")
    flags.DEFINE_string("cpstn", None, "CPSTN generator weights (.pth, e.g. "
                        "CycleGAN's latest_net_G.pth, or .weights.h5): make "
                        "the pseudo-infrared targets from --vi_dir instead of "
                        "reading --target_dir.")
    flags.DEFINE_enum("target", "pseudo_ir", ["pseudo_ir", "visible"],
                      "pseudo_ir: register to pseudo-infrared images (the "
                      "method).  visible: register straight to the visible "
                      "image's gray levels, a fallback when neither pseudo-"
                      "infrared images nor CPSTN weights exist (MRRN was "
                      "trained mono-modal, so expect less).")
    flags.DEFINE_enum("save_format", "png", ["png", "jpg"], "png: lossless "
                      "(default); jpg: JPEG quality 95 as upstream's "
                      "cv2.imwrite (reproduces the released folders).")


def define_registration_flag(default):
    """--registration: MRRN (test_reg_fusion's default) or this project's
    weight-free registration straight onto the visible image."""
    choices = (["mrrn"] if default == "mrrn" else ["none"]) + [
        "auto", "global", "dense"]
    what = ("mrrn: MRRN onto the pseudo-infrared target (--checkpoint_reg, "
            "--target_dir / --cpstn / --target)" if default == "mrrn" else
            "none: fuse the pairs as given (sizes must match)")
    flags.DEFINE_enum("registration", default, choices, f"{what}; auto "
                      "(global then dense), global, dense: this project's "
                      "weight-free registration of the infrared image "
                      "straight onto the visible one (no weights, no "
                      "pseudo-infrared image; pairs may differ in size, the "
                      "result is in the visible frame).")


def registration_method():
    """The weight-free method chosen by --registration, or None."""
    return (None if FLAGS.registration in ("mrrn", "none")
            else FLAGS.registration)


def load(path, kind, flag):
    """A UMF-CMGR network from a .pth (converted on the fly) or
    .weights.h5; one-line error when the flag is missing."""
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import weights

    if not path:
        raise InputError(None, f"--{flag} is required (weights of the "
                         f"{weights.TITLES[kind]})")
    return weights.load_network(path, expect=kind)[1]


def registrar(checkpoint, cpstn_path=None, flag="checkpoint"):
    from stdfusion_tf.umf import pipeline

    mrrn = load(checkpoint, "mrrn", flag)
    cpstn = load(cpstn_path, "cpstn_g", "cpstn") if cpstn_path else None
    return pipeline.Registrar(mrrn, cpstn)


def fuser(kind, checkpoint, mirror=None, flag="checkpoint"):
    """DIFN (UMF-CMGR) or this project's STDFusionNet."""
    from stdfusion_tf.umf import pipeline

    if kind == "difn":
        return pipeline.DIFNFuser(load(checkpoint, "difn", flag))
    from stdfusion_tf import assets, fusion
    from stdfusion_tf.loading import default_checkpoint, load_model

    checkpoint = default_checkpoint(checkpoint or assets.DEFAULT_CHECKPOINT,
                                    mirror)
    return pipeline.STDFusionNetFuser(fusion.Fuser(load_model(checkpoint)))


def summary(timings):
    import numpy as np

    t = np.asarray(timings[1:] or timings)  # upstream drops the first
    return f"{t.mean():.4f} s per pair (mean of {len(t)}, first excluded)"


def resume_and_fit(trainer, ckpt, resume, init_from, lr, step, epochs,
                   max_steps, summary_dir, chief, schedule=None):
    """The common tail of the umf.train_* commands: resume from ``ckpt``
    (or start from ``init_from``), then the engine's epoch loop with
    ``schedule`` (a function of the 0-based epoch; default upstream's
    ``adjust_learning_rate``: lr / 10 every ``step`` epochs)."""
    import os

    from stdfusion_tf import engine
    from stdfusion_tf.errors import InputError

    if resume:
        path, at = trainer.restore(ckpt)
        print(f"resuming from {path} at step {at}")
    elif init_from:
        trainer.init_from(init_from)
        print(f"initialised from {init_from}")
    try:
        written = engine.fit(
            trainer, epochs, ckpt, summary_dir or os.path.join(ckpt, "log"),
            learning_rate=schedule or (
                lambda epoch: lr * (0.1 ** (epoch // step))),
            max_steps=max_steps, chief=chief)
    except engine.TrainingError as exc:
        raise InputError(None, str(exc))
    if written:
        print(f"step {trainer.global_step}; latest checkpoint {written[-1]}")


# ------------------------------------------------- the training commands --

def define_training_flags(vgg=False):
    """The flags every umf.train_* command has beside upstream's own:
    --max_steps, --summary_dir, --strategy, --cpu_devices (and --vgg19 for
    the losses that need it)."""
    flags.DEFINE_integer("max_steps", None, "Stop after this many optimizer "
                         "steps in total (a checkpoint is written).")
    if vgg:
        flags.DEFINE_string("vgg19", None, "torchvision's vgg19-dcbb9e9d.pth "
                            "for the loss (default: ~/.keras/models/, "
                            "downloaded when missing), or 'random': a "
                            "randomly initialised VGG19, for smoke tests only "
                            "(not upstream's loss).")
    flags.DEFINE_string("summary_dir", None, "log.txt and TensorBoard events "
                        "(default <ckpt>/log).")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored",
                                              "multi_worker"],
                      "tf.distribute strategy.")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many "
                         "logical devices (to try --strategy=mirrored).")


def resolve_vgg19():
    """--vgg19 -> (state dict or None for random, description); checked
    before anything is written, loudly warned when random."""
    import sys

    from stdfusion_tf.umf import vgg

    state, what = vgg.resolve(FLAGS.vgg19)
    if state is None:
        print("WARNING: --vgg19 random: the loss uses a RANDOMLY INITIALISED "
              "VGG19, not torchvision's ImageNet weights -- a smoke test, "
              "not upstream's training", file=sys.stderr, flush=True)
    return state, what


def training_strategy():
    """(tf.distribute strategy, is chief) from --strategy / --cpu_devices."""
    import tensorflow as tf

    from stdfusion_tf import engine

    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    strategy = engine.make_strategy(FLAGS.strategy)
    return strategy, engine.is_chief(strategy)
