"""Resumable training state of a UMF-CMGR task on the engine: the network's
variables (under upstream state_dict keys), every optimizer variable and the
step, in one ``train_state.npz`` written atomically after every epoch.

Shared by ``reg_training.MRRNTrainer``, ``fuse_training.DIFNTrainer`` and
``cpstn_training.CPSTNTrainer`` (two optimizers and an image pool: the
``state_optimizers`` / ``extra_state`` hooks)."""

import os

import numpy as np

from ..errors import InputError
from ..fileio import atomic_output
from . import weights

STATE_FILE = "train_state.npz"


def has_state(checkpoint_dir):
    return os.path.isfile(os.path.join(str(checkpoint_dir), STATE_FILE))


class TorchStateMixin:
    """For an :class:`~stdfusion_tf.engine.Engine` whose model has
    ``torch_variables()``; ``KIND`` is its ``weights`` kind."""

    KIND = None
    TITLE = None  # default: the KIND's title

    def state_optimizers(self):
        return [self.optimizer]

    def optimizer_variables(self):
        return [v for opt in self.state_optimizers() for v in opt.variables]

    def extra_state(self):
        """{name: array} of a task's own state (saved as ``extra/<name>``)."""
        return {}

    def restore_extra(self, arrays, path):
        """Restore :meth:`extra_state` from {name: array}."""

    def state_arrays(self):
        arrays = {f"model/{k}": np.asarray(v.numpy()) for k, v in
                  self.model.torch_variables().items()}
        arrays.update({f"extra/{k}": v for k, v in self.extra_state().items()})
        for i, v in enumerate(self.optimizer_variables()):
            arrays[f"optimizer/{i}"] = np.asarray(v.numpy())
        arrays["optimizer_paths"] = np.array(
            [v.path for v in self.optimizer_variables()])
        arrays["step"] = np.int64(self.global_step)
        return arrays

    def save_state(self, checkpoint_dir):
        path = os.path.join(str(checkpoint_dir), STATE_FILE)
        with atomic_output(path, suffix=".npz") as tmp:
            np.savez(tmp, **self.state_arrays())
        return path

    def restore(self, checkpoint_dir):
        """Resume from ``<checkpoint_dir>/train_state.npz`` -> (path,
        step)."""
        path = os.path.join(str(checkpoint_dir), STATE_FILE)
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # truncated, not an npz
            raise InputError(path, f"cannot read the training state "
                             f"({type(exc).__name__})") from None
        variables = self.model.torch_variables()
        opt = self.optimizer_variables()
        want = {f"model/{k}": tuple(v.shape) for k, v in variables.items()}
        want.update({f"optimizer/{i}": tuple(v.shape)
                     for i, v in enumerate(opt)})
        title = self.TITLE or weights.TITLES[self.KIND]
        for key, shape in want.items():
            if key not in arrays or arrays[key].shape != shape:
                raise InputError(path, f"not a training state of this "
                                 f"version's {title} ({key} missing or "
                                 f"mis-shaped)")
        if [str(p) for p in arrays.get("optimizer_paths", [])] != \
                [v.path for v in opt]:
            raise InputError(path, "optimizer variables differ from this "
                             "version's")
        for key, var in variables.items():
            var.assign(arrays[f"model/{key}"])
        for i, var in enumerate(opt):
            var.assign(arrays[f"optimizer/{i}"])
        self.restore_extra({k[len("extra/"):]: v for k, v in arrays.items()
                            if k.startswith("extra/")}, path)
        step = int(arrays["step"])
        self.optimizer.iterations.assign(step)
        return path, step

    # -------------------------------------------------------- checkpoints --
    def weights_files(self, epoch):
        """{file name: network} written at a checkpointing ``epoch``
        (1-based), named as upstream names its ``.pth`` files."""
        raise NotImplementedError

    def save_epoch(self, checkpoint_dir, epoch, final=False):
        """The :meth:`weights_files` every ``save_every`` epochs and at the
        end (or stop), then the resumable state after every epoch -> the
        first weights file written, else the state."""
        written = []
        if final or (epoch + 1) % self.save_every == 0:
            for name, net in self.weights_files(epoch + 1).items():
                written.append(weights.save_weights(
                    net, os.path.join(str(checkpoint_dir), name)))
        state = self.save_state(checkpoint_dir)
        return written[0] if written else state

    def init_from(self, src):
        """Start from released (``.pth``) or saved (``.weights.h5``)
        weights of this network, with a fresh optimizer."""
        _, model = weights.load_network(src, expect=self.KIND)
        theirs = model.torch_variables()
        for key, var in self.model.torch_variables().items():
            var.assign(np.asarray(theirs[key].numpy()))
