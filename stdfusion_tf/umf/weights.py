"""UMF-CMGR weights: which network a file holds, and state_dict <-> Keras.

Four networks, one in-memory form: the upstream PyTorch ``state_dict``
(``{key: np.ndarray}`` in PyTorch's layout, as
:func:`stdfusion_tf.checkpoints.pth.load_pth` returns it).  Each Keras model
maps the same keys to its variables (``model.torch_variables()``, derived
from its layer structure).  One registry (:data:`NETWORKS`) holds, per
network, what the rest is derived from: its title, Keras class and default
sizes, the keys that identify its state dict and how its sizes are read
from one.

=========  ==========================================  ======================
kind       network (upstream class)                    released file
=========  ==========================================  ======================
mrrn       MRRN (``models/deformable_net.py``          ``reg_0800.pth``
           ``DeformableNet``)
difn       DIFN (``models/fusion_net.py`` ``FusionNet``)  ``fus_0200.pth``
cpstn_g    CPSTN generator (``CPSTN/models/networks.py``  ``latest_net_G.pth``
           ``ResnetGenerator``)
cpstn_d    CPSTN discriminator (``NLayerDiscriminator``)  ``latest_net_D.pth``
=========  ==========================================  ======================

What upstream files hold besides the variables, and what is done with it:

* the official UMF-CMGR weights wrap the state dict as ``{'net': ...}``
  (``Test/test_fuse.py`` reads ``torch.load(ckpt)['net']``); the retrain's
  are plain.  Both are accepted;
* a ``module.`` prefix on every key (saved from ``nn.DataParallel``) is
  removed;
* MRRN appends its decoder layers to the ``enc`` ModuleList a second time,
  so its state dict holds each decoder tensor twice: ``enc.6``-``enc.21``
  are aliases of ``conv2_0`` ... ``predict_flow1b`` (the i-th decoder layer
  in registration order is ``enc.<6 + i>``).  Each alias is checked to be
  bitwise equal to its canonical tensor, then dropped;
* MRRN's two ``spatial_transform*.grid`` buffers (fixed 256 x 256 sampling
  grids; ours are built per input) are dropped.

The CPSTN networks' widths and depths (``input_nc``, ``output_nc``, ``ngf``,
``n_blocks``; ``ndf``, ``n_layers``) are read from the tensor shapes, so any
CycleGAN ``resnet_*blocks`` / ``n_layers`` build with instance norm loads.

Keras ``.weights.h5`` files written by :func:`save_weights` carry the kind
and these sizes as HDF5 attributes; a file is read dataset by dataset
against the layout of a freshly built model of its kind
(``checkpoints.keras_h5.weights_layout``, as for STDFusionNet), so a wrong
network, a missing or mis-shaped variable is a one-line error, never a
Keras traceback.

Every problem raises :class:`InputError` naming the file and the keys.
"""

import dataclasses
import functools
import json
import os
import re

import numpy as np

from ..checkpoints import keras_h5
from ..checkpoints.keras_h5 import (check_destination,  # noqa: F401
                                    is_keras_weights, name_list)
from ..errors import InputError, one_line

# Keras (via .layers) is imported only where a model is built or read, so
# that a bad file is refused before TensorFlow starts.

# HDF5 attributes of the .weights.h5 files written by save_weights.
H5_KIND = "stdfusion_tf.umf.network"
H5_CONFIG = "stdfusion_tf.umf.config"

# Wrappers around a state dict: the official UMF-CMGR weights use 'net'.
WRAPPER_KEYS = ("net", "state_dict")
DATA_PARALLEL_PREFIX = "module."
# MRRN's sampling-grid buffers (not variables: ours are built per input).
GRID_BUFFER = re.compile(r"^spatial_transform\w*\.grid$")


def _name_list(names, most=3):
    return name_list(names, most)


def _fixed_config(network, shapes, path):
    """MRRN and DIFN have fixed sizes upstream."""
    return dict(network.config)


