"""Training STDFusionNet as the released code does, resumable and distributed.

The machinery is the project's one training engine (:class:`Engine`,
:func:`fit`, :class:`LossLog`), shared with UMF-CMGR's networks: a network's
training is a small task class on it (batches, loss, checkpoint format, log
line); :class:`Trainer` is STDFusionNet's, ``stdfusion_tf.umf.reg_training``
holds MRRN's.

Upstream (``train.py`` / ``model.py`` of the release), reproduced:

* batches of 32 patches in stored order, ``N // 32`` per epoch (216 for the
  6921 patches), the remainder dropped, no shuffling;
* the loss of ``losses.fusion_loss`` (Eq. (2)-(6));
* TF1 ``AdamOptimizer(1e-3)``: beta1 0.9, beta2 0.999, **epsilon 1e-8**
  (Keras' default is 1e-7).  Upstream computes a linear decay after epoch 15
  but feeds it to a placeholder the optimizer never reads, so the effective
  learning rate is a constant 1e-3; ``lr_decay=True`` applies the schedule;
* after each epoch ``ep`` (0-based) a TF1-format checkpoint
  ``<checkpoint_dir>/STDFusion_32_Pixel_Grad/Fusion.model-<ep>`` with the
  72 variables under ``STDFusion_model/``, plus the Adam slots under their
  TF1 names (``.../w/Adam``, ``.../w/Adam_1``, ``beta1_power``,
  ``beta2_power``) and ``global_step``, so that a run can be resumed exactly.

Everything runs under a ``tf.distribute`` strategy (the default one on a
single device); the global batch and the loss are the same on any number of
replicas.

``precision="bfloat16"`` (ours, not upstream's) trains under Keras'
``mixed_bfloat16`` policy: the convolutions compute in bf16, while the
weights, the Adam slots, the loss and its reductions stay float32 (the
network's bf16 output is cast to float32 before the loss, so the targets,
the Sobel gradients and the means are float32).  bf16 has float32's exponent
range, so no loss scaling is needed.
"""

import math
import os
import time

import numpy as np

from .checkpoints import (DEFAULT_ROOT, read_tf1_checkpoint,
                          split_tf1_tensors, check_arrays, write_tf1_checkpoint)
from .errors import InputError
from .loading import read_weights
from .losses import fusion_loss

LOSS_TERMS = ("total", "vi_pixel", "ir_pixel", "vi_grad", "ir_grad")
BETA_1, BETA_2 = 0.9, 0.999
TF1_ADAM_EPSILON = 1e-8
SHOW_EVERY = 50  # upstream's show_num
# float64: not offered by the command lines; the step-equality tests use it
# where float32 itself is ill-conditioned (CPSTN's training).
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16",
              "float64": "float64"}


class TrainingError(Exception):
    """Training cannot go on (non-finite loss); the message is one line."""


def run_name(batch_size):
    """Upstream's checkpoint sub-folder: STDFusion_<batch>_Pixel_Grad."""
    return f"STDFusion_{batch_size}_Pixel_Grad"


def upstream_learning_rate(epoch, epochs, base):
    """The schedule upstream computes (and never applies): constant for the
    first half, then linear decay to 0."""
    decay_epoch = epochs // 2
    if epoch < decay_epoch:
        return base
    return base * (epochs - epoch) / (epochs - decay_epoch)


def make_strategy(name):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(None, f"--strategy must be default, mirrored or "
                     f"multi_worker, got {name!r}")


