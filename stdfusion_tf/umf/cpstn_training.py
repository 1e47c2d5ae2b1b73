"""Training CPSTN (UMF-CMGR's pseudo-infrared generator) as upstream's
``CPSTN/train.py`` with ``models/cycle_gan_model.py`` does, on the project's
training engine (:class:`stdfusion_tf.engine.Engine`).

CPSTN is a CycleGAN with UMF-CMGR's extra losses.  Code names (the paper's):
``G_A`` visible -> infrared (the CPSTN generator used at test time), ``G_B``
infrared -> visible, ``D_A`` judges infrared images, ``D_B`` visible ones.
Upstream, reproduced (the code wins where the paper differs):

* data: :mod:`stdfusion_tf.umf.cpstn_data` (unaligned A/B, resize 286,
  random crop 256, flip, [-1, 1]), batch 1;
* networks: ``resnet_9blocks`` generators, 70 x 70 PatchGAN discriminators,
  instance norm, no dropout, weights N(0, 0.02), biases 0
  (``init_weights('normal', 0.02)``);
* one step = ``optimize_parameters``: forward ``fake_B = G_A(A)``, ``rec_A =
  G_B(fake_B)``, ``fake_A = G_B(B)``, ``rec_B = G_A(fake_A)``; a generator
  step on ``loss_G = GAN(D_A(fake_B)) + GAN(D_B(fake_A)) + 10 VGGLoss(rec_A,
  A) + 10 VGGLoss(rec_B, B) + 8 L1(fake_B, rec_B) + 8 L1(fake_A, rec_A) + 8
  Edge(fake_B, rec_B) + 8 Edge(fake_A, rec_A)`` (the discriminators frozen;
  identity weight 0); then a discriminator step on ``0.5 (GAN(D_A(B), 1) +
  GAN(D_A(pool(fake_B)), 0)) + 0.5 (GAN(D_B(A), 1) + GAN(D_B(pool(fake_A)),
  0))`` with the pre-update fakes through the history pools of 50;
* LSGAN (``MSELoss`` to 1 / 0); ``VGGLoss(x, y) = L1(x, y) + L1(relu4_1(x),
  relu4_1(y)) + 100 sum_i w_i MSE(Gram(relu_i(x)), Gram(relu_i(y)))`` over
  relu1_1 ... relu5_1, w = (1/32, 1/16, 1/8, 1, 1), on [-1, 1] images (gray
  ones repeated to 3 channels), no ImageNet normalisation, y without
  gradient; the Gram matrix views the features as (batch x channels) rows,
  so with a batch above 1 it also multiplies the features of *different*
  samples (as released; batch 1 is the default);
  ``Edge(x, y) = Charbonnier_1e-3(lap(x) - lap(y))`` with ``lap(img) = img -
  g(upsample(downsample(g(img))) * 4)``, g the 5 x 5 ``[.05 .25 .4 .25
  .05]`` outer-product Gaussian with replicate padding;
* two ``torch.optim.Adam(lr 2e-4, betas (0.5, 0.999))``, one for both
  generators and one for both discriminators;
* 100 epochs at the initial rate + 100 of linear decay (``lr_policy
  linear``): ``factor(e) = 1 - max(0, e + epoch_count - n_epochs) /
  (n_epochs_decay + 1)``.  This copy of CycleGAN's ``train.py`` calls
  ``update_learning_rate()`` at the *start* of each epoch (the original
  calls it at the end), so epoch ``e`` (1-based) trains at ``factor(e)``:
  the decay starts one epoch early and epoch 200 trains at rate 0.  As
  released by default; ``lr_step_at_start=False`` gives CycleGAN's
  ``factor(e - 1)``.

Several devices: the global batch is split over replicas; the Gram terms
need every sample's features, so each replica all-gathers them (values
only) and computes its rows of the Gram matrices; ``2 L - stop(L)`` of that
share gives its exact gradient (the Gram is symmetric: the rows' half of
the derivative is mirrored by the columns').  The pools are kept on the
host over the global batch, so N devices train as one.

Ours: every random draw (order, unpaired B, crops, flips, pool) comes from
NumPy generators seeded by ``(seed, epoch)`` / ``(seed, step)``, so a resumed
run repeats an uninterrupted one; with a batch above 1 the last partial
batch of an epoch is dropped (upstream keeps it; batch 1 has none).
Checkpoints ``<epoch>_net_{G_A,G_B,D_A,D_B}.weights.h5`` (``G_A`` loads in
``umf.test_reg --cpstn``) every ``save_epoch_freq`` epochs and at the end,
and ``train_state.npz`` (four networks, both optimizers, both pools, step)
after every epoch.
"""


