"""The project's training engine: what every network's training runs on.

:class:`Engine` (model, Adam and the train step under one
``tf.distribute`` strategy, the distributed ``tf.data`` input, the step
count that runs resume from), :func:`fit` (the epoch loop: schedule,
progress, logging, checkpoints, stop on a non-finite loss) and
:class:`LossLog`.  A network's training is a small task class on it:
``training.Trainer`` (STDFusionNet), ``umf.reg_training.MRRNTrainer``,
``umf.fuse_training.DIFNTrainer``, ``umf.cpstn_training.CPSTNTrainer``.

What every task shares lives here once: the sample order of an epoch
(:meth:`Engine.order`, :meth:`Engine.batch_indices`), the checks of the
data and batch size (:meth:`Engine.count_samples`), a partial last batch
padded to the full size with weight-0 samples (:meth:`Engine.sample_weights`,
:func:`pad_batch`) and per-sample means (:func:`per_sample_mean`), the
replica step (:meth:`Engine.minimize` under a tape, :meth:`Engine.on_replicas`
summing terms / gathering outputs across replicas), what a loss needs from
the other replicas (:meth:`Engine.replica_sum`, :meth:`Engine.replica_gather`)
and the optimizers (:meth:`Engine.make_optimizer`).

The engine knows no network: a task hands it a model builder.
"""

import math
import os
import time

import numpy as np

from .errors import InputError

BETA_1, BETA_2 = 0.9, 0.999
TF1_ADAM_EPSILON = 1e-8
SHOW_EVERY = 50  # upstream's show_num
# float64: not offered by the command lines; the step-equality tests use it
# where float32 itself is ill-conditioned (CPSTN's training).
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16",
              "float64": "float64"}


class TrainingError(Exception):
    """Training cannot go on (non-finite loss); the message is one line."""


def per_sample_mean(x):
    """Mean over every axis but the first: [N, ...] -> [N]."""
    from keras import ops

    return ops.mean(x, axis=tuple(range(1, len(x.shape))))