def _cyclegan_convs(network, shapes, path):
    """{model index: weight shape} of the top-level ``model.N`` convs."""
    convs = {}
    for key, shape in shapes.items():
        m = re.match(r"^model\.(\d+)\.weight$", key)
        if m and len(shape) == 4:
            convs[int(m.group(1))] = tuple(shape)
    if not convs:
        raise InputError(path, f"holds no {network.title} convolution "
                         "(no model.<n>.weight of rank 4)")
    return convs


def _generator_config(network, shapes, path):
    convs = _cyclegan_convs(network, shapes, path)
    first, last = convs[min(convs)], convs[max(convs)]
    blocks = {int(m.group(1)) for k in shapes
              for m in [re.match(r"^model\.(\d+)\.conv_block\.", k)] if m}
    # Conv2d [out, in, k, k] first (input_nc -> ngf) and last
    # (ngf -> output_nc).
    return {"input_nc": first[1], "output_nc": last[0], "ngf": first[0],
            "n_blocks": len(blocks)}


def _discriminator_config(network, shapes, path):
    # conv 0 (input_nc -> ndf), n_layers - 1 stride-2 convs, one stride-1
    # conv, the 1-channel prediction conv.
    convs = _cyclegan_convs(network, shapes, path)
    first = convs[min(convs)]
    return {"input_nc": first[1], "ndf": first[0],
            "n_layers": len(convs) - 2}


# The Keras classes, imported when a model is built (static imports, so
# that tests/test_layering.py sees them).
def _mrrn():
    from .mrrn import MRRN
    return MRRN


def _difn():
    from .difn import DIFN
    return DIFN


def _cpstn_g():
    from .cpstn import CPSTNGenerator
    return CPSTNGenerator


def _cpstn_d():
    from .cpstn import PatchDiscriminator
    return PatchDiscriminator


@dataclasses.dataclass(frozen=True)
class Network:
    """One UMF-CMGR network: everything the loaders need to know of it.

    ``sign``: keys characteristic of its state dict (detection only; the
    full check against the model's variables comes after), matched as
    ``detect`` says: ``"any"`` (one such key is enough), ``"all"`` (every
    key), ``"most"`` (more than half; the best of these wins).
    ``sizes(network, shapes, path)``: its constructor arguments from
    state_dict shapes.  ``model_class()``: its Keras class (named
    ``class_name``)."""

    kind: str
    title: str
    model_class: object
    class_name: str
    config: dict
    sign: re.Pattern
    match: str
    sizes: object

    def build(self, config=None, dtype=None):
        config = dict(self.config if config is None else config)
        if dtype is not None:
            config["dtype"] = dtype
        return self.model_class()(**config)


# Registry order: the small networks first (tried first against a plain
# .weights.h5).
NETWORKS = {n.kind: n for n in (
    Network("mrrn", "MRRN", _mrrn, "MRRN", {},
            re.compile(r"^(enc\.\d+\.main|conv[12]_[0-2]\.main|"
                       r"predict_flow[12][ab]|dc_conv[12]_[0-2]\.0|"
                       r"spatial_transform(_f)?)\."), "most", _fixed_config),
    Network("difn", "DIFN", _difn, "DIFN", {"nfeats": 64},
            re.compile(r"^(conv[12]_1\.0|ir_path\.0|vi_path\.0|fuse|"
                       r"fuse_res|out_conv)\."), "most", _fixed_config),
    Network("cpstn_g", "CPSTN generator", _cpstn_g, "CPSTNGenerator",
            {"input_nc": 3, "output_nc": 1, "ngf": 64, "n_blocks": 9},
            re.compile(r"^model\.\d+\.conv_block\.\d+\.(weight|bias)$"),
            "any", _generator_config),
    Network("cpstn_d", "CPSTN discriminator", _cpstn_d,
            "PatchDiscriminator",
            {"input_nc": 1, "ndf": 64, "n_layers": 3},
            re.compile(r"^model\.\d+\.(weight|bias)$"), "all",
            _discriminator_config),
)}
# Views of the registry (the names other modules use).
KINDS = tuple(NETWORKS)
TITLES = {k: n.title for k, n in NETWORKS.items()}
DEFAULT_CONFIGS = {k: n.config for k, n in NETWORKS.items()}


