"""STDFusionNet's weights in one in-memory form, ``{TF1 name without root:
np.ndarray}`` (``"vi_extraction_network/block2/identity_conv/w"`` ->
[1, 1, 16, 32]), read from TF1 checkpoints or Keras ``.weights.h5`` files
and checked variable by variable.

This module knows the formats, not the network: where it needs the variable
layout it is given the model (or its class) -- so that ``presets`` can use it
under ``STDFusionNet.from_preset`` without a loop.
"""

import functools
import os

import numpy as np

from ..errors import InputError
from . import keras_h5
from .keras_h5 import name_list
from .tf1 import DEFAULT_ROOT, read_tf1_checkpoint, split_tf1_tensors


def check_arrays(arrays, expected_shapes, source, root=None):
    """Missing, extra and mis-shaped variables -> one InputError naming them
    (with their ``root/`` scope when given)."""
    full = (lambda k: f"{root}/{k}") if root else (lambda k: k)
    missing = [full(k) for k in expected_shapes if k not in arrays]
    extra = sorted(full(k) for k in arrays if k not in expected_shapes)
    if len(missing) == len(expected_shapes):
        raise InputError(source, "not an STDFusionNet checkpoint: none of "
                         f"its {len(expected_shapes)} variables found (has "
                         + name_list(extra, 3) + ")")
    if missing:
        raise InputError(source, f"{len(missing)} missing variable(s): "
                         + name_list(missing))
    if extra:
        raise InputError(source, f"{len(extra)} unexpected variable(s) (not "
                         "an STDFusionNet checkpoint?): " + name_list(extra))
    bad = [f"{full(k)} {tuple(arrays[k].shape)} "
           f"(expected {expected_shapes[k]})"
           for k in expected_shapes
           if tuple(arrays[k].shape) != tuple(expected_shapes[k])]
    if bad:
        raise InputError(source, f"shape mismatch: {name_list(bad)}")


def read_tf1_weights(src, expected_shapes):
    """TF1 checkpoint -> (root, {name: array}, prefix), fully validated."""
    prefix, tensors = read_tf1_checkpoint(src)
    root, arrays, _ = split_tf1_tensors(tensors, prefix)
    check_arrays(arrays, expected_shapes, prefix, root)
    return root, {k: arrays[k] for k in expected_shapes}, prefix


# ------------------------------------------------------------------- Keras --

@functools.lru_cache(maxsize=None)
def keras_h5_layout(cls):
    """{path of a dataset inside a .weights.h5: (TF1 name, shape)} of a
    ``cls`` model (e.g. ``STDFusionNet``; both activation variants share
    one layout), found once (``keras_h5.weights_layout``)."""
    model = cls()
    return keras_h5.weights_layout(model, model.tf1_variables(), cls.__name__)


def read_keras_weights(path, cls):
    """``.weights.h5`` of a ``cls`` model -> {TF1 name: array}, checking
    every variable."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    layout = keras_h5_layout(cls)
    _, found = keras_h5.read_datasets(path)
    arrays = {layout[k][0] if k in layout else k: v for k, v in found.items()}
    expected = {name: shape for name, shape in layout.values()}
    check_arrays(arrays, expected, path)
    return arrays


def save_keras_weights(model, path):
    """``model.save_weights`` to a temporary name, then renamed into place."""
    return keras_h5.save_atomically(
        path, lambda tmp: model.save_weights(tmp, overwrite=True))


# ------------------------------------------------------------------ models --

def variable_shapes(model):
    """{TF1 name: shape} of a model's variables."""
    return {k: tuple(v.shape) for k, v in model.tf1_variables().items()}


def assign_weights(model, arrays):
    variables = model.tf1_variables()
    check_arrays(arrays, variable_shapes(model), "weights")
    for name, var in variables.items():
        var.assign(np.asarray(arrays[name], dtype="float32"))
    return model


def export_tf1_tensors(model, root=DEFAULT_ROOT):
    """{full TF1 name: array} of a model, under ``root``."""
    return {f"{root}/{k}": np.asarray(v.numpy() if hasattr(v, "numpy")
                                      else v)
            for k, v in model.tf1_variables().items()}