import numpy as np

from .. import engine
from ..engine import per_sample_mean
from ..errors import InputError
from . import cpstn_data, task_state

NETS = ("G_A", "G_B", "D_A", "D_B")
LAMBDA_A = LAMBDA_B = 10.0  # cycle (here: VGGLoss) weights
CROSS_WEIGHT = EDGE_WEIGHT = 8.0
STYLE_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0, 1.0)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_FACTOR = 100.0
CHARBONNIER_EPS = 1e-3
GAUSS_1D = (0.05, 0.25, 0.4, 0.25, 0.05)
LR, BETA1 = 2e-4, 0.5
PYTORCH_ADAM_EPSILON = 1e-8
POOL_SIZE = 50
SAVE_EPOCH_FREQ = 5
LOSS_TERMS = ("total", "G_A", "G_B", "cycle_A", "cycle_B", "cross_AB",
              "edge_AB", "D_A", "D_B")


def lr_factor(epoch, n_epochs=100, n_epochs_decay=100, epoch_count=1,
              step_at_start=True):
    """The rate factor of 0-based ``epoch`` (see the module docstring)."""
    e = epoch + 1 if step_at_start else epoch
    return 1.0 - max(0, e + epoch_count - n_epochs) / float(
        n_epochs_decay + 1)


# ------------------------------------------------------------ networks --

def cycle_gan_class():
    import keras

    from .cpstn import CPSTNGenerator, PatchDiscriminator

    class CycleGAN(keras.Model):
        """The four networks of ``CycleGANModel`` (``netG_A`` ...)."""

        def __init__(self, input_nc=3, output_nc=1, ngf=64, ndf=64,
                     n_layers_D=3, **kwargs):
            super().__init__(name="CycleGAN", **kwargs)
            dtype = self.dtype_policy
            self.netG_A = CPSTNGenerator(input_nc, output_nc, ngf,
                                         name="G_A", dtype=dtype)
            self.netG_B = CPSTNGenerator(output_nc, input_nc, ngf,
                                         name="G_B", dtype=dtype)
            self.netD_A = PatchDiscriminator(output_nc, ndf, n_layers_D,
                                             name="D_A", dtype=dtype)
            self.netD_B = PatchDiscriminator(input_nc, ndf, n_layers_D,
                                             name="D_B", dtype=dtype)
            self.built = True

        def net(self, name):
            return getattr(self, "net" + name)

        def torch_variables(self):
            """{'<net>/<upstream state_dict key>': variable}."""
            return {f"{n}/{k}": v for n in NETS
                    for k, v in self.net(n).torch_variables().items()}

    return CycleGAN


def init_normal(model, rng):
    """``init_weights(net, 'normal', 0.02)``: every conv weight N(0, 0.02),
    biases 0 (drawn with NumPy, network by network in upstream's order)."""
    for key, var in model.torch_variables().items():
        if key.endswith(".weight"):
            var.assign((rng.standard_normal(tuple(var.shape)) * 0.02)
                       .astype(np.float32))
        else:
            var.assign(np.zeros(tuple(var.shape), np.float32))


# ---------------------------------------------------------------- loss --

def gan_loss(pred, target_is_real):
    """LSGAN per sample: mean((D(x) - label)^2)."""
    from keras import ops

    return per_sample_mean(ops.square(pred - (1.0 if target_is_real
                                              else 0.0)))


def _gram_rows(f, hw):
    """[n, h, w, c] -> [n c, h w]: the rows of upstream's
    ``input.view(a * b, c * d)`` (``hw`` = h w: an all-gathered tensor has
    no static shape)."""
    from keras import ops

    return ops.reshape(ops.transpose(f, (0, 3, 1, 2)), (-1, hw))