# ------------------------------------------------------------------ models --

def build_model(kind, config=None, dtype=None):
    """A freshly built (variables created) Keras model of ``kind``."""
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}")
    return NETWORKS[kind].build(config, dtype)


def kind_of(model):
    """The kind of a Keras model built by :func:`build_model`."""
    names = {n.class_name: k for k, n in NETWORKS.items()}
    for cls in type(model).__mro__:
        if cls.__name__ in names:
            return names[cls.__name__]
    raise ValueError(f"not a UMF-CMGR network: {type(model).__name__}")


def mrrn_aliases(model):
    """{alias prefix: canonical prefix} of MRRN's state dict: the decoder
    layers (every child not in ``enc``), in registration order, were
    appended to ``enc`` after its encoder blocks."""
    children = [name for name, _ in model.torch_children()]
    encoder = [n for n in children if n.startswith("enc.")]
    decoder = [n for n in children if not n.startswith("enc.")]
    return {f"enc.{len(encoder) + i}.": f"{name}."
            for i, name in enumerate(decoder)}


def model_state_dict(model):
    """{state_dict key: array in PyTorch's layout} of a Keras model (the
    variables only: no aliases, no buffers)."""
    from . import layers

    return {k: layers.to_torch_layout(np.asarray(v.numpy()))
            for k, v in model.torch_variables().items()}


# ------------------------------------------------------------- detection --

def unwrap_state_dict(obj, path):
    """The state dict inside a loaded ``.pth`` object: the object itself,
    ``obj['net']`` (official weights) or ``obj['state_dict']``; a
    ``module.`` prefix on every key is removed."""
    if not isinstance(obj, dict):
        raise InputError(path, f"holds a {type(obj).__name__}, not a state "
                         "dict")
    if not any(isinstance(v, np.ndarray) for v in obj.values()):
        inner = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        if not inner:
            raise InputError(path, "holds no tensors and no 'net' state dict "
                             f"(keys: {_name_list(map(str, obj))})")
        obj = obj[inner[0]]
    bad = [str(k) for k, v in obj.items()
           if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    if bad:
        raise InputError(path, "is not a state dict: non-tensor entries "
                         + _name_list(bad))
    if obj and all(k.startswith(DATA_PARALLEL_PREFIX) for k in obj):
        obj = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in obj.items()}
    return dict(obj)


def detect(state, path):
    """(kind, config) of a state dict, from its keys and shapes."""
    keys = list(state)
    if not keys:
        raise InputError(path, "holds an empty state dict")
    score = {kind: sum(bool(n.sign.match(k)) for k in keys)
             for kind, n in NETWORKS.items()}
    by_rule = {rule: [k for k, n in NETWORKS.items() if n.match == rule]
               for rule in ("any", "all", "most")}
    found = ([k for k in by_rule["any"] if score[k]]
             + [k for k in by_rule["all"] if score[k] == len(keys)])
    if found:
        kind = found[0]
    else:
        kind = max(by_rule["most"], key=score.get)
        if 2 * score[kind] <= len(keys):
            raise InputError(path, "holds none of MRRN, DIFN, CPSTN "
                             f"generator/discriminator (keys: "
                             f"{_name_list(keys)})")
    return kind, infer_config(kind, {k: v.shape for k, v in state.items()},
                              path)


def infer_config(kind, shapes, path):
    """The constructor arguments of ``kind`` from state_dict shapes
    (PyTorch layout)."""
    network = NETWORKS[kind]
    return network.sizes(network, shapes, path)


# ------------------------------------------------------- state dict -> Keras --

