"""Keras ``.weights.h5`` files, for both wings (STDFusionNet, UMF-CMGR).

Keras names the groups of a ``.weights.h5`` after attribute and class names
(``reconstruction_network/blocks/res_block_1/conv2/vars/0``), not after our
variable names.  :func:`weights_layout` finds the mapping once per model
layout by saving a model whose i-th variable is filled with the value i;
files are then read dataset by dataset (:func:`read_datasets`) and checked
against it, so a wrong network, a missing or mis-shaped variable is a
one-line :class:`InputError`, never a Keras traceback.
"""

import os
import tempfile

import numpy as np

from ..errors import InputError, one_line
from ..fileio import atomic_output

SUFFIX = ".weights.h5"


def is_keras_weights(path):
    return str(path).endswith(SUFFIX)


def name_list(names, most=4):
    """'a, b, c, d, ... (+n more)' for one-line messages."""
    names = list(names)
    shown = ", ".join(names[:most])
    return shown + (f", ... (+{len(names) - most} more)"
                    if len(names) > most else "")


def weights_layout(model, variables, what="model"):
    """{dataset path inside a .weights.h5: (name, shape)} of ``model``,
    whose variables are ``variables`` ({name: variable}, in any order that
    names them all): found by saving the model with the i-th variable
    filled with i.  The model's values are overwritten (build a fresh one
    for this)."""
    import h5py

    names = list(variables)
    for i, var in enumerate(variables.values()):
        var.assign(np.full(var.shape, i, dtype=var.dtype))
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "layout" + SUFFIX)
        model.save_weights(file)
        layout = {}
        with h5py.File(file, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    value = np.asarray(obj)
                    index = int(value.flat[0]) if value.size else -1
                    if 0 <= index < len(names) and tuple(value.shape) == \
                            tuple(variables[names[index]].shape):
                        layout[name] = (names[index], tuple(value.shape))
            f.visititems(visit)
    if sorted(k for k, _ in layout.values()) != sorted(names):
        raise RuntimeError(f"{what}: .weights.h5 layout does not map one to "
                           "one onto its variables")
    return layout


def read_datasets(path, attrs=()):
    """(attributes named in ``attrs`` that the file has, {dataset path:
    array}) of a .weights.h5; an unreadable file is one line."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found_attrs = {k: f.attrs[k] for k in attrs if k in f.attrs}
            found = {}
            f.visititems(lambda n, o: found.__setitem__(n, o[()])
                         if isinstance(o, h5py.Dataset) else None)
    except Exception as exc:  # h5py raises OSError, KeyError, ...
        raise InputError(path, "unreadable or truncated .weights.h5 "
                         f"({one_line(exc)})") from None
    return found_attrs, found


def check_destination(path):
    """A writable ``.weights.h5`` destination (not a folder) -> abspath."""
    path = os.path.abspath(str(path))
    if not is_keras_weights(path):
        raise InputError(path, "Keras weights files must end in .weights.h5")
    if os.path.isdir(path):
        raise InputError(path, "is a folder, not a .weights.h5 file")
    return path


def save_atomically(path, write):
    """``write(temporary path)`` (e.g. ``model.save_weights``), then the
    file renamed to ``path``, a checked ``.weights.h5`` destination."""
    path = check_destination(path)
    with atomic_output(path, suffix=SUFFIX) as tmp:
        write(tmp)
    return path
