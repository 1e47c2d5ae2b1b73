"""Weights files: one I/O layer for TF1 checkpoints, Keras ``.weights.h5``
files and PyTorch ``.pth`` files.

* :mod:`.tf1`: TF1 checkpoints of STDFusionNet (the releases, training
  checkpoints with Adam slots), read and written as TF1 does;
* :mod:`.keras_h5`: ``.weights.h5`` helpers shared by both wings (the
  dataset layout of a model, reading datasets, atomic saving);
* :mod:`.stdfusionnet`: STDFusionNet's weights as ``{TF1 name: array}``
  from either format, every variable checked;
* :mod:`.pth`: PyTorch ``.pth`` files read without PyTorch and without
  running pickled code (UMF-CMGR's weights, torchvision's VGG19).

UMF-CMGR's networks (which network a file holds, state_dict <-> Keras) are
``stdfusion_tf.umf.weights``, on these helpers.  Every problem raises
:class:`InputError` naming the file and the variables.

These modules know the formats, not the network: where they need a
variable layout they are given the model (or its class) -- so that
``presets`` can use them under ``STDFusionNet.from_preset`` without a loop.
Loading from any source (checkpoint, ``.weights.h5`` or preset) into a new
model is ``loading``.
"""

from .keras_h5 import is_keras_weights  # noqa: F401
from .stdfusionnet import (assign_weights, check_arrays,  # noqa: F401
                           export_tf1_tensors, keras_h5_layout,
                           read_keras_weights, read_tf1_weights,
                           save_keras_weights, variable_shapes)
from .tf1 import (DATA_SUFFIX, DEFAULT_ROOT, KNOWN_ROOTS,  # noqa: F401
                  STATE_FILE, is_optimizer_variable, read_tf1_checkpoint,
                  resolve_tf1_prefix, split_tf1_tensors, write_state_file,
                  write_tf1_checkpoint)