def _resolve_aliases(state, aliases, path):
    out = dict(state)
    for key in list(state):
        for alias, canonical in aliases.items():
            if not key.startswith(alias):
                continue
            target = canonical + key[len(alias):]
            value = out.pop(key)
            if target not in state:
                out[target] = value  # only the alias was saved
            elif (value.shape != state[target].shape
                  or value.tobytes() != state[target].tobytes()):
                raise InputError(path, f"alias {key} differs from {target} "
                                 "(MRRN stores each decoder tensor twice; "
                                 "the copies must be equal)")
            break
    return out


def state_dict_to_model(state, path, expect=None, dtype=None):
    """A state dict (already unwrapped) -> (kind, Keras model), every key and
    shape checked.  ``expect``: the kind the caller needs."""
    kind, config = detect(state, path)
    if expect is not None and kind != expect:
        raise InputError(path, f"holds {TITLES[kind]} weights, "
                         f"{TITLES[expect]} expected")
    if kind == "mrrn":
        state = {k: v for k, v in state.items() if not GRID_BUFFER.match(k)}
    try:
        model = build_model(kind, config, dtype)
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"{TITLES[kind]} with {config} cannot be "
                         f"built: {one_line(exc)}") from None
    if kind == "mrrn":
        state = _resolve_aliases(state, mrrn_aliases(model), path)
    assign_state_dict(model, state, path)
    return kind, model


def _torch_shape(keras_shape):
    """The PyTorch-layout shape of a variable (inverse of
    ``layers.from_torch_layout`` on shapes)."""
    s = tuple(keras_shape)
    return (s[3], s[2], s[0], s[1]) if len(s) == 4 else s


def assign_state_dict(model, state, path):
    """Check ``state`` (PyTorch layout) against the model's variables --
    missing, unexpected, mis-shaped, non-float -- and assign it."""
    from . import layers

    variables = model.torch_variables()
    title = TITLES[kind_of(model)]
    missing = [k for k in variables if k not in state]
    extra = [k for k in state if k not in variables]
    if missing:
        raise InputError(path, f"{len(missing)} {title} key(s) missing: "
                         + _name_list(missing))
    if extra:
        raise InputError(path, f"{len(extra)} unexpected key(s) for "
                         f"{title}: " + _name_list(extra))
    arrays, bad = {}, []
    for key, var in variables.items():
        value = layers.from_torch_layout(state[key])
        if tuple(value.shape) != tuple(var.shape):
            bad.append(f"{key} {tuple(state[key].shape)} (expected "
                       f"{_torch_shape(var.shape)})")
        elif not np.issubdtype(value.dtype, np.floating) and \
                value.dtype.name != "bfloat16":
            bad.append(f"{key} is {value.dtype}, not floating point")
        else:
            arrays[key] = value
    if bad:
        raise InputError(path, "mis-shaped tensor(s): " + _name_list(bad))
    for key, var in variables.items():
        var.assign(np.asarray(arrays[key], dtype=var.dtype))
    return model


def read_pth(path, expect=None, dtype=None):
    """An upstream ``.pth`` -> (kind, Keras model)."""
    from ..checkpoints.pth import load_pth

    state = unwrap_state_dict(load_pth(path), path)
    return state_dict_to_model(state, path, expect, dtype)


# ----------------------------------------------------------------- Keras --

@functools.lru_cache(maxsize=8)
def _h5_layout(kind, config_json):
    """{dataset path in a .weights.h5: (state_dict key, Keras shape)}."""
    model = build_model(kind, json.loads(config_json))
    return keras_h5.weights_layout(model, model.torch_variables(), kind)


def h5_layout(kind, config=None):
    config = DEFAULT_CONFIGS[kind] if config is None else config
    return _h5_layout(kind, json.dumps(config, sort_keys=True))


