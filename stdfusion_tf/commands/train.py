"""Train STDFusionNet as the authors' released train.py does.

    stdfusion-train                          # 30 epochs, batch 32, Adam 1e-3
    stdfusion-train --epoch 1 --max_steps 50 # a quick look
    stdfusion-train --resume                 # continue the latest checkpoint
    stdfusion-train --init_from checkpoint/Fusion.model-29   # fine-tune the release

Reads Train_ir/, Train_vi/, Train_ir_mask_blur/ (fetched on demand from the
pinned Linfeng-Tang release when the defaults are missing), cuts them into
128x128 patches with stride 24 (checkpoint/<folder>/train.h5) and writes
checkpoint/STDFusion_32_Pixel_Grad/Fusion.model-<epoch> after every epoch.

From a clone: ``python train.py``, the same program and flags.
"""

import os

from absl import flags

from stdfusion_tf import cli

FLAGS = flags.FLAGS
# Upstream's flags, names and defaults.
flags.DEFINE_integer("epoch", 30, "Number of epochs.")
flags.DEFINE_integer("batch_size", 32, "Global batch size (patches per "
                     "optimizer step, over all devices).")
flags.DEFINE_integer("image_size", 128, "Patch size.")
flags.DEFINE_integer("label_size", 128, "Accepted for compatibility; unused "
                     "(as upstream).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("c_dim", 1, "Image channels; only 1 is supported (as "
                     "upstream).")
flags.DEFINE_integer("scale", 3, "Accepted for compatibility; unused (as "
                     "upstream).")
flags.DEFINE_integer("stride", 24, "Patch stride.")
flags.DEFINE_string("checkpoint_dir", "checkpoint", "Patches go to "
                    "<dir>/<folder>/train.h5, checkpoints to "
                    "<dir>/STDFusion_<batch>_Pixel_Grad/.")
flags.DEFINE_string("sample_dir", "sample", "Accepted for compatibility; "
                    "unused (upstream created it and never wrote to it).")
flags.DEFINE_string("summary_dir", "log", "TensorBoard events and log.txt "
                    "(upstream wrote them under Results/).")
flags.DEFINE_boolean("is_train", True, "Must be True: testing is test.py.")
# Data locations (upstream hard-coded these names).
flags.DEFINE_string("ir_dir", "Train_ir", "Infrared training images.")
flags.DEFINE_string("vi_dir", "Train_vi", "Visible training images.")
flags.DEFINE_string("mask_dir", "Train_ir_mask_blur", "Salient-target "
                    "masks (blurred), same names as the images.")
# Behaviour switches, upstream's behaviour by default.
flags.DEFINE_enum("mask_norm", "once", ["once", "twice"], "once: mask (m+1)/2 "
                  "as the paper's Eq. (2)-(5) and the released weights; "
                  "twice: map it again, as the released code literally does.")
flags.DEFINE_boolean("lr_decay", False, "Apply the linear decay after epoch "
                     "epoch/2 that upstream computes but never feeds to the "
                     "optimizer (upstream's effective rate is constant).")
flags.DEFINE_boolean("shuffle", False, "Shuffle patches every epoch (upstream "
                     "uses stored order).")
flags.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon: 1e-8 as TF1's "
                   "AdamOptimizer; 1e-7 is Keras' default.")
flags.DEFINE_boolean("paper_activations", False, "Leaky ReLU instead of ELU "
                     "in reconstruction blocks 1-2 (the paper's Fig. 2; the "
                     "released weights use ELU).")
# Ours.
flags.DEFINE_boolean("resume", False, "Continue from the latest checkpoint "
                     "in the run folder (model and Adam state).")
flags.DEFINE_string("init_from", None, "Start from these weights (TF1 "
                    "release, .weights.h5 or preset name/folder) instead of "
                    "random ones.")
flags.DEFINE_integer("max_steps", None, "Stop after this many optimizer "
                     "steps in total (the checkpoint of that epoch is "
                     "written).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored",
                                          "multi_worker"],
                  "tf.distribute strategy: MirroredStrategy over the local "
                  "devices, or MultiWorkerMirroredStrategy from TF_CONFIG.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many "
                     "logical devices (to try --strategy=mirrored without "
                     "GPUs).")