def is_chief(strategy):
    """Only the chief writes checkpoints and logs (multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task = resolver.task_type, resolver.task_id
    return task in (("chief", 0), ("worker", 0)) and (
        task[0] == "chief" or "chief" not in resolver.cluster_spec().jobs)


def torch_adam_class():
    """Keras Adam with ``torch.optim.Adam``'s arithmetic.

    Keras' Adam (as TF1's ``AdamOptimizer``) adds epsilon to ``sqrt(v)``:
    ``lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``; PyTorch adds it
    to the bias-corrected ``sqrt(v / (1 - b2^t))``: ``lr / (1 - b1^t) m /
    (sqrt(v) / sqrt(1 - b2^t) + eps)``, an epsilon larger by ``1 /
    sqrt(1 - b2^t)`` (31x at the first step), which matters where gradients
    are ~1e-7.  Same variables (``momentum`` / ``velocity``), so checkpoints
    and ``optimizer.iterations`` work as for Keras' Adam."""
    import keras
    from keras import ops

    class TorchAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            gradient = ops.cast(gradient, dtype)
            step = ops.cast(self.iterations + 1, dtype)
            # (convert_to_tensor(x, dtype), not cast(x, dtype): casting a
            # Python float goes through a float32 tensor, which rounds
            # beta_2 = 0.999 and so 1 - beta_2 by 1.3e-5 in float64)
            bc1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, dtype),
                                step)
            bc2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, dtype),
                                step)
            index = self._get_variable_index(variable)
            m, v = self._momentums[index], self._velocities[index]
            # exp_avg.lerp_(grad, 1 - beta1)
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m),
                                            1 - self.beta_1))
            # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            self.assign(v, ops.add(ops.multiply(v, self.beta_2),
                                   ops.multiply(ops.square(gradient),
                                                1 - self.beta_2)))
            denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bc2)),
                            self.epsilon)
            self.assign_sub(variable, ops.multiply(ops.divide(m, denom),
                                                   lr / bc1))

    return TorchAdam


class Engine:
    """The project's training machinery, for any network: model, Adam and
    the train step under one ``tf.distribute`` strategy, the distributed
    ``tf.data`` input, the step count (``optimizer.iterations``) that
    :func:`fit` resumes from.

    A network's training (a "task") subclasses it and provides:

    * ``batch_arrays(epoch, step)`` -> tuple of NumPy arrays, the global
      batch ``step`` of ``epoch`` (leading axis = ``batch_size``), and
      ``batch_signature()`` -> ((shape without the batch axis, dtype), ...);
    * ``replica_loss(*local_batch)`` -> {term: scalar} with ``"total"``, the
      replica's share of the global batch's loss (the shares SUM to it);
    * ``save_epoch(checkpoint_dir, epoch, final)`` -> path written, and
      ``restore`` / ``init_from`` in the task's own checkpoint format;
    * optionally ``make_log`` (a :class:`LossLog` with the task's terms and
      line) and ``log_images``.

    ``adam``: ``"tf1"`` (Keras' Adam = TF1's ``AdamOptimizer``) or
    ``"torch"`` (``torch.optim.Adam``'s arithmetic, :func:`torch_adam_class`).
    The optimizer updates ``optimized_variables()`` (default: all the
    model's trainable variables); a task with more than one optimizer (a
    GAN) builds the others itself and overrides ``train_step``.

    :class:`Trainer` is STDFusionNet's task; UMF-CMGR's MRRN is
    ``stdfusion_tf.umf.reg_training.MRRNTrainer``.
    """

    def __init__(self, build_model, batch_size, learning_rate=1e-3,
                 epsilon=TF1_ADAM_EPSILON, strategy=None,
                 precision="float32", adam="tf1", beta_1=BETA_1):
        import keras
        import tensorflow as tf

        if precision not in PRECISIONS:
            raise InputError(None, f"precision must be one of "
                             f"{', '.join(PRECISIONS)}, got {precision!r}")
        self.batch_size = batch_size
        self.precision = precision
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.model = build_model(PRECISIONS[precision])
            adam_class = (keras.optimizers.Adam if adam == "tf1"
                          else torch_adam_class())
            self.optimizer = adam_class(
                learning_rate=learning_rate, beta_1=beta_1, beta_2=BETA_2,
                epsilon=epsilon)
            self.optimizer.build(self.optimized_variables())
        self._step = tf.function(self._distributed_step)

    # -------------------------------------------------------- task hooks --
    def optimized_variables(self):
        return self.model.trainable_variables

    def batch_arrays(self, epoch, step):
        raise NotImplementedError

    def batch_signature(self):
        raise NotImplementedError

    def replica_loss(self, *batch):
        raise NotImplementedError

    def save_epoch(self, checkpoint_dir, epoch, final=False):
        raise NotImplementedError

    def make_log(self, summary_dir, enabled=True):
        return LossLog(summary_dir, enabled=enabled)

    def log_images(self, log, epoch, step, global_step):
        """TensorBoard images every SHOW_EVERY steps (none by default)."""

    # ------------------------------------------------------------ batches --
    def dataset(self, epoch, start_step=0):
        """Distributed ``tf.data`` pipeline of one epoch (from start_step).

        Each input pipeline yields, for every global batch, the slices of
        the replicas it feeds, so the global batch is the same whatever the
        number of devices or workers.
        """
        import tensorflow as tf

        def dataset_fn(ctx):
            local = ctx.get_per_replica_batch_size(self.batch_size)
            per_pipeline = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            first = ctx.input_pipeline_id * per_pipeline

            def batches():
                for step in range(start_step, self.steps_per_epoch):
                    arrays = self.batch_arrays(epoch, step)
                    for r in range(first, first + per_pipeline):
                        yield tuple(a[r * local:(r + 1) * local]
                                    for a in arrays)

            specs = tuple(tf.TensorSpec((local,) + tuple(shape), dtype)
                          for shape, dtype in self.batch_signature())
            return tf.data.Dataset.from_generator(
                batches, output_signature=specs).prefetch(2)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    # --------------------------------------------------------------- step --
    def _replica_step(self, *batch):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            terms = self.replica_loss(*batch)
        variables = self.optimized_variables()
        grads = tape.gradient(terms["total"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return terms

    def _distributed_step(self, *batch):
        import tensorflow as tf

        per_replica = self.strategy.run(self._replica_step, args=batch)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v,
                                        axis=None)
                for k, v in per_replica.items()}

    def train_step(self, batch):
        """One optimizer step on a distributed batch -> {term: float}."""
        terms = self._step(*batch)
        return {k: float(v) for k, v in terms.items()}

    @property
    def global_step(self):
        return int(self.optimizer.iterations.numpy())

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)