def gram_mse_share(fx, fy, total_batch, gather=None):
    """This replica's share of ``MSE(Gram(fx), Gram(fy))`` over the global
    batch (``gather``: all-gathers a replica's [n, ...] values over the
    replicas, None on one device).  Gradient exact (see the module
    docstring)."""
    from keras import ops

    c, hw = fx.shape[-1], fx.shape[1] * fx.shape[2]
    norm = float(total_batch * c * hw)  # a * b * c * d
    x_rows = _gram_rows(fx, hw)
    y_rows = _gram_rows(ops.stop_gradient(fy), hw)
    x_all = ops.stop_gradient(gather(fx) if gather else fx)
    y_all = ops.stop_gradient(gather(fy) if gather else fy)
    gx = ops.matmul(x_rows, ops.transpose(_gram_rows(x_all, hw))) / norm
    gy = ops.matmul(y_rows, ops.transpose(_gram_rows(y_all, hw))) / norm
    share = ops.sum(ops.square(gx - gy)) / float(total_batch * c) ** 2
    return 2.0 * share - ops.stop_gradient(share)


def vgg_loss(vgg, x, y, total_batch, gather=None):
    """Upstream's CPSTN ``VGGLoss(x, y)``: this replica's share of the
    global batch's value."""
    from keras import ops

    if x.shape[-1] == 1:
        x, y = ops.repeat(x, 3, axis=-1), ops.repeat(y, 3, axis=-1)
    fx = vgg(x, outputs=STYLE_LAYERS)
    fy = [ops.stop_gradient(f) for f in vgg(y, outputs=STYLE_LAYERS)]
    style = 0.0
    for w, a, b in zip(STYLE_WEIGHTS, fx, fy):
        style = style + w * gram_mse_share(a, b, total_batch, gather)
    content = ops.sum(per_sample_mean(ops.abs(fx[3] - fy[3]))) / total_batch
    l1 = ops.sum(per_sample_mean(ops.abs(x - y))) / total_batch
    return l1 + content + STYLE_FACTOR * style


def _gauss(x):
    """``EdgeLoss.conv_gauss``: replicate pad 2, depthwise 5 x 5 Gaussian."""
    from keras import ops

    from .layers import pad2d

    # as upstream: float32 taps, their products rounded to float32
    k1 = np.array(GAUSS_1D, np.float32)
    k = np.outer(k1, k1)
    c = x.shape[-1]
    kernel = ops.cast(np.repeat(k[:, :, None, None], c, 2), x.dtype)
    return ops.depthwise_conv(pad2d(x, (2, 2, 2, 2), "replicate"), kernel,
                              padding="valid")


def laplacian_level(x):
    """``EdgeLoss.laplacian_kernel``: x - g(4 * g(x) kept at even pixels)."""
    from keras import ops

    h, w = x.shape[1], x.shape[2]
    mask = np.zeros((1, h, w, 1), np.float32)
    mask[:, ::2, ::2] = 4.0
    filtered = _gauss(x)
    return x - _gauss(filtered * ops.cast(mask, x.dtype))


def edge_loss(x, y):
    """``EdgeLoss(x, y)`` per sample (Charbonnier, eps 1e-3)."""
    from keras import ops

    if x.shape[-1] == 1:
        x, y = ops.repeat(x, 3, axis=-1), ops.repeat(y, 3, axis=-1)
    d = laplacian_level(x) - laplacian_level(y)
    return per_sample_mean(ops.sqrt(d * d + CHARBONNIER_EPS ** 2))


def l1(x, y):
    from keras import ops

    return per_sample_mean(ops.abs(x - y))


def generator_loss(model, vgg, real_A, real_B, total_batch, gather=None,
                   lambda_A=LAMBDA_A, lambda_B=LAMBDA_B):
    """``backward_G``'s terms (this replica's shares) and the fakes."""
    from keras import ops

    fake_B = model.netG_A(real_A)
    rec_A = model.netG_B(fake_B)
    fake_A = model.netG_B(real_B)
    rec_B = model.netG_A(fake_A)

    def mean(per_sample):
        return ops.sum(per_sample) / total_batch

    terms = {
        "G_A": mean(gan_loss(model.netD_A(fake_B), True)),
        "G_B": mean(gan_loss(model.netD_B(fake_A), True)),
        "cycle_A": lambda_A * vgg_loss(vgg, rec_A, real_A, total_batch,
                                       gather),
        "cycle_B": lambda_B * vgg_loss(vgg, rec_B, real_B, total_batch,
                                       gather),
        "cross_AB": CROSS_WEIGHT * (mean(l1(fake_B, rec_B))
                                    + mean(l1(fake_A, rec_A))),
        "edge_AB": EDGE_WEIGHT * (mean(edge_loss(fake_B, rec_B))
                                  + mean(edge_loss(fake_A, rec_A))),
    }
    terms["total"] = sum(terms[k] for k in ("G_A", "G_B", "cycle_A",
                                            "cycle_B", "cross_AB",
                                            "edge_AB"))
    return terms, fake_B, fake_A