flags.DEFINE_integer("seed", None, "Random seed of the initial weights "
                     "(and of --shuffle).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "bfloat16: Keras mixed_bfloat16 (bf16 convolutions; "
                  "float32 weights, Adam state, loss and the part of the "
                  "reconstruction network --float32_output names), ~1.6x "
                  "faster per step where bf16 is native (refused "
                  "elsewhere); one epoch tracks float32 (docs/bf16.md).")
flags.DEFINE_enum("float32_output", "auto", ["auto", "none", "output", "elu"],
                  "With --precision=bfloat16, the part of the reconstruction "
                  "network kept in float32: output (the output block), elu "
                  "(from block1's ELU on), none; auto: elu (docs/bf16.md).")
flags.DEFINE_string("mirror", None, "Local copy of the upstream files to "
                    "fetch the default training images from "
                    "(default: $STDFUSION_MIRROR).")


def main(argv):
    import tensorflow as tf

    from stdfusion_tf import assets, fileio, fusion, training
    from stdfusion_tf.data import prepare_training_data
    from stdfusion_tf.errors import InputError

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if not FLAGS.is_train:
        raise InputError(None, "--is_train=false: use test.py to fuse images")
    if FLAGS.c_dim != 1:
        raise InputError(None, "--c_dim must be 1 (gray images)")
    if FLAGS.batch_size < 1 or FLAGS.stride < 1 or FLAGS.image_size < 8:
        raise InputError(None, "--batch_size, --stride must be >= 1 and "
                         "--image_size >= 8")
    fusion.check_precision(FLAGS.precision)  # before any work
    # Every output location, before any work (one line, nothing written).
    for folder in (FLAGS.checkpoint_dir, FLAGS.summary_dir,
                   os.path.join(FLAGS.checkpoint_dir,
                                training.run_name(FLAGS.batch_size))):
        fileio.check_folder(folder)
    fileio.check_file_target("variables.txt")
    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    # MultiWorkerMirroredStrategy must exist before other TF work.
    strategy = training.make_strategy(FLAGS.strategy)
    chief = training.is_chief(strategy)
    if FLAGS.seed is not None:
        import keras
        keras.utils.set_random_seed(FLAGS.seed)

    folders = [FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.mask_dir]
    if folders == ["Train_ir", "Train_vi", "Train_ir_mask_blur"] and \
            not any(os.path.exists(f) for f in folders):
        # only when missing: fetch() replaces files whose hash differs,
        # which would overwrite one's own data kept under these names
        assets.fetch("train_images", root=".", mirror=FLAGS.mirror)
    patches = prepare_training_data(folders, FLAGS.checkpoint_dir,
                                    FLAGS.image_size, FLAGS.stride)
    print(f"{len(patches[0])} patches of {FLAGS.image_size}x"
          f"{FLAGS.image_size} per folder; {strategy.num_replicas_in_sync} "
          f"replica(s), global batch {FLAGS.batch_size}")

    trainer = training.Trainer(
        patches, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, epsilon=FLAGS.adam_epsilon,
        mask_norm=FLAGS.mask_norm, paper_activations=FLAGS.paper_activations,
        shuffle=FLAGS.shuffle, seed=FLAGS.seed or 0, strategy=strategy,
        precision=FLAGS.precision,
        float32_output={"auto": None, "none": False}.get(
            FLAGS.float32_output, FLAGS.float32_output))
    run_dir = os.path.join(FLAGS.checkpoint_dir,
                           training.run_name(FLAGS.batch_size))
    if FLAGS.resume and FLAGS.init_from:
        raise InputError(None, "--resume and --init_from exclude each other")
    if FLAGS.resume:
        prefix, step = trainer.restore(run_dir)
        print(f"Resuming from {prefix} at global step {step}")
    elif FLAGS.init_from:
        from stdfusion_tf.loading import ensure_defaults

        trainer.init_from(ensure_defaults(FLAGS.init_from, None, None,
                                          FLAGS.mirror))
        print(f"Initialised from {FLAGS.init_from}")
    if chief:
        with open("variables.txt", "w") as f:  # as upstream, TF1 names
            for name in trainer.model.tf1_variables():
                f.write(f"STDFusion_model/{name}:0\n")
    try:
        written = training.fit(
            trainer, FLAGS.epoch, run_dir, FLAGS.summary_dir,
            learning_rate=FLAGS.learning_rate, lr_decay=FLAGS.lr_decay,
            max_steps=FLAGS.max_steps, chief=chief)
    except training.TrainingError as exc:
        raise InputError(None, str(exc))
    if written:
        print(f"Wrote {len(written)} checkpoint(s); latest {written[-1]}")


def run():
    """Console script ``stdfusion-train``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
