"""Training DIFN as upstream's ``Trainer/train_fuse.py`` does, on the
project's training engine (:class:`stdfusion_tf.engine.Engine`).

Upstream, reproduced (the code wins where the paper differs):

* data (``dataloader/fuse_data_vsm.py`` ``FuseDataVSM``): registered
  infrared (``--ir_reg``), visible (``--vi``) and the two weight maps of
  ``data/get_svs_map.py`` (``--ir_map``, ``--vi_map``; see
  :mod:`stdfusion_tf.umf.svs`), all read as ``cv2.imread(GRAYSCALE) / 255.``
  (float64, then float32).  Upstream builds a ``RandomResizedCrop(256)``
  and passes it to ``FuseDataVSM``, which never applies it: the images are
  used whole (RoadScene's are 256 x 256), so they must all have one size
  (PyTorch's batch collation needs it too).  Upstream pairs infrared and
  visible by sorted order and asserts equal names, and takes the maps by
  sorted order unchecked; here all four folders are paired by file stem;
* loss (``loss/fusion_loss.py`` ``FusionLoss(alpha=1, beta=20, theta=5)``):
  target ``T = w_ir IR + w_vi VI``;
  ``alpha (1 - MS-SSIM(F, T)) + beta L1(F, T) + theta L1(max(|lap IR|,
  |lap VI|), |lap F|)`` with kornia's 3 x 3 Laplacian (kernel ``[[1, 1, 1],
  [1, -8, 1], [1, 1, 1]] / 16``, reflect border) and ``nn.L1Loss`` means.
  The paper (Eq. 12) weighs the L1 term by 5 and the gradient term by 20:
  the code's 20 / 5 are the defaults (``--beta``, ``--theta`` as upstream's
  argparse).  MS-SSIM as ``loss/ms_ssim.py``: 5 levels, weights (0.0448,
  0.2856, 0.3001, 0.2363, 0.1333), Gaussian window ``min(H, W, 11)`` wide
  (sigma ``1.5 size / 11``, zero padding ``size // 2`` -- an even window
  makes the maps one pixel larger), 2 x 2 average pooling between levels,
  batch-mean SSIM and contrast-structure per level, ``prod(mcs[:4] ** w[:4])
  * ssim[4] ** w[4]``, and ``max_val=255`` although the images are in [0, 1]:
  C1 = 6.5, C2 = 58.5 dwarf the image statistics, so MS-SSIM stays within
  ~1e-4 of 1 and its term hardly trains anything.  Faithful by default;
  ``msssim_max_val=1`` gives the plain MS-SSIM;
* PyTorch's Adam, lr 1e-3 (betas 0.9 / 0.999, eps 1e-8);
  ``adjust_learning_rate`` divides by 10 every ``--step`` = 1000 epochs:
  constant within the 200 epochs;
* batches of 8 in a new random order every epoch, the last one partial
  (``drop_last=False``).  The partial batch is padded with weight-0 samples;
  L1 and gradient terms are weighted sums of per-sample means and each
  MS-SSIM level mean a weighted sum of per-sample means, so the padded
  batch gives the partial batch's loss and gradients exactly;
* 200 epochs (``--nEpochs``), ``fus_<epoch>`` every ``--interval`` = 20.

MS-SSIM is a product of batch means, not a sum over samples: under several
replicas each replica's level means are summed across replicas
(``all_reduce``, values only) and each replica's share of the loss is
linearised around the global means, so the shares sum to the global loss
and the summed gradients are the global batch's.

Ours: the batch order is drawn from NumPy generators seeded by ``(seed,
epoch)``, so a resumed run sees the very batches of an uninterrupted one;
checkpoints are ``fus_<epoch>.weights.h5`` (what ``umf.test_fuse
--checkpoint`` loads) plus ``train_state.npz`` after every epoch.
"""

from math import exp

import numpy as np

from .. import engine
from ..engine import pad_batch, per_sample_mean
from . import difn, task_state, weights