def discriminator_loss(model, real_A, real_B, pool_B, pool_A, total_batch):
    """``backward_D_A`` + ``backward_D_B`` (this replica's shares)."""
    from keras import ops

    def mean(per_sample):
        return ops.sum(per_sample) / total_batch

    d_a = 0.5 * (mean(gan_loss(model.netD_A(real_B), True))
                 + mean(gan_loss(model.netD_A(pool_B), False)))
    d_b = 0.5 * (mean(gan_loss(model.netD_B(real_A), True))
                 + mean(gan_loss(model.netD_B(pool_A), False)))
    return {"D_A": d_a, "D_B": d_b}


# ------------------------------------------------------------- trainer --

class CPSTNLossLog(engine.LossLog):
    """Upstream's ``loss_names`` (identity terms are 0 and left out) plus
    the cross and edge terms it computes but does not print."""

    TERMS = LOSS_TERMS
    SCALARS = {"total": "G"}

    def lines(self, m, lr, epoch, epochs, step, steps, elapsed):
        body = " ".join(f"{k}: {m[k]:.3f}" for k in LOSS_TERMS[1:])
        return [], ("(epoch: %d, iters: %d/%d, time: %.3f, lr: %.7f) G: %.3f "
                    "%s" % (epoch + 1, step + 1, steps, elapsed, lr,
                            m["total"], body))


