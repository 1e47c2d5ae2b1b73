r"""Train DIFN (UMF-CMGR's fusion network) as upstream's
``Trainer/train_fuse.py`` does.

    stdfusion-umf make_svs_maps --input_dir RoadScene --ir_subdir ir_256 \
        --vi_subdir vi_256 --output_dir maps
    stdfusion-umf train_fuse --ir_reg RoadScene/ir_reg --vi RoadScene/vi_256 \
        --ir_map maps/ir_map --vi_map maps/vi_map --ckpt runs/fuse

Registered infrared (``--ir_reg``), visible (``--vi``, read as OpenCV's
gray) and the histogram-saliency weight maps (``umf.make_svs_maps``), paired
by file name, used whole (upstream's RandomResizedCrop is never applied);
loss ``(1 - MS-SSIM(F, T)) + 20 L1(F, T) + 5 L1(max(|lap IR|, |lap VI|),
|lap F|)`` with ``T = w_ir IR + w_vi VI`` (the paper swaps the 20 and the
5); Adam 1e-3, batches of 8, 200 epochs.  See
``stdfusion_tf/umf/fuse_training.py`` for what exactly is reproduced.

Writes ``<ckpt>/fus_<epoch>.weights.h5`` every ``--interval`` (20) epochs
and at the end (what ``umf.test_fuse --checkpoint`` takes),
``<ckpt>/train_state.npz`` after every epoch (run again with the same
``--ckpt`` to resume) and ``<ckpt>/log/`` (log.txt, TensorBoard).
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
# Upstream's argparse options (names and defaults; the data and checkpoint
# folders have no sensible default here, so they are required).
flags.DEFINE_string("ir_reg", None, "Registered infrared training images.")
flags.DEFINE_string("vi", None, "Visible images, same names as --ir_reg.")
flags.DEFINE_string("ir_map", None, "Infrared weight maps "
                    "(umf.make_svs_maps), same names.")
flags.DEFINE_string("vi_map", None, "Visible weight maps, same names.")
flags.DEFINE_float("alpha", 1.0, "Weight of 1 - MS-SSIM.")
flags.DEFINE_float("beta", 20.0, "Weight of the L1 to the target (the "
                   "paper: 5).")
flags.DEFINE_float("theta", 5.0, "Weight of the joint Laplacian term (the "
                   "paper: 20).")
flags.DEFINE_integer("dim", 64, "DIFN feature width (upstream's FuseModule "
                     "is always 64 wide: only 64 runs).")
flags.DEFINE_integer("batchsize", 8, "Training batch size (global, over all "
                     "devices).")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("nEpochs", 200, "Number of epochs.")
flags.DEFINE_integer("step", 1000, "Learning rate divided by 10 every this "
                     "many epochs (upstream's adjust_learning_rate; never "
                     "within 200 epochs).")
flags.DEFINE_integer("interval", 20, "Write fus_<epoch>.weights.h5 every "
                     "this many epochs.")
flags.DEFINE_string("load_model_fuse", None, "Start from these DIFN weights "
                    "(.pth, e.g. fus_0200.pth, .weights.h5, or the preset "
                    "umfcmgr_retrain_fus_0200).  Ignored when "
                    "--ckpt holds a training state to resume.")
flags.DEFINE_string("ckpt", None, "Checkpoint folder (weights, resumable "
                    "state, log).")
# Ours.
flags.DEFINE_float("msssim_max_val", 255.0, "MS-SSIM's max_val.  Upstream: "
                   "255 on [0, 1] images, which keeps MS-SSIM within ~1e-4 "
                   "of 1 (faithful default); 1 for the plain MS-SSIM.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the batch "
                     "order.")
_common.define_training_flags()
flags.mark_flags_as_required(["ir_reg", "vi", "ir_map", "vi_map", "ckpt"])


def main(argv):
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import fuse_data, task_state

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if FLAGS.batchsize < 1 or FLAGS.nEpochs < 1 or FLAGS.step < 1 or \
            FLAGS.interval < 1:
        raise InputError(None, "--batchsize, --nEpochs, --step, --interval "
                         "must be >= 1")
    if FLAGS.dim != 64:
        raise InputError(None, f"--dim must be 64 (upstream's FuseModule is "
                         f"always 64 wide), got {FLAGS.dim}")
    if not FLAGS.lr > 0 or not FLAGS.msssim_max_val > 0:
        raise InputError(None, "--lr and --msssim_max_val must be > 0")
    if os.path.exists(FLAGS.ckpt) and not os.path.isdir(FLAGS.ckpt):
        raise InputError(FLAGS.ckpt, "--ckpt is an existing file, not a "
                         "folder")
    # Every input is checked before anything is written.
    stems, data = fuse_data.read_quads(FLAGS.ir_reg, FLAGS.vi,
                                       FLAGS.ir_map, FLAGS.vi_map)
    resume = task_state.has_state(FLAGS.ckpt)
    if FLAGS.load_model_fuse and not resume:
        from stdfusion_tf.umf import weights
        weights.load_network(FLAGS.load_model_fuse, expect="difn")

    from stdfusion_tf.umf import fuse_training

    strategy, chief = _common.training_strategy()
    import keras
    keras.utils.set_random_seed(FLAGS.seed)  # the initial weights
    trainer = fuse_training.DIFNTrainer(
        data, batch_size=FLAGS.batchsize, learning_rate=FLAGS.lr,
        alpha=FLAGS.alpha, beta=FLAGS.beta, theta=FLAGS.theta,
        msssim_max_val=FLAGS.msssim_max_val, seed=FLAGS.seed,
        save_every=FLAGS.interval, strategy=strategy)
    print(f"{len(stems)} pairs of {data[0].shape[1]}x{data[0].shape[2]}, "
          f"{trainer.steps_per_epoch} steps of {FLAGS.batchsize} per epoch; "
          f"{strategy.num_replicas_in_sync} replica(s); MS-SSIM max_val "
          f"{FLAGS.msssim_max_val:g}")
    _common.resume_and_fit(trainer, FLAGS.ckpt, resume, FLAGS.load_model_fuse,
                           FLAGS.lr, FLAGS.step, FLAGS.nEpochs,
                           FLAGS.max_steps, FLAGS.summary_dir, chief)

def run():
    """``stdfusion-umf train_fuse``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