def read_keras(path, expect=None, dtype=None):
    """A ``.weights.h5`` of one of the networks -> (kind, Keras model)."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    attrs, found = keras_h5.read_datasets(path, (H5_KIND, H5_CONFIG))
    if H5_KIND in attrs:
        kind = str(attrs[H5_KIND])
        try:
            config = json.loads(str(attrs.get(H5_CONFIG, "{}")))
        except ValueError:
            raise InputError(path, f"damaged {H5_CONFIG} attribute") from None
        if kind not in KINDS or not isinstance(config, dict):
            raise InputError(path, f"unknown network {kind!r:.40}")
    else:
        # A file written by plain model.save_weights: match its datasets
        # against the default builds.
        # (The first match wins; the small networks are tried first.)
        candidates = [expect] if expect else list(KINDS)
        matches = next(([k] for k in candidates
                        if set(h5_layout(k)) == set(found)), [])
        if not matches:
            if expect:
                kind, config = expect, DEFAULT_CONFIGS[expect]
            else:
                raise InputError(path, "is not a .weights.h5 of MRRN, DIFN "
                                 f"or a CPSTN network ({len(found)} "
                                 "datasets, e.g. "
                                 f"{_name_list(sorted(found), 2)})")
        else:
            kind, config = matches[0], DEFAULT_CONFIGS[matches[0]]
    if expect is not None and kind != expect:
        raise InputError(path, f"holds {TITLES[kind]} weights, "
                         f"{TITLES[expect]} expected")
    layout = h5_layout(kind, config)
    missing = [layout[k][0] for k in layout if k not in found]
    extra = sorted(k for k in found if k not in layout)
    if missing:
        raise InputError(path, f"{len(missing)} {TITLES[kind]} variable(s) "
                         "missing: " + _name_list(missing))
    if extra:
        raise InputError(path, f"{len(extra)} unexpected dataset(s) for "
                         f"{TITLES[kind]}: " + _name_list(extra))
    bad = [f"{layout[k][0]} {tuple(found[k].shape)} (expected "
           f"{layout[k][1]})" for k in layout
           if tuple(found[k].shape) != layout[k][1]]
    if bad:
        raise InputError(path, "mis-shaped variable(s): " + _name_list(bad))
    model = build_model(kind, config, dtype)
    variables = model.torch_variables()
    for h5name, (key, _) in layout.items():
        variables[key].assign(np.asarray(found[h5name],
                                         dtype=variables[key].dtype))
    return kind, model


def write_weights(model, path):
    """``model.save_weights(path)`` plus the network's kind and sizes as
    HDF5 attributes (not atomic: :func:`save_weights` is)."""
    import h5py

    kind = kind_of(model)
    config = infer_config(kind, {k: v.shape for k, v in
                                 model_state_dict(model).items()}, path)
    model.save_weights(str(path), overwrite=True)
    with h5py.File(str(path), "a") as f:
        f.attrs[H5_KIND] = kind
        f.attrs[H5_CONFIG] = json.dumps(config, sort_keys=True)
    return str(path)


def save_weights(model, path):
    """:func:`write_weights` to a temporary name, renamed into place."""
    return keras_h5.save_atomically(path,
                                    lambda tmp: write_weights(model, tmp))


def load_network(path, expect=None, dtype=None):
    """A ``.pth`` (converted on the fly), ``.weights.h5`` or preset name
    (``umfcmgr_retrain_reg_0800``, ``umfcmgr_retrain_fus_0200``: fetched
    into the Keras cache on first use) -> (kind, model).
    ``expect``: 'mrrn', 'difn', 'cpstn_g' or 'cpstn_d' (None: any)."""
    from .. import presets

    if expect is not None and expect not in KINDS:
        raise ValueError(f"unknown network kind {expect!r}")
    path = str(presets.resolve_umf(path))
    if is_keras_weights(path):
        return read_keras(path, expect, dtype)
    if os.path.isdir(path):
        raise InputError(path, "is a folder, not a .pth or .weights.h5 file")
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    return read_pth(path, expect, dtype)