def pad_batch(arrays, batch_size):
    """Arrays of the real samples of a partial batch -> ``batch_size`` rows,
    the missing ones copies of the first sample (given weight 0 by
    :meth:`Engine.sample_weights`)."""
    return tuple(np.concatenate([a, np.repeat(a[:1], batch_size - len(a),
                                              axis=0)])
                 if len(a) < batch_size else a for a in arrays)


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
    * optionally ``LOG`` (a :class:`LossLog` subclass with the task's terms
      and line) and ``log_images``;
    * ``num_samples`` and ``steps_per_epoch`` (:meth:`count_samples` sets
      them) and ``seed``, which :meth:`order` draws the epoch's order from.

    ``adam``: ``"tf1"`` (Keras' Adam = TF1's ``AdamOptimizer``) or
    ``"torch"`` (``torch.optim.Adam``'s arithmetic, :func:`torch_adam_class`).
    The optimizer updates ``optimized_variables()`` (default: all the
    model's trainable variables); a task with more than one optimizer (a
    GAN) makes the others with :meth:`make_optimizer`, steps them with
    :meth:`minimize` / :meth:`on_replicas` and overrides ``train_step``.

    ``training.Trainer`` is STDFusionNet's task; UMF-CMGR's are in
    ``stdfusion_tf.umf.{reg,fuse,cpstn}_training``.
    """

    seed = 0
    LOG = None  # the task's LossLog class (default: LossLog)

    def __init__(self, build_model, batch_size, learning_rate=1e-3,
                 epsilon=TF1_ADAM_EPSILON, strategy=None,
                 precision="float32", adam="tf1", beta_1=BETA_1):
        import tensorflow as tf

        if precision not in PRECISIONS:
            raise InputError(None, f"precision must be one of "
                             f"{', '.join(PRECISIONS)}, got {precision!r}")
        self.batch_size = batch_size
        self.precision = precision
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.model = build_model(PRECISIONS[precision])
        self.optimizer = self.make_optimizer(
            self.optimized_variables(), adam, learning_rate, beta_1, epsilon)
        self._step = tf.function(self._distributed_step)

    def make_optimizer(self, variables, adam="tf1", learning_rate=1e-3,
                       beta_1=BETA_1, epsilon=TF1_ADAM_EPSILON, **kwargs):
        """An Adam (``"tf1"``: Keras'; ``"torch"``: :func:`torch_adam_class`)
        under the strategy, built for ``variables``."""
        import keras

        with self.strategy.scope():
            adam_class = (keras.optimizers.Adam if adam == "tf1"
                          else torch_adam_class())
            optimizer = adam_class(
                learning_rate=learning_rate, beta_1=beta_1, beta_2=BETA_2,
                epsilon=epsilon, **kwargs)
            optimizer.build(variables)
        return optimizer

    # ------------------------------------------------------------ samples --
    def count_samples(self, count, batch_size, partial=False, what="samples",
                      flag="--batch_size"):
        """Check the data and the batch size, then set ``num_samples`` and
        ``steps_per_epoch``: ``count // batch_size``, or with ``partial``
        the last, partial batch kept (padded, :meth:`sample_weights`)."""
        if not count:
            raise InputError(None, f"no training {what}")
        if batch_size < 1:
            raise InputError(None, f"{flag} must be >= 1, got {batch_size}")
        self.num_samples = count
        self.steps_per_epoch = (math.ceil(count / batch_size) if partial
                                else count // batch_size)
        if not self.steps_per_epoch:
            raise InputError(None, f"{count} {what} are fewer than one "
                             f"batch of {batch_size}")

    def order(self, epoch):
        """The order of the samples in ``epoch``: a permutation drawn from
        ``(seed, epoch)``, so a resumed run sees an uninterrupted run's
        batches."""
        return np.random.default_rng([self.seed, epoch]).permutation(
            self.num_samples)

    def batch_indices(self, epoch, step):
        """Sample indices of global batch ``step`` of ``epoch`` (fewer than
        ``batch_size`` in a partial last batch)."""
        b = self.batch_size
        return self.order(epoch)[step * b:(step + 1) * b]

    def sample_weights(self, count):
        """Per-sample loss weights [batch_size] of a batch of ``count`` real
        samples: ``1 / count`` each, 0 for the padding, so that weighted sums
        of per-sample means give the real samples' batch means."""
        weight = np.zeros((self.batch_size,), np.float32)
        weight[:count] = np.float32(1.0 / count)
        return weight

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
        return (self.LOG or LossLog)(summary_dir, enabled=enabled)

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
    def minimize(self, loss_fn, optimizer=None, variables=None):
        """One optimizer step on this replica: ``loss_fn()`` -> (loss,
        result) under a gradient tape, the gradients of ``loss`` with
        respect to ``variables`` (default: ``optimized_variables()``)
        applied by ``optimizer`` (default: the task's) -> result."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, result = loss_fn()
        if variables is None:
            variables = self.optimized_variables()
        grads = tape.gradient(loss, variables)
        (optimizer or self.optimizer).apply_gradients(zip(grads, variables))
        return result

    def on_replicas(self, replica_fn, *batch):
        """``replica_fn(*local batch)`` on every replica -> its {term: value}
        summed over the replicas; a replica_fn that returns (terms, tensor,
        ...) also gets the tensors gathered along the batch axis."""
        import tensorflow as tf

        out = self.strategy.run(replica_fn, args=batch)
        terms, tensors = (out[0], out[1:]) if isinstance(out, tuple) else (
            out, None)
        terms = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v,
                                         axis=None)
                 for k, v in terms.items()}
        if tensors is None:
            return terms
        return (terms,) + tuple(self.strategy.gather(t, axis=0)
                                for t in tensors)

    @staticmethod
    def replicas():
        """How many replicas the current replica step runs on."""
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        return ctx.num_replicas_in_sync if ctx is not None else 1

    def replica_sum(self):
        """In a replica step on several replicas: a function summing a value
        over them (``all_reduce``); None on one."""
        import tensorflow as tf

        if self.replicas() == 1:
            return None
        ctx = tf.distribute.get_replica_context()
        return lambda x: ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)

    def replica_gather(self):
        """In a replica step on several replicas: a function gathering a
        value's rows from all of them (``all_gather`` on axis 0); None on
        one."""
        import tensorflow as tf

        if self.replicas() == 1:
            return None
        ctx = tf.distribute.get_replica_context()
        return lambda x: ctx.all_gather(x, axis=0)

    def _replica_step(self, *batch):
        def loss():
            terms = self.replica_loss(*batch)
            return terms["total"], terms

        return self.minimize(loss)

    def _distributed_step(self, *batch):
        return self.on_replicas(self._replica_step, *batch)

    def train_step(self, batch):
        """One optimizer step on a distributed batch -> {term: float}."""
        terms = self._step(*batch)
        return {k: float(v) for k, v in terms.items()}

    @property
    def global_step(self):
        return int(self.optimizer.iterations.numpy())

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)



class LossLog:
    """Means of the loss terms over the last SHOW_EVERY steps, printed and
    appended to ``log.txt`` in upstream's format; TensorBoard scalars.

    A task subclasses it with its ``TERMS`` (``"total"`` first), the
    TensorBoard names of its terms (``SCALARS``: term -> name, default the
    term) and, where its line differs from the default one, ``lines``."""

    TERMS = ("total",)
    SCALARS = {}

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
        return [(self.SCALARS.get(k, k), terms[k]) for k in self.TERMS]

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
        with mean terms ``m``; the total is called ``loss``."""
        return [], ("Epoch:[%d/%d], step:[%d/%d], time: [%.4f], lr:[%g], "
                    % (epoch + 1, epochs, step + 1, steps, elapsed, lr)
                    + ", ".join("%s:[%.6f]" % ("loss" if k == "total" else k,
                                               m[k]) for k in self.TERMS))


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