ALPHA, BETA, THETA = 1.0, 20.0, 5.0
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_MAX_VAL = 255.0  # as released (the images are in [0, 1])
SAVE_EVERY = 20  # upstream's --interval
PYTORCH_ADAM_EPSILON = 1e-8
LOSS_TERMS = ("total", "msssim", "l1", "grad")


# ------------------------------------------------------------------ data --

# (in a module of its own so that bad input is refused before TensorFlow
# is imported)
from .fuse_data import read_quads  # noqa: E402,F401


# ------------------------------------------------------------------ loss --

def gaussian_window(size):
    """``create_window(size, 1.5 size / 11, 1)``: the float32 2-D window."""
    sigma = 1.5 * size / 11
    g = np.array([exp(-(x - size // 2) ** 2 / float(2 * sigma ** 2))
                  for x in range(size)], np.float32)
    g = g / g.sum(dtype=np.float32)
    return np.outer(g, g).astype(np.float32)


def _filter(x, window):
    """``F.conv2d(x, window, padding=size // 2)`` on [N, H, W, 1]."""
    from keras import ops

    pad = window.shape[0] // 2
    x = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return ops.conv(x, ops.convert_to_tensor(window[:, :, None, None]),
                    padding="valid")


def ssim_level(img1, img2, max_val):
    """``MSSSIM._ssim`` per sample: (mean SSIM [N], mean contrast-structure
    [N]) at one scale."""
    h, w = img1.shape[1], img1.shape[2]
    window = gaussian_window(min(w, h, 11))
    mu1, mu2 = _filter(img1, window), _filter(img2, window)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _filter(img1 * img1, window) - mu1_sq
    sigma2_sq = _filter(img2 * img2, window) - mu2_sq
    sigma12 = _filter(img1 * img2, window) - mu1_mu2
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    v1 = 2.0 * sigma12 + c2
    v2 = sigma1_sq + sigma2_sq + c2
    ssim_map = ((2 * mu1_mu2 + c1) * v1) / ((mu1_sq + mu2_sq + c1) * v2)
    return per_sample_mean(ssim_map), per_sample_mean(v1 / v2)


def msssim_level_means(img1, img2, weight, max_val=MSSSIM_MAX_VAL,
                       levels=5):
    """[levels, 2] (SSIM, contrast-structure) batch means, each the
    ``weight``-weighted sum of per-sample means."""
    from keras import ops

    out = []
    for _ in range(levels):
        s, c = ssim_level(img1, img2, max_val)
        out.append(ops.stack([ops.sum(weight * s), ops.sum(weight * c)]))
        img1 = ops.average_pool(img1, 2, 2, padding="valid")
        img2 = ops.average_pool(img2, 2, 2, padding="valid")
    return ops.stack(out)


def msssim_from_means(means):
    """``prod(mcs[:-1] ** w[:-1]) * ssim[-1] ** w[-1]`` (float32 weights)."""
    from keras import ops

    w = ops.convert_to_tensor(np.array(MSSSIM_WEIGHTS, np.float32))
    return (ops.prod(ops.power(means[:-1, 1], w[:-1]))
            * ops.power(means[-1, 0], w[-1]))


def laplacian(x):
    """``kornia.filters.laplacian(x, 3)``: normalised 3 x 3 kernel, reflect
    border, on [N, H, W, 1]."""
    from keras import ops

    from .layers import pad2d

    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = -8.0
    kernel /= np.abs(kernel).sum()
    return ops.conv(pad2d(x, (1, 1, 1, 1), "reflect"),
                    ops.convert_to_tensor(kernel[:, :, None, None]),
                    padding="valid")


def fusion_loss(fused, ir, vi, map_ir, map_vi, weight, alpha=ALPHA,
                beta=BETA, theta=THETA, msssim_max_val=MSSSIM_MAX_VAL,
                global_sum=None, replicas=1):
    """``FusionLoss`` -> {total, msssim, l1, grad} on [N, H, W, 1] images in
    [0, 1] with per-sample weights [N] (1 / batch: upstream's batch means).

    ``global_sum`` (optional): sums a replica's values over all replicas
    (no gradient), ``replicas`` their number; each replica then returns its
    share (the shares sum to the global batch's terms)."""
    from keras import ops

    target = map_ir * ir + map_vi * vi
    means = msssim_level_means(fused, target, weight, msssim_max_val)
    if global_sum is None:
        ms_term = 1.0 - msssim_from_means(means)
    else:  # linearised around the global means (see the module docstring)
        total_means = global_sum(ops.stop_gradient(means))
        local = means + ops.stop_gradient(total_means - means)
        ms_global = ops.stop_gradient(msssim_from_means(total_means))
        ms_term = (1.0 / replicas - msssim_from_means(local)
                   + ms_global * ((replicas - 1) / replicas))
    l1 = ops.sum(weight * per_sample_mean(ops.abs(fused - target)))
    joint = ops.maximum(ops.abs(laplacian(ir)), ops.abs(laplacian(vi)))
    grad = ops.sum(weight * per_sample_mean(
        ops.abs(joint - ops.abs(laplacian(fused)))))
    total = alpha * ms_term + beta * l1 + theta * grad
    return {"total": total, "msssim": ms_term, "l1": l1, "grad": grad}


# --------------------------------------------------------------- trainer --

class FuseLossLog(engine.LossLog):
    """DIFN's terms (upstream only plots the total, visdom 'Total-loss')."""

    TERMS = LOSS_TERMS
    SCALARS = {"total": "Total-loss", "msssim": "MSSSIM-loss",
               "l1": "L1-loss", "grad": "Grad-loss"}


class DIFNTrainer(task_state.TorchStateMixin, engine.Engine):
    """DIFN's training task.  ``data`` = (ir, vi, ir_map, vi_map) uint8
    [N, H, W] arrays (:func:`read_quads`)."""

    KIND = "difn"
    LOG = FuseLossLog

    def __init__(self, data, batch_size=8, learning_rate=1e-3, alpha=ALPHA,
                 beta=BETA, theta=THETA, msssim_max_val=MSSSIM_MAX_VAL,
                 seed=0, save_every=SAVE_EVERY, strategy=None):
        self.ir, self.vi, self.ir_map, self.vi_map = data
        self.count_samples(len(self.ir), batch_size, partial=True,
                           what="images", flag="--batchsize")
        self.weights_abt = (alpha, beta, theta)
        self.msssim_max_val = msssim_max_val
        self.seed = seed
        self.save_every = save_every
        super().__init__(lambda dtype: weights.build_model("difn",
                                                           dtype=dtype),
                         batch_size, learning_rate=learning_rate,
                         epsilon=PYTORCH_ADAM_EPSILON, strategy=strategy,
                         adam="torch")

    # ------------------------------------------------------------ batches --
    def batch_arrays(self, epoch, step):
        """(ir, vi, ir_map, vi_map) [B, H, W, 1] in [0, 1] and the
        per-sample loss weights [B] (0 for the partial batch's padding)."""
        idx = self.batch_indices(epoch, step)
        out = tuple(difn.scale_in(a[idx])[..., None]
                    for a in (self.ir, self.vi, self.ir_map, self.vi_map))
        return pad_batch(out, self.batch_size) + (
            self.sample_weights(len(idx)),)

    def batch_signature(self):
        s = self.ir.shape[1:] + (1,)
        return ((s, "float32"),) * 4 + (((), "float32"),)

    # --------------------------------------------------------------- loss --
    def replica_loss(self, ir, vi, ir_map, vi_map, weight):
        fused = self.model((ir, vi), training=True)
        alpha, beta, theta = self.weights_abt
        return fusion_loss(fused, ir, vi, ir_map, vi_map, weight, alpha,
                           beta, theta, self.msssim_max_val,
                           self.replica_sum(), self.replicas())

    # -------------------------------------------------------- checkpoints --
    def weights_files(self, epoch):
        return {f"fus_{epoch:04d}.weights.h5": self.model}