class Trainer(Engine):
    """STDFusionNet's training task on the :class:`Engine`.

    ``patches`` are the (ir, vi, mask) arrays [N, S, S, 1] in [-1, 1].
    """

    def __init__(self, patches, batch_size=32, learning_rate=1e-3,
                 epsilon=TF1_ADAM_EPSILON, mask_norm="once",
                 paper_activations=False, shuffle=False, seed=0,
                 strategy=None, precision="float32", float32_output=None):
        from .model import STDFusionNet

        if float32_output is None:  # bf16 training needs it (docs/bf16.md)
            float32_output = precision == "bfloat16"

        self.ir, self.vi, self.mask = patches
        self.steps_per_epoch = len(self.ir) // batch_size
        if self.steps_per_epoch == 0:
            raise InputError(None, f"{len(self.ir)} patches are fewer than "
                             f"one batch of {batch_size}")
        self.mask_norm = mask_norm
        self.shuffle = shuffle
        self.seed = seed
        super().__init__(
            lambda dtype: STDFusionNet(paper_activations=paper_activations,
                                       dtype=dtype,
                                       float32_output=float32_output),
            batch_size, learning_rate=learning_rate, epsilon=epsilon,
            strategy=strategy, precision=precision)

    # ------------------------------------------------------------ batches --
    def batch_indices(self, epoch, step):
        """Patch indices of global batch ``step`` of ``epoch``."""
        b = self.batch_size
        if self.shuffle:
            order = np.random.default_rng(self.seed + epoch).permutation(
                len(self.ir))
            return order[step * b:(step + 1) * b]
        return np.arange(step * b, (step + 1) * b)

    def batch_arrays(self, epoch, step):
        idx = self.batch_indices(epoch, step)
        return self.ir[idx], self.vi[idx], self.mask[idx]

    def batch_signature(self):
        return ((self.ir.shape[1:], "float32"),) * 3

    # --------------------------------------------------------------- loss --
    def replica_loss(self, ir, vi, mask):
        import tensorflow as tf

        # float32 for the loss whatever the compute precision (bf16
        # output against float32 targets would not even type-check).
        fused = tf.cast(self.model((ir, vi), training=True), tf.float32)
        return fusion_loss(fused, ir, vi, mask, self.mask_norm,
                           global_batch_size=self.batch_size)

    def log_images(self, log, epoch, step, global_step):
        _log_images(self, log, epoch, step, global_step)

    # -------------------------------------------------------- checkpoints --
    def optimizer_slots(self):
        """{TF1 slot name (no root): Keras optimizer variable}."""
        by_path = {v.path: v for v in self.optimizer.variables}
        slots = {}
        for name, var in self.model.tf1_variables().items():
            base = f"{self.optimizer.name}/{var.path.replace('/', '_')}"
            slots[f"{name}/Adam"] = by_path[f"{base}_momentum"]
            slots[f"{name}/Adam_1"] = by_path[f"{base}_velocity"]
        return slots

    def state_tensors(self, root=DEFAULT_ROOT):
        """Model + Adam state under TF1 names, as AdamOptimizer saves them
        (beta*_power hold beta^(t+1) after t steps)."""
        t = self.global_step
        tensors = {f"{root}/{k}": np.asarray(v.numpy())
                   for k, v in self.model.tf1_variables().items()}
        tensors.update({f"{root}/{k}": np.asarray(v.numpy())
                        for k, v in self.optimizer_slots().items()})
        tensors["beta1_power"] = np.float32(BETA_1 ** (t + 1))
        tensors["beta2_power"] = np.float32(BETA_2 ** (t + 1))
        tensors["global_step"] = np.int64(t)
        return tensors

    def save(self, prefix):
        return write_tf1_checkpoint(prefix, self.state_tensors())

    def save_epoch(self, checkpoint_dir, epoch, final=False):
        """Upstream's ``Fusion.model-<epoch>`` after every epoch."""
        return self.save(os.path.join(checkpoint_dir,
                                      f"Fusion.model-{epoch}"))

    def restore(self, src):
        """Resume: model, Adam slots and step count from a checkpoint of
        ours (or any TF1 STDFusionNet training checkpoint with Adam slots)."""
        prefix, tensors = read_tf1_checkpoint(src)
        root, arrays, optimizer = split_tf1_tensors(tensors, prefix)
        variables = self.model.tf1_variables()
        check_arrays(arrays, {k: tuple(v.shape) for k, v in variables.items()},
                     prefix, root)
        for name, var in variables.items():
            var.assign(arrays[name])
        slots = self.optimizer_slots()
        missing = [k for k in slots if f"{root}/{k}" not in optimizer]
        if missing:
            raise InputError(prefix, "no Adam state to resume from (missing "
                             f"{root}/{missing[0]}); use --init_from to "
                             "start from these weights instead")
        for name, var in slots.items():
            var.assign(optimizer[f"{root}/{name}"])
        if "global_step" in optimizer:
            step = int(optimizer["global_step"])
        else:  # an upstream checkpoint: beta1_power = beta1^(t+1)
            step = round(math.log(float(optimizer["beta1_power"]))
                         / math.log(BETA_1)) - 1
        self.optimizer.iterations.assign(step)
        return prefix, step

    def init_from(self, src):
        """Start from released or saved weights (fresh optimizer)."""
        arrays = read_weights(src)
        for name, var in self.model.tf1_variables().items():
            var.assign(arrays[name])


