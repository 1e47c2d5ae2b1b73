r"""Train CPSTN (UMF-CMGR's visible -> pseudo-infrared CycleGAN) as upstream's
``CPSTN/train.py --model cycle_gan`` does.

    stdfusion-umf train_cpstn --dataroot D --ckpt runs/cpstn
    stdfusion-umf train_cpstn --dataroot D --ckpt runs/cpstn --max_steps 10 \
        --vgg19 random                                 # smoke test only

``D/trainA`` holds the visible images, ``D/trainB`` the infrared ones
(CycleGAN's unaligned layout; not paired).  Resize to 286, random crop 256,
flip, batch 1, LSGAN, history pools of 50, the generator loss with
UMF-CMGR's VGG (content + Gram style), cross L1 and edge terms, Adam 2e-4
(beta1 0.5), 100 epochs + 100 of linear decay; see
``stdfusion_tf/umf/cpstn_training.py`` for what exactly is reproduced.

Writes ``<ckpt>/<epoch>_net_{G_A,G_B,D_A,D_B}.weights.h5`` every
``--save_epoch_freq`` (5) epochs and at the end -- ``G_A`` is the CPSTN
generator that ``umf.test_reg --cpstn`` takes -- ``<ckpt>/train_state.npz``
after every epoch (run again with the same ``--ckpt`` to resume) and
``<ckpt>/log/`` (log.txt, TensorBoard).  The loss needs torchvision's VGG19
ImageNet weights ``vgg19-dcbb9e9d.pth`` (from ~/.keras/models/, downloaded
when missing, or ``--vgg19 FILE``).
"""

import os

from absl import flags

from stdfusion_tf.commands.umf import _common

FLAGS = flags.FLAGS
# Upstream's options (options/base_options.py, train_options.py,
# cycle_gan_model.py): names and defaults.  Fixed upstream choices
# (--model cycle_gan, --netG resnet_9blocks, --netD basic, --norm instance,
# --gan_mode lsgan, --lr_policy linear, --input_nc 3, --output_nc 1,
# --preprocess resize_and_crop, --direction AtoB, --lambda_identity 0) are not
# flags.
flags.DEFINE_string("dataroot", None, "Folder with trainA/ (visible) and "
                    "trainB/ (infrared) images.")
flags.DEFINE_string("phase", "train", "Sub-folders <phase>A, <phase>B.")
flags.DEFINE_integer("batch_size", 1, "Input batch size (global).")
flags.DEFINE_integer("load_size", 286, "Scale images to this size.")
flags.DEFINE_integer("crop_size", 256, "Then crop to this size.")
flags.DEFINE_boolean("no_flip", False, "Do not flip the images.")
flags.DEFINE_boolean("serial_batches", False, "Take images in order (and "
                     "B[i % |B|] instead of a random B).")
flags.DEFINE_integer("ngf", 64, "Generator filters in the last conv layer.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters in the first conv "
                     "layer.")
flags.DEFINE_float("lr", 0.0002, "Initial Adam learning rate.")
flags.DEFINE_float("beta1", 0.5, "Adam beta1.")
flags.DEFINE_integer("n_epochs", 100, "Epochs at the initial learning rate.")
flags.DEFINE_integer("n_epochs_decay", 100, "Epochs of linear decay to 0.")
flags.DEFINE_integer("pool_size", 50, "Image history pool size.")
flags.DEFINE_float("lambda_A", 10.0, "Weight of VGGLoss(rec_A, A).")
flags.DEFINE_float("lambda_B", 10.0, "Weight of VGGLoss(rec_B, B).")
flags.DEFINE_integer("save_epoch_freq", 5, "Write the networks every this "
                     "many epochs.")
flags.DEFINE_string("ckpt", None, "Checkpoint folder (weights, resumable "
                    "state, log); upstream's checkpoints_dir/name.")