class CPSTNTrainer(task_state.TorchStateMixin, engine.Engine):
    """CPSTN's training task.  ``data`` = (A uint8 [N_A, L, L, 3], B uint8
    [N_B, L, L]) resized to ``load_size`` (:func:`cpstn_data.
    read_unaligned`); ``vgg_state``: torchvision's VGG19 state dict, or
    None for a random one (``vgg_seed``)."""

    KIND = "cpstn"
    TITLE = "CPSTN CycleGAN"
    LOG = CPSTNLossLog

    def __init__(self, data, vgg_state=None, batch_size=1, learning_rate=LR,
                 beta1=BETA1, ngf=64, ndf=64, crop_size=cpstn_data.CROP_SIZE,
                 no_flip=False, serial_batches=False, pool_size=POOL_SIZE,
                 lambda_A=LAMBDA_A, lambda_B=LAMBDA_B, seed=0, vgg_seed=0,
                 save_every=SAVE_EPOCH_FREQ, strategy=None,
                 precision="float32"):
        from . import vgg

        self.A, self.B = data
        self.size = max(len(self.A), len(self.B))
        # both domains need images; an epoch runs over the larger one
        self.count_samples(self.size if len(self.A) and len(self.B) else 0,
                           batch_size, what="images")
        self.crop_size = crop_size
        self.no_flip = no_flip
        self.serial_batches = serial_batches
        self.lambdas = (lambda_A, lambda_B)
        self.seed = seed
        self.save_every = save_every
        self.pools = {"A": cpstn_data.ImagePool(pool_size),
                      "B": cpstn_data.ImagePool(pool_size)}
        state = vgg_state if vgg_state is not None else \
            vgg.random_state_dict(vgg_seed, vgg.RELU["relu5_1"])
        config = dict(input_nc=3, output_nc=1, ngf=ngf, ndf=ndf)

        def build(dtype):
            self.vgg = vgg.build(vgg.RELU["relu5_1"], state, dtype=dtype)
            model = cycle_gan_class()(dtype=dtype, **config)
            init_normal(model, np.random.default_rng([seed, 1]))
            return model

        super().__init__(build, batch_size, learning_rate=learning_rate,
                         epsilon=PYTORCH_ADAM_EPSILON, strategy=strategy,
                         adam="torch", beta_1=beta1, precision=precision)
        self.dtype = "float64" if precision == "float64" else "float32"
        import tensorflow as tf

        self.optimizer_D = self.make_optimizer(
            self.d_variables(), "torch", learning_rate, beta1,
            PYTORCH_ADAM_EPSILON, name="adam_D")
        self._g_step = tf.function(self._distributed_g_step)
        self._d_step = tf.function(self._distributed_d_step)

    def optimized_variables(self):  # the generators' optimizer
        return (self.model.netG_A.trainable_variables
                + self.model.netG_B.trainable_variables)

    def d_variables(self):
        return (self.model.netD_A.trainable_variables
                + self.model.netD_B.trainable_variables)

    def state_optimizers(self):
        return [self.optimizer, self.optimizer_D]

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)
        self.optimizer_D.learning_rate.assign(value)

    # ------------------------------------------------------------ batches --
    def order(self, epoch):
        if self.serial_batches:
            return np.arange(self.size)
        return super().order(epoch)

    def batch_arrays(self, epoch, step):
        """(A [b, S, S, 3], B [b, S, S, 1]) in [-1, 1]."""
        s = self.crop_size
        idx = self.batch_indices(epoch, step)
        rng = np.random.default_rng([self.seed, epoch, step, 2])
        a_out, b_out = [], []
        for i in idx:
            j = (i % len(self.B) if self.serial_batches
                 else int(rng.integers(0, len(self.B))))
            a_out.append(cpstn_data.random_crop_flip(
                rng, self.A[i % len(self.A)], s, self.no_flip))
            b_out.append(cpstn_data.random_crop_flip(
                rng, self.B[j], s, self.no_flip))
        return (cpstn_data.scale_in(np.stack(a_out)).astype(self.dtype),
                cpstn_data.scale_in(np.stack(b_out))[..., None].astype(
                    self.dtype))

    def batch_signature(self):
        s = self.crop_size
        return (((s, s, 3), self.dtype), ((s, s, 1), self.dtype))

    # --------------------------------------------------------------- step --
    # Both steps are the engine's replica step (minimize) with their own
    # loss, optimizer and variables, summed / gathered by on_replicas.
    def _replica_g_step(self, real_A, real_B):
        def loss():
            terms, fake_B, fake_A = generator_loss(
                self.model, self.vgg, real_A, real_B, self.batch_size,
                self.replica_gather(), *self.lambdas)
            return terms["total"], (terms, fake_B, fake_A)

        return self.minimize(loss)

    def _distributed_g_step(self, real_A, real_B):
        return self.on_replicas(self._replica_g_step, real_A, real_B)

    def _replica_d_step(self, real_A, real_B, pool_B, pool_A):
        def loss():
            terms = discriminator_loss(self.model, real_A, real_B, pool_B,
                                       pool_A, self.batch_size)
            return terms["D_A"] + terms["D_B"], terms

        return self.minimize(loss, self.optimizer_D, self.d_variables())

    def _distributed_d_step(self, real_A, real_B, pool_B, pool_A):
        return self.on_replicas(self._replica_d_step, real_A, real_B,
                                pool_B, pool_A)

    def _distribute(self, array):
        """A global-batch NumPy array -> per-replica slices."""
        n = self.strategy.num_replicas_in_sync
        if n == 1:
            return array
        local = len(array) // n
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: array[ctx.replica_id_in_sync_group * local:
                              (ctx.replica_id_in_sync_group + 1) * local])

    def train_step(self, batch):
        """``optimize_parameters``: generator step, pools, discriminator
        step -> {term: float}."""
        real_A, real_B = batch
        rng = np.random.default_rng([self.seed, self.global_step, 3])
        terms, fake_B, fake_A = self._g_step(real_A, real_B)
        # upstream queries fake_B's pool (D_A) first, then fake_A's (D_B)
        pool_B = self.pools["B"].query(np.asarray(fake_B), rng)
        pool_A = self.pools["A"].query(np.asarray(fake_A), rng)
        d_terms = self._d_step(real_A, real_B, self._distribute(pool_B),
                               self._distribute(pool_A))
        out = {k: float(v) for k, v in terms.items()}
        out.update({k: float(v) for k, v in d_terms.items()})
        return out

    # -------------------------------------------------------- checkpoints --
    def extra_state(self):
        s = self.crop_size
        return {"pool_A": self.pools["A"].state((s, s, 3)),
                "pool_B": self.pools["B"].state((s, s, 1))}

    def restore_extra(self, arrays, path):
        try:
            for k in ("A", "B"):
                self.pools[k].load(arrays[f"pool_{k}"])
        except (KeyError, ValueError):
            raise InputError(path, "no image pools of this CPSTN training "
                             "in the state") from None

    def weights_files(self, epoch):
        """``<epoch>_net_<G_A|G_B|D_A|D_B>``; G_A (first, the one reported)
        is the CPSTN generator."""
        return {f"{epoch}_net_{n}.weights.h5": self.model.net(n)
                for n in NETS}

    def init_from(self, src):
        raise InputError(src, "CPSTN training starts from scratch or resumes "
                         "its --ckpt")

