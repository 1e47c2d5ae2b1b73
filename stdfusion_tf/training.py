"""Training STDFusionNet as the released code does, resumable and distributed.

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
"""

import math
import os
import time

import numpy as np

from .checkpoints import (DEFAULT_ROOT, read_tf1_checkpoint, read_weights,
                          split_tf1_tensors, check_arrays, write_tf1_checkpoint)
from .errors import InputError
from .losses import fusion_loss

LOSS_TERMS = ("total", "vi_pixel", "ir_pixel", "vi_grad", "ir_grad")
BETA_1, BETA_2 = 0.9, 0.999
TF1_ADAM_EPSILON = 1e-8
SHOW_EVERY = 50  # upstream's show_num


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


class Trainer:
    """Model, optimizer and train step under one ``tf.distribute`` strategy.

    ``patches`` are the (ir, vi, mask) arrays [N, S, S, 1] in [-1, 1].
    """

    def __init__(self, patches, batch_size=32, learning_rate=1e-3,
                 epsilon=TF1_ADAM_EPSILON, mask_norm="once",
                 paper_activations=False, shuffle=False, seed=0,
                 strategy=None):
        import keras
        import tensorflow as tf

        from .model import STDFusionNet

        self.ir, self.vi, self.mask = patches
        self.batch_size = batch_size
        self.steps_per_epoch = len(self.ir) // batch_size
        if self.steps_per_epoch == 0:
            raise InputError(None, f"{len(self.ir)} patches are fewer than "
                             f"one batch of {batch_size}")
        self.mask_norm = mask_norm
        self.shuffle = shuffle
        self.seed = seed
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.model = STDFusionNet(paper_activations=paper_activations)
            self.optimizer = keras.optimizers.Adam(
                learning_rate=learning_rate, beta_1=BETA_1, beta_2=BETA_2,
                epsilon=epsilon)
            self.optimizer.build(self.model.trainable_variables)
        self._step = tf.function(self._distributed_step)

    # ------------------------------------------------------------ batches --
    def batch_indices(self, epoch, step):
        """Patch indices of global batch ``step`` of ``epoch``."""
        b = self.batch_size
        if self.shuffle:
            order = np.random.default_rng(self.seed + epoch).permutation(
                len(self.ir))
            return order[step * b:(step + 1) * b]
        return np.arange(step * b, (step + 1) * b)

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
                    idx = self.batch_indices(epoch, step)
                    for r in range(first, first + per_pipeline):
                        part = idx[r * local:(r + 1) * local]
                        yield self.ir[part], self.vi[part], self.mask[part]

            shape = (local,) + self.ir.shape[1:]
            spec = tf.TensorSpec(shape, tf.float32)
            return tf.data.Dataset.from_generator(
                batches, output_signature=(spec, spec, spec)).prefetch(2)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    # --------------------------------------------------------------- step --
    def _replica_step(self, ir, vi, mask):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            fused = self.model((ir, vi), training=True)
            terms = fusion_loss(fused, ir, vi, mask, self.mask_norm,
                                global_batch_size=self.batch_size)
        variables = self.model.trainable_variables
        grads = tape.gradient(terms["total"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return terms

    def _distributed_step(self, ir, vi, mask):
        import tensorflow as tf

        per_replica = self.strategy.run(self._replica_step,
                                        args=(ir, vi, mask))
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
    appended to ``log.txt`` in upstream's format; TensorBoard scalars."""

    def __init__(self, summary_dir, enabled=True):
        import tensorflow as tf

        summary_dir = str(summary_dir)
        self.enabled = enabled
        self.sums = dict.fromkeys(LOSS_TERMS, 0.0)
        self.count = 0
        self.start = time.time()
        self.path = os.path.join(summary_dir, "log.txt")
        self.writer = None
        if enabled:
            os.makedirs(summary_dir, exist_ok=True)
            self.writer = tf.summary.create_file_writer(summary_dir)

    def add(self, terms, step):
        import tensorflow as tf

        for k in LOSS_TERMS:
            self.sums[k] += terms[k]
        self.count += 1
        if self.writer:
            with self.writer.as_default(step=step):
                # upstream's summary names (both are the total loss)
                tf.summary.scalar("g_loss_2", terms["total"])
                tf.summary.scalar("loss_g", terms["total"])

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
        line = ("Epoch:[%d/%d], step:[%d/%d], time: [%4.4f], loss_g:[%.4f], "
                "vi_p_loss:[%.4f], ir_p_loss:[%.4f], vi_grad_loss:[%0.4f], "
                "ir_grad_loss:[%0.4f]" % (
                    epoch + 1, epochs, step + 1, steps,
                    time.time() - self.start, m["total"], m["vi_pixel"],
                    m["ir_pixel"], m["vi_grad"], m["ir_grad"]))
        if self.enabled:
            print("learn rate:[%0.6f]" % lr)
            print(line, flush=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")
            self.writer.flush()
        self.sums = dict.fromkeys(LOSS_TERMS, 0.0)
        self.count = 0
        self.start = time.time()
        return m


def fit(trainer, epochs, checkpoint_dir, summary_dir, learning_rate=1e-3,
        lr_decay=False, max_steps=None, chief=True, verbose=1):
    """The epoch loop.  Returns the list of checkpoint prefixes written.

    Starts at ``trainer.global_step`` (0, or where a resumed run stopped).
    """
    from . import progress

    spe = trainer.steps_per_epoch
    start = trainer.global_step
    log = LossLog(summary_dir, enabled=chief)
    written = []
    for epoch in range(start // spe, epochs):
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
                _log_images(trainer, log, epoch, step, global_step)
            if max_steps is not None and global_step >= max_steps:
                stop = True
                break
        # The epoch's last, partial window (216 = 4 x 50 + 16 steps with
        # the released data) is logged before its checkpoint, so windows
        # never span two epochs and the log is not silent for those steps.
        log.flush(lr, epoch, epochs, step, spe)
        if chief:
            prefix = os.path.join(checkpoint_dir, f"Fusion.model-{epoch}")
            written.append(trainer.save(prefix))
        if stop:
            break
    return written


def _log_images(trainer, log, epoch, step, global_step):
    """TensorBoard images of one patch of the batch (upstream: item 1)."""
    idx = trainer.batch_indices(epoch, step)
    i = idx[1] if len(idx) > 1 else idx[0]
    ir, vi = trainer.ir[i:i + 1], trainer.vi[i:i + 1]
    fused = np.asarray(trainer.model((ir, vi), training=False))
    log.images(global_step, vi, ir, fused)
