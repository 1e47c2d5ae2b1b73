"""Training MRRN as upstream's ``Trainer/train_reg.py`` does, on the project's
training engine (:class:`stdfusion_tf.engine.Engine`).

Upstream, reproduced (the code wins where the paper differs):

* data (``dataloader/reg_data.py`` ``RegData``): each infrared image and the
  pseudo-infrared image of the same name, read as ``cv2.imread(GRAYSCALE) /
  255``, stacked as one 2-channel PIL image (``to_pil_image``: mode ``LA``)
  and cut with one shared ``RandomResizedCrop(256)`` (scale (0.08, 1), ratio
  (3/4, 4/3), bilinear; torchvision's parameter draw and ``resized_crop``).
  As released, Pillow resizes an ``LA`` image *premultiplied by its alpha
  channel* -- here the pseudo-infrared one -- so the infrared crop is
  interpolated with weights scaled by the pseudo-infrared values (and is 0
  where those are 0).  Reproduced by doing the same with Pillow;
* misalignment made online per batch (``functions/affine_transform.py``,
  ``elastic_transform.py``): a random translation of up to 1 % then the
  elastic field (101 x 101 Gaussian, sigma 16) of
  :mod:`stdfusion_tf.umf.deform`, applied to the cropped infrared (float,
  not quantised); the network registers it (``src``) to the pseudo-infrared
  crop (``tgt``);
* loss (``loss/reg_losses.py`` ``LossFunction_Dense``):
  ``feat + 10 grad`` with ``feat = L1(VGG(registered), VGG(tgt)) + 0.2
  L1(VGG(tgt warped by -flow), VGG(src))`` on VGG19 relu4_1 (gray repeated
  to 3 channels, [0, 1], no ImageNet normalisation; ``nn.L1Loss`` means)
  and ``grad = (mean(dx^2) + mean(dy^2)) / 2`` of the full-resolution flow
  -- squared although the paper's Eq. 14 writes an L1 norm.  The pixel L1
  ``L1(tgt, registered) + 0.2 L1(src, tgt warped)`` is computed and logged
  but, as upstream, not part of the total;
* PyTorch's Adam (lr 1e-3, betas 0.9 / 0.999, eps 1e-8); upstream's
  ``adjust_learning_rate`` decays by 10 every ``--step`` = 1200 epochs, never
  within the 800 epochs: a constant rate;
* batches of 16 in a new random order every epoch, the last one partial
  (``DataLoader(batch, shuffle=True)``, ``drop_last=False``: 221 pairs are
  13 batches of 16 and one of 13).  The partial batch is padded to the full
  size with samples of weight 0, and every loss term is a weighted sum of
  per-sample means (weight ``1 / real batch size``), so the padded batch
  gives exactly the partial batch's loss and gradients, on any number of
  replicas;
* 800 epochs (``--nEpochs``; the paper says 300), a checkpoint every 20.

Ours: every random number (order, crops, deformations) is drawn from NumPy
generators seeded by ``(seed, epoch, step)``, so a resumed run sees the very
batches of an uninterrupted one; checkpoints are ``cp_<epoch>.weights.h5``
(what ``umf.test_reg --checkpoint`` loads) plus ``train_state.npz`` after
every epoch (resumable state: the MRRN variables, every Adam variable and
the step), written atomically.
"""

import math

import numpy as np

from .. import engine, images
from ..engine import pad_batch, per_sample_mean
from ..errors import InputError
from . import deform, weights
from .task_state import STATE_FILE, TorchStateMixin, has_state  # noqa: F401

CROP_SIZE = 256
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
FEAT_WEIGHT, REVERSE_WEIGHT, GRAD_WEIGHT = 1.0, 0.2, 10.0
SAVE_EVERY = 20  # upstream: save_checkpoint when epoch % 20 == 0
PYTORCH_ADAM_EPSILON = 1e-8
LOSS_TERMS = ("total", "feat", "pixel", "grad")


# ------------------------------------------------------------------ data --

def read_pairs(ir_dir, it_dir, crop_size=CROP_SIZE):
    """(stems, ir uint8 [N, H, W] list, it list): infrared and pseudo-
    infrared images paired by name, same size, at least the crop size."""
    stems, paths, _ = images.pair_folders(ir_dir, it_dir)
    irs, its = [], []
    for ir_path, it_path in paths:
        ir = images.read_gray_cv2(ir_path)
        it = images.read_gray_cv2(it_path)
        if ir.shape != it.shape:
            raise InputError(it_path, "size mismatch: {}x{} (H x W) but {} is "
                             "{}x{}".format(*it.shape, ir_path, *ir.shape))
        if min(ir.shape) < crop_size:
            raise InputError(ir_path, "{}x{} (H x W) is smaller than the "
                             "{}x{} training crop".format(*ir.shape, crop_size,
                                                         crop_size))
        irs.append(ir)
        its.append(it)
    return stems, irs, its


