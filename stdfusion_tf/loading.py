"""STDFusionNet from any weights source: the one loader of the command lines
and the API.

A source is a TF1 checkpoint (a prefix such as ``checkpoint/Fusion.model-29``,
or a folder with a ``checkpoint`` state file), a Keras ``.weights.h5`` file,
or a preset (a built-in name such as ``stdfusionnet_jiayima_29``, or a folder
written by ``save_to_preset``).  This module stands above the model and the
three things it combines -- ``checkpoints`` (the formats), ``presets`` (named
weights) and ``assets`` (pinned downloads) -- none of which imports it.
"""

from . import assets, presets
from .checkpoints import (assign_weights, is_keras_weights, read_keras_weights,
                          read_tf1_weights)


def read_weights(src):
    """Any supported source -> {TF1 name: array} (validated)."""
    from .model import STDFusionNet, tf1_variable_shapes  # Keras: on use

    if presets.is_preset(src):  # a built-in name or a preset folder
        src = presets.resolve(src, STDFusionNet) / presets.WEIGHTS_FILE
    presets.reject_near_misses(src)
    if is_keras_weights(src):
        return read_keras_weights(src, STDFusionNet)
    return read_tf1_weights(src, tf1_variable_shapes())[1]


def load_model(src, paper_activations=False, dtype=None):
    """STDFusionNet with the weights of a ``.weights.h5`` or TF1 checkpoint,
    or of a preset (name or folder: its config decides the activations)
    (``dtype``: a Keras dtype policy such as ``"mixed_bfloat16"``).
    ``model.weights_origin`` records the source and its sha256 (for
    ``save_to_preset``)."""
    from .model import STDFusionNet

    if presets.is_preset(src):
        return presets.load(STDFusionNet, src,
                            paper_activations=paper_activations,
                            **({"dtype": dtype} if dtype else {}))
    arrays = read_weights(src)
    model = STDFusionNet(paper_activations=paper_activations, dtype=dtype)
    model.weights_origin = presets.origin_of(src)
    return assign_weights(model, arrays)


def default_checkpoint(checkpoint, mirror=None):
    """The checkpoint to load for a ``--checkpoint`` flag.  Upstream's default
    location ``checkpoint/Fusion.model-29`` gets the released weights: from a
    clone (or where ``./checkpoint/`` already holds them) fetched there, as
    upstream; from an installed package into the Keras cache
    (``$KERAS_HOME``, else ``~/.keras``: ``stdfusion_tf/checkpoint/``),
    never into the working folder.  A built-in preset name is fetched and
    converted into the Keras cache.  Anything else is returned as given."""
    if checkpoint == assets.DEFAULT_CHECKPOINT:
        import os

        if assets.in_clone() or os.path.exists(checkpoint + ".index"):
            assets.ensure_weights(root=".", mirror=mirror)
            return checkpoint
        return assets.ensure_weights(root=presets.cache_root(),
                                     mirror=mirror)
    if str(checkpoint) in presets.names():  # into the Keras cache
        from .model import STDFusionNet

        presets.resolve(checkpoint, STDFusionNet, mirror=mirror)
    return checkpoint


def ensure_defaults(checkpoint, ir_dir, vi_dir, mirror=None):
    """For the command lines: ``default_checkpoint`` (returned: the
    checkpoint to load), and upstream's test pairs fetched into the working
    folder when (and only when) the folder flags still name upstream's
    default locations."""
    checkpoint = default_checkpoint(checkpoint, mirror)
    if (ir_dir, vi_dir) == ("Test_ir", "Test_vi"):
        assets.ensure_test_data(root=".", mirror=mirror)
    return checkpoint