# Ours.
flags.DEFINE_boolean("lr_step_at_start", True, "As released: the rate is "
                     "updated at the start of every epoch (train.py calls "
                     "update_learning_rate() first), so the decay starts one "
                     "epoch early and the last epoch trains at 0.  "
                     "--nolr_step_at_start: CycleGAN's original (updated at "
                     "the end).")
_common.define_training_flags(vgg=True)
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and every "
                     "random draw (order, unpaired B, crops, flips, pools; "
                     "and of --vgg19 random).")
flags.mark_flags_as_required(["dataroot", "ckpt"])


def main(argv):
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import cpstn_data, task_state

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if min(FLAGS.batch_size, FLAGS.ngf, FLAGS.ndf, FLAGS.n_epochs,
           FLAGS.save_epoch_freq) < 1 or FLAGS.n_epochs_decay < 0 or \
            FLAGS.pool_size < 0:
        raise InputError(None, "--batch_size, --ngf, --ndf, --n_epochs, "
                         "--save_epoch_freq must be >= 1, --n_epochs_decay "
                         "and --pool_size >= 0")
    if FLAGS.crop_size < 32 or FLAGS.crop_size % 4:
        raise InputError(None, f"--crop_size must be a multiple of 4, at "
                         f"least 32 (the PatchGAN and VGG19's relu5_1 need "
                         f"it), got {FLAGS.crop_size}")
    if not FLAGS.lr > 0 or not 0 <= FLAGS.beta1 < 1:
        raise InputError(None, "--lr must be > 0 and --beta1 in [0, 1)")
    if os.path.exists(FLAGS.ckpt) and not os.path.isdir(FLAGS.ckpt):
        raise InputError(FLAGS.ckpt, "--ckpt is an existing file, not a "
                         "folder")
    # Every input is checked before anything is written.
    names_a, a, names_b, b = cpstn_data.read_unaligned(
        FLAGS.dataroot, FLAGS.phase, FLAGS.load_size, FLAGS.crop_size)
    vgg_state, vgg_what = _common.resolve_vgg19()
    resume = task_state.has_state(FLAGS.ckpt)

    from stdfusion_tf.umf import cpstn_training

    strategy, chief = _common.training_strategy()
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        raise InputError(None, f"--batch_size {FLAGS.batch_size} does not "
                         f"split over {strategy.num_replicas_in_sync} "
                         "replicas")
    trainer = cpstn_training.CPSTNTrainer(
        (a, b), vgg_state, batch_size=FLAGS.batch_size, learning_rate=FLAGS.lr,
        beta1=FLAGS.beta1, ngf=FLAGS.ngf, ndf=FLAGS.ndf,
        crop_size=FLAGS.crop_size, no_flip=FLAGS.no_flip,
        serial_batches=FLAGS.serial_batches, pool_size=FLAGS.pool_size,
        lambda_A=FLAGS.lambda_A, lambda_B=FLAGS.lambda_B, seed=FLAGS.seed,
        vgg_seed=FLAGS.seed, save_every=FLAGS.save_epoch_freq,
        strategy=strategy)
    print(f"{len(names_a)} images in A, {len(names_b)} in B: "
          f"{trainer.steps_per_epoch} steps of {FLAGS.batch_size} per epoch; "
          f"{strategy.num_replicas_in_sync} replica(s); VGG19: {vgg_what}")

    def schedule(epoch):
        return FLAGS.lr * cpstn_training.lr_factor(
            epoch, FLAGS.n_epochs, FLAGS.n_epochs_decay,
            step_at_start=FLAGS.lr_step_at_start)

    _common.resume_and_fit(trainer, FLAGS.ckpt, resume, None, FLAGS.lr, 1,
                           FLAGS.n_epochs + FLAGS.n_epochs_decay,
                           FLAGS.max_steps, FLAGS.summary_dir, chief,
                           schedule=schedule)


def run():
    """``stdfusion-umf train_cpstn``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