def crop_params(rng, height, width, scale=CROP_SCALE, ratio=CROP_RATIO):
    """torchvision ``RandomResizedCrop.get_params`` -> (i, j, h, w), with a
    NumPy generator instead of torch's."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(ir_u8, it_u8, box, size=CROP_SIZE):
    """``RegData``'s shared crop: the pair as one ``LA`` PIL image,
    ``crop`` then ``resize((size, size), BILINEAR)`` -- Pillow premultiplies
    L by A for that, as upstream -- then ``to_tensor`` (``u8 / 255`` in
    float32).  (``to_pil_image``'s ``mul(255).byte()`` gives back every
    ``u8 / 255`` exactly, checked for all 256 values.)  -> float32 (ir, it)
    [size, size]."""
    from PIL import Image

    i, j, h, w = box
    im = Image.fromarray(np.stack([ir_u8, it_u8], axis=-1))  # LA
    im = im.crop((j, i, j + w, i + h)).resize((size, size),
                                              Image.Resampling.BILINEAR)
    a = np.asarray(im, np.float32) / np.float32(255)
    return a[..., 0], a[..., 1]


def misalign(ir, rng):
    """Upstream's online misalignment of one crop (float32 [H, W]): the
    translation then the elastic deformation of :mod:`deform` (zero
    padding, two resamplings) -> float32 [H, W]."""
    translation, noise = deform.draw(rng, ir.shape)
    elastic = deform.elastic_field(noise)
    return deform.deform_image(ir, translation, elastic).astype(np.float32)


# ------------------------------------------------------------------ loss --

def smoothness(flow):
    """Upstream's ``gradient_loss`` (penalty 'l2') per sample:
    ``(mean(dx^2) + mean(dy^2)) / 2`` of the [N, H, W, 2] flow."""
    dy = flow[:, 1:, :, :] - flow[:, :-1, :, :]
    dx = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    return (per_sample_mean(dx * dx) + per_sample_mean(dy * dy)) / 2.0


def vgg_features(vgg, x):
    """VGG19 relu4_1 of a gray [N, H, W, 1] image repeated to 3 channels."""
    from keras import ops

    return vgg(ops.repeat(x, 3, axis=-1), outputs=("relu4_1",))[0]


def feature_l1(vgg, x, y):
    """Upstream's registration ``VGGLoss(x, y)`` per sample: L1 mean of
    the relu4_1 features, ``y``'s without gradient."""
    from keras import ops

    fy = ops.stop_gradient(vgg_features(vgg, y))
    return per_sample_mean(ops.abs(vgg_features(vgg, x) - fy))


def reg_loss(vgg, registered, tgt_warped, tgt, src, flow, weight):
    """``LossFunction_Dense`` -> {total, feat, pixel, grad}: each the
    ``weight``-weighted sum of per-sample values (weights 1 / batch give
    upstream's batch means)."""
    from keras import ops

    feat = (feature_l1(vgg, registered, tgt)
            + REVERSE_WEIGHT * feature_l1(vgg, tgt_warped, src))
    pixel = (per_sample_mean(ops.abs(tgt - registered))
             + REVERSE_WEIGHT * per_sample_mean(ops.abs(src - tgt_warped)))
    grad = smoothness(flow)
    total = FEAT_WEIGHT * feat + GRAD_WEIGHT * grad
    return {k: ops.sum(weight * v) for k, v in
            (("total", total), ("feat", feat), ("pixel", pixel),
             ("grad", grad))}


# --------------------------------------------------------------- trainer --

class RegLossLog(engine.LossLog):
    """MRRN's terms; TensorBoard names as upstream's visdom windows."""

    TERMS = LOSS_TERMS
    SCALARS = {"total": "Total-loss", "feat": "Feats-loss",
               "pixel": "Pixel-loss", "grad": "Grad-loss"}


class MRRNTrainer(TorchStateMixin, engine.Engine):
    """MRRN's training task.  ``pairs`` = (ir list, it list) of uint8
    images (:func:`read_pairs`); ``vgg_state``: a torchvision VGG19 state
    dict, or None for a random one (``vgg_seed``)."""

    KIND = "mrrn"
    LOG = RegLossLog

    def __init__(self, pairs, vgg_state=None, batch_size=16,
                 learning_rate=1e-3, crop_size=CROP_SIZE, seed=0,
                 vgg_seed=0, save_every=SAVE_EVERY, strategy=None):
        from . import vgg

        self.ir, self.it = pairs
        self.count_samples(len(self.ir), batch_size, partial=True,
                           what="pairs", flag="--batchsize")
        self.crop_size = crop_size
        self.seed = seed
        self.save_every = save_every
        state = vgg_state if vgg_state is not None else \
            vgg.random_state_dict(vgg_seed, vgg.RELU["relu4_1"])

        def build(dtype):
            self.vgg = vgg.build(vgg.RELU["relu4_1"], state)
            return weights.build_model("mrrn", dtype=dtype)

        super().__init__(build, batch_size, learning_rate=learning_rate,
                         epsilon=PYTORCH_ADAM_EPSILON, strategy=strategy,
                         adam="torch")

    # ------------------------------------------------------------ batches --
    def batch_arrays(self, epoch, step):
        """(tgt, src, weight): pseudo-infrared crops, misaligned infrared
        crops [B, S, S, 1], per-sample loss weights [B]."""
        s = self.crop_size
        idx = self.batch_indices(epoch, step)
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        tgt = np.zeros((len(idx), s, s, 1), np.float32)
        src = np.zeros((len(idx), s, s, 1), np.float32)
        for k, i in enumerate(idx):
            box = crop_params(rng, *self.ir[i].shape)
            ir, it = resized_crop(self.ir[i], self.it[i], box, s)
            tgt[k, ..., 0] = it
            src[k, ..., 0] = misalign(ir, rng)
        return pad_batch((tgt, src), self.batch_size) + (
            self.sample_weights(len(idx)),)

    def batch_signature(self):
        s = (self.crop_size, self.crop_size, 1)
        return ((s, "float32"), (s, "float32"), ((), "float32"))

    # --------------------------------------------------------------- loss --
    def replica_loss(self, tgt, src, weight):
        registered, tgt_warped, flow = self.model((tgt, src), training=True)
        return reg_loss(self.vgg, registered, tgt_warped, tgt, src, flow,
                        weight)

    # -------------------------------------------------------- checkpoints --
    def weights_files(self, epoch):
        return {f"cp_{epoch:04d}.weights.h5": self.model}


