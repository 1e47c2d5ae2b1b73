"""Flags and loaders shared by the UMF-CMGR command lines."""

from absl import flags

FLAGS = flags.FLAGS


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
    from stdfusion_tf.checkpoints import load_model

    checkpoint = checkpoint or assets.DEFAULT_CHECKPOINT
    if checkpoint == assets.DEFAULT_CHECKPOINT:
        assets.ensure_weights(root=".", mirror=mirror)
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

    from stdfusion_tf import training
    from stdfusion_tf.errors import InputError

    if resume:
        path, at = trainer.restore(ckpt)
        print(f"resuming from {path} at step {at}")
    elif init_from:
        trainer.init_from(init_from)
        print(f"initialised from {init_from}")
    try:
        written = training.fit(
            trainer, epochs, ckpt, summary_dir or os.path.join(ckpt, "log"),
            learning_rate=schedule or (
                lambda epoch: lr * (0.1 ** (epoch // step))),
            max_steps=max_steps, chief=chief)
    except training.TrainingError as exc:
        raise InputError(None, str(exc))
    if written:
        print(f"step {trainer.global_step}; latest checkpoint {written[-1]}")
