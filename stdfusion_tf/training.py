"""Training STDFusionNet as the released code does, resumable and distributed.

The machinery is the project's one training engine (:mod:`stdfusion_tf.
engine`: ``Engine``, ``fit``, ``LossLog``), shared with UMF-CMGR's
networks: a network's training is a small task class on it (batches, loss,
checkpoint format, log line); :class:`Trainer` is STDFusionNet's.

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

import numpy as np

from .checkpoints import (DEFAULT_ROOT, read_tf1_checkpoint,
                          split_tf1_tensors, check_arrays, write_tf1_checkpoint)
# the engine's names stay importable from here (command lines, tests)
from . import engine
from .engine import (BETA_1, BETA_2, PRECISIONS, SHOW_EVERY,  # noqa: F401
                     TF1_ADAM_EPSILON, Engine, TrainingError, fit, is_chief,
                     make_strategy, torch_adam_class, upstream_learning_rate)
from .errors import InputError
from .loading import read_weights
from .losses import fusion_loss


LOSS_TERMS = ("total", "vi_pixel", "ir_pixel", "vi_grad", "ir_grad")


def run_name(batch_size):
    """Upstream's checkpoint sub-folder: STDFusion_<batch>_Pixel_Grad."""
    return f"STDFusion_{batch_size}_Pixel_Grad"


class LossLog(engine.LossLog):
    """STDFusionNet's log: upstream's terms, summary names and lines, and
    its TensorBoard images."""

    TERMS = LOSS_TERMS

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


class Trainer(Engine):
    """STDFusionNet's training task on the :class:`Engine`.

    ``patches`` are the (ir, vi, mask) arrays [N, S, S, 1] in [-1, 1].
    """

    LOG = LossLog

    def __init__(self, patches, batch_size=32, learning_rate=1e-3,
                 epsilon=TF1_ADAM_EPSILON, mask_norm="once",
                 paper_activations=False, shuffle=False, seed=0,
                 strategy=None, precision="float32", float32_output=None):
        from .model import STDFusionNet

        if float32_output is None:  # bf16 training needs it (docs/bf16.md)
            float32_output = "elu" if precision == "bfloat16" else False

        self.ir, self.vi, self.mask = patches
        self.count_samples(len(self.ir), batch_size, what="patches")
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
    def order(self, epoch):
        """Stored order (upstream), or with ``shuffle`` a permutation drawn
        from ``seed + epoch``."""
        if self.shuffle:
            return np.random.default_rng(self.seed + epoch).permutation(
                self.num_samples)
        return np.arange(self.num_samples)

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



def _log_images(trainer, log, epoch, step, global_step):
    """TensorBoard images of one patch of the batch (upstream: item 1)."""
    idx = trainer.batch_indices(epoch, step)
    i = idx[1] if len(idx) > 1 else idx[0]
    ir, vi = trainer.ir[i:i + 1], trainer.vi[i:i + 1]
    fused = np.asarray(trainer.model((ir, vi), training=False), np.float32)
    log.images(global_step, vi, ir, fused)