class LossLog:
    """Means of the loss terms over the last SHOW_EVERY steps, printed and
    appended to ``log.txt`` in upstream's format; TensorBoard scalars.

    STDFusionNet's terms and lines; another task subclasses it with its own
    ``TERMS``, ``scalars`` and ``lines``."""

    TERMS = LOSS_TERMS

    def __init__(self, summary_dir, enabled=True):
        import tensorflow as tf

        summary_dir = str(summary_dir)
        self.enabled = enabled
        self.sums = dict.fromkeys(self.TERMS, 0.0)
        self.count = 0
        self.start = time.time()
        self.path = os.path.join(summary_dir, "log.txt")
        self.writer = None
        if enabled:
            os.makedirs(summary_dir, exist_ok=True)
            self.writer = tf.summary.create_file_writer(summary_dir)

    def add(self, terms, step):
        import tensorflow as tf

        for k in self.TERMS:
            self.sums[k] += terms[k]
        self.count += 1
        if self.writer:
            with self.writer.as_default(step=step):
                for name, value in self.scalars(terms):
                    tf.summary.scalar(name, value)

    def scalars(self, terms):
        """(TensorBoard name, value) of one step."""
        # upstream's summary names (both are the total loss)
        return [("g_loss_2", terms["total"]), ("loss_g", terms["total"])]

    def images(self, step, vi, ir, fused):
        import tensorflow as tf

        if self.writer:
            with self.writer.as_default(step=step):
                for name, x in (("vi_image", vi), ("ir_image", ir),
                                ("fusion_images", fused)):
                    tf.summary.image(f"image/{name}", (x + 1.0) / 2.0)

    def flush(self, lr, epoch, epochs, step, steps):
        if not self.count:
            return None
        m = {k: v / self.count for k, v in self.sums.items()}
        printed, line = self.lines(m, lr, epoch, epochs, step, steps,
                                   time.time() - self.start)
        if self.enabled:
            for text in printed:
                print(text)
            print(line, flush=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")
            self.writer.flush()
        self.sums = dict.fromkeys(self.TERMS, 0.0)
        self.count = 0
        self.start = time.time()
        return m


    def lines(self, m, lr, epoch, epochs, step, steps, elapsed):
        """(lines only printed, the line printed and logged) of a window
        with mean terms ``m``."""
        line = ("Epoch:[%d/%d], step:[%d/%d], time: [%4.4f], loss_g:[%.4f], "
                "vi_p_loss:[%.4f], ir_p_loss:[%.4f], vi_grad_loss:[%0.4f], "
                "ir_grad_loss:[%0.4f]" % (
                    epoch + 1, epochs, step + 1, steps, elapsed, m["total"],
                    m["vi_pixel"], m["ir_pixel"], m["vi_grad"],
                    m["ir_grad"]))
        return ["learn rate:[%0.6f]" % lr], line


def fit(trainer, epochs, checkpoint_dir, summary_dir, learning_rate=1e-3,
        lr_decay=False, max_steps=None, chief=True, verbose=1):
    """The epoch loop.  Returns the list of checkpoints written.

    ``learning_rate``: a number, or a function of the (0-based) epoch.

    Starts at ``trainer.global_step`` (0, or where a resumed run stopped).
    """
    from . import progress

    spe = trainer.steps_per_epoch
    start = trainer.global_step
    log = trainer.make_log(summary_dir, enabled=chief)
    written = []
    for epoch in range(start // spe, epochs):
        if callable(learning_rate):  # a task's own schedule
            lr = learning_rate(epoch)
        else:
            lr = (upstream_learning_rate(epoch, epochs, learning_rate)
                  if lr_decay else learning_rate)
        trainer.set_learning_rate(lr)
        first = start % spe if epoch == start // spe else 0
        bar = progress.progbar(spe, verbose=verbose if chief else 0,
                               stateful_metrics=["loss"])
        bar.update(first)
        stop = False
        for step, batch in zip(range(first, spe), trainer.dataset(epoch, first)):
            terms = trainer.train_step(batch)
            global_step = trainer.global_step
            if not all(math.isfinite(v) for v in terms.values()):
                last = written[-1] if written else "none written by this run"
                raise TrainingError(
                    f"loss is {terms['total']} at epoch {epoch + 1} step "
                    f"{step + 1} (global step {global_step}); stopped, last "
                    f"good checkpoint: {last}")
            log.add(terms, global_step)
            bar.update(step + 1, values=[("loss", terms["total"])])
            if step % SHOW_EVERY == SHOW_EVERY - 1:
                log.flush(lr, epoch, epochs, step, spe)
                trainer.log_images(log, epoch, step, global_step)
            if max_steps is not None and global_step >= max_steps:
                stop = True
                break
        # The epoch's last, partial window (216 = 4 x 50 + 16 steps with
        # the released data) is logged before its checkpoint, so windows
        # never span two epochs and the log is not silent for those steps.
        log.flush(lr, epoch, epochs, step, spe)
        if chief:
            written.append(trainer.save_epoch(
                checkpoint_dir, epoch, final=stop or epoch == epochs - 1))
        if stop:
            break
    return written


def _log_images(trainer, log, epoch, step, global_step):
    """TensorBoard images of one patch of the batch (upstream: item 1)."""
    idx = trainer.batch_indices(epoch, step)
    i = idx[1] if len(idx) > 1 else idx[0]
    ir, vi = trainer.ir[i:i + 1], trainer.vi[i:i + 1]
    fused = np.asarray(trainer.model((ir, vi), training=False), np.float32)
    log.images(global_step, vi, ir, fused)
