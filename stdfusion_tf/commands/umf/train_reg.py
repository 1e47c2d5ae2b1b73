r"""Train MRRN (UMF-CMGR's registration network) as upstream's
``Trainer/train_reg.py`` does.

    stdfusion-umf train_reg --ir ir_256 --it pseudo_ir --ckpt runs/reg
    stdfusion-umf train_reg --ir ir_256 --it pseudo_ir --ckpt runs/reg \
        --pretrained reg_0800.pth --max_steps 100      # fine-tune the release
    stdfusion-umf train_reg ... --vgg19 random         # smoke test only

Infrared (``--ir``) and pseudo-infrared (``--it``) images of the same names,
one shared RandomResizedCrop(256) per pair, the misalignment made online per
batch, the VGG19-relu4_1 + smoothness loss, Adam 1e-3; see
``stdfusion_tf/umf/reg_training.py`` for what exactly is reproduced.

Writes ``<ckpt>/cp_<epoch>.weights.h5`` every 20 epochs and at the end (what
``umf.test_reg --checkpoint`` takes), ``<ckpt>/train_state.npz`` after every
epoch (run again with the same ``--ckpt`` to resume) and ``<ckpt>/log/``
(log.txt, TensorBoard).  The loss needs torchvision's VGG19 ImageNet weights
``vgg19-dcbb9e9d.pth`` (downloaded to ~/.keras/models/ when missing, or
``--vgg19 FILE``).

Upstream's code trains 800 epochs (``--nEpochs``); the paper says 300.
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
# Upstream's argparse options (names and defaults; the data and checkpoint
# folders have no sensible default here, so they are required).
flags.DEFINE_string("ir", None, "Infrared training images.")
flags.DEFINE_string("it", None, "Pseudo-infrared images (CPSTN outputs), "
                    "same names as --ir.")
flags.DEFINE_integer("batchsize", 16, "Training batch size (global, over all "
                     "devices).")
flags.DEFINE_integer("nEpochs", 800, "Number of epochs (upstream's code: 800; "
                     "the paper: 300).")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("step", 1200, "Learning rate divided by 10 every this "
                     "many epochs (upstream's adjust_learning_rate; never "
                     "within 800 epochs).")
flags.DEFINE_string("pretrained", None, "Start from these MRRN weights "
                    "(.pth, e.g. reg_0800.pth, .weights.h5, or the preset "
                    "umfcmgr_retrain_reg_0800).  Ignored when "
                    "--ckpt holds a training state to resume.")
flags.DEFINE_string("ckpt", None, "Checkpoint folder (weights, resumable "
                    "state, log).")
# Ours.
_common.define_training_flags(vgg=True)
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, the batch "
                     "order, crops and deformations (and of --vgg19 random).")
flags.DEFINE_integer("crop_size", 256, "RandomResizedCrop output size "
                     "(upstream: 256).")
flags.DEFINE_integer("save_every", 20, "Write cp_<epoch>.weights.h5 every "
                     "this many epochs (upstream: 20).")
flags.mark_flags_as_required(["ir", "it", "ckpt"])


def main(argv):
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import reg_training

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if FLAGS.batchsize < 1 or FLAGS.nEpochs < 1 or FLAGS.step < 1 or \
            FLAGS.save_every < 1 or FLAGS.crop_size < 8:
        raise InputError(None, "--batchsize, --nEpochs, --step, --save_every "
                         "must be >= 1 and --crop_size >= 8")
    if not FLAGS.lr > 0:
        raise InputError(None, f"--lr must be > 0, got {FLAGS.lr}")
    if os.path.exists(FLAGS.ckpt) and not os.path.isdir(FLAGS.ckpt):
        raise InputError(FLAGS.ckpt, "--ckpt is an existing file, not a "
                         "folder")
    # Every input is checked before anything is written.
    stems, irs, its = reg_training.read_pairs(FLAGS.ir, FLAGS.it,
                                              FLAGS.crop_size)
    resume = reg_training.has_state(FLAGS.ckpt)
    if FLAGS.pretrained and not resume:
        from stdfusion_tf.umf import weights
        weights.load_network(FLAGS.pretrained, expect="mrrn")  # check it
    vgg_state, vgg_what = _common.resolve_vgg19()
    strategy, chief = _common.training_strategy()
    import keras
    keras.utils.set_random_seed(FLAGS.seed)  # the initial weights
    trainer = reg_training.MRRNTrainer(
        (irs, its), vgg_state, batch_size=FLAGS.batchsize,
        learning_rate=FLAGS.lr, crop_size=FLAGS.crop_size, seed=FLAGS.seed,
        vgg_seed=FLAGS.seed, save_every=FLAGS.save_every, strategy=strategy)
    print(f"{len(stems)} pairs, {trainer.steps_per_epoch} steps of "
          f"{FLAGS.batchsize} per epoch; {strategy.num_replicas_in_sync} "
          f"replica(s); VGG19: {vgg_what}")
    _common.resume_and_fit(trainer, FLAGS.ckpt, resume, FLAGS.pretrained,
                           FLAGS.lr, FLAGS.step, FLAGS.nEpochs,
                           FLAGS.max_steps, FLAGS.summary_dir, chief)

def run():
    """``stdfusion-umf train_reg``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
