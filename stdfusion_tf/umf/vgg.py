"""VGG19 features for UMF-CMGR's training losses, torchvision's layout.

Upstream's losses (``loss/reg_losses.py`` ``VGG19`` / ``VGGLoss``, and
CPSTN's ``VGGLoss``) use ``torchvision.models.vgg19(pretrained=True)
.features`` cut into five slices ending at relu1_1, relu2_1, relu3_1,
relu4_1 and relu5_1 (``features`` indices 1, 6, 11, 20, 29).  This is that
``features`` stack in Keras: 16 convolutions 3x3 padding 1 (each followed by
ReLU), 2x2 max-pools with stride 2 after blocks 1-4 (index 36 is the fifth
pool, unused).  Variables are named by the state_dict keys
``features.<N>.weight`` / ``features.<N>.bias`` of torchvision's file
``vgg19-dcbb9e9d.pth`` (ImageNet weights, the ``classifier.*`` tensors are
ignored).

The inputs are what upstream feeds: gray images repeated to 3 channels, in
[0, 1] for registration ([-1, 1] for CPSTN), **without** ImageNet
normalisation.

The weights are never downloaded on this machine's tests: :func:`load`
reads a local file through :func:`stdfusion_tf.checkpoints.pth.load_pth` (no pickled
code runs), :func:`fetch` gets it with ``keras.utils.get_file`` from the
pinned URL and checks it as ``torch.hub`` does (the file name carries the
first 8 hex digits of its sha256).  ``random`` builds a randomly
initialised VGG19 (torchvision's Kaiming-normal fan-out weights)
from a NumPy seed (:func:`random_state_dict`): a smoke-test mode, loudly
warned by the command lines;
the tests use it because only the arithmetic is checked.
"""

import hashlib
import os

import numpy as np

from ..errors import InputError

URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
FILENAME = "vgg19-dcbb9e9d.pth"
SHA256_PREFIX = "dcbb9e9d"  # torch.hub's check_hash: the name's hash part

# torchvision's cfg "E": channels, "M" = max-pool.
CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# upstream's slice ends (index of the ReLU whose output is taken)
RELU = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20,
        "relu5_1": 29}


def conv_indices():
    """[(features index, in channels, out channels)] of the 16 convs."""
    out, index, width = [], 0, 3
    for item in CONFIG:
        if item == "M":
            index += 1
            continue
        out.append((index, width, item))
        width = item
        index += 2  # conv, ReLU
    return out


RANDOM_BIAS_STD = 0.05


def random_state_dict(seed=0, last=None):
    """A random VGG19 ``features`` state dict (PyTorch layout, float32),
    drawn with NumPy conv by conv in order (``last``: stop after that
    index): weights as torchvision initialises them,
    ``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` (std
    sqrt(2 / (9 out))); biases N(0, 0.05^2), not torchvision's zeros: with
    zero biases, a conv over a region where the previous ReLUs are all off
    gives pre-activations that are exactly 0 in exact arithmetic, and
    whether ReLU (and the L1 after it) lets a gradient through there
    depends on each library's rounding (Winograd or not), as it never does
    with the trained weights."""
    rng = np.random.default_rng(seed)
    state = {}
    for index, cin, cout in conv_indices():
        if last is not None and index > last:
            break
        std = np.sqrt(2.0 / (cout * 9))
        state[f"features.{index}.weight"] = (
            rng.standard_normal((cout, cin, 3, 3)) * std).astype(np.float32)
        state[f"features.{index}.bias"] = (
            rng.standard_normal(cout) * RANDOM_BIAS_STD).astype(np.float32)
    return state


def _keras():
    import keras
    from keras import ops

    from . import layers

    class VGG19Features(keras.Model):
        """torchvision's ``vgg19().features`` up to ``last`` (an index;
        default relu5_1, the deepest layer upstream uses)."""

        def __init__(self, last=RELU["relu5_1"], **kwargs):
            kwargs.setdefault("name", "vgg19")
            super().__init__(**kwargs)
            self.last = last
            self.convs = {}
            for index, cin, cout in conv_indices():
                if index > last:
                    break
                conv = layers.Conv2d(cout, 3, padding=1,
                                     name=f"features_{index}",
                                     dtype=self.dtype_policy)
                conv.build((None, None, None, cin))
                self.convs[index] = conv
            self._convs = list(self.convs.values())  # tracked
            self.built = True

        def call(self, x, outputs=("relu4_1",)):
            """``x`` [N, H, W, 3] -> [activation after each named ReLU]."""
            want = {RELU[name]: name for name in outputs}
            got = {}
            for index in range(max(want) + 1):
                if index in self.convs:
                    x = self.convs[index](x)
                elif index - 1 in self.convs:  # the conv's ReLU
                    x = ops.relu(x)
                else:  # max-pool 2, stride 2 (floor, as PyTorch)
                    x = ops.max_pool(x, 2, 2, padding="valid")
                if index in want:
                    got[want[index]] = x
            return [got[name] for name in outputs]

        def torch_variables(self):
            out = {}
            for index, conv in self.convs.items():
                out[f"features.{index}.weight"] = conv.weight
                out[f"features.{index}.bias"] = conv.bias
            return out

    return VGG19Features


def build(last=RELU["relu5_1"], state=None, path=None, dtype=None):
    """A Keras VGG19 ``features`` stack up to index ``last``, assigned
    from ``state`` (PyTorch layout; ``features.*`` beyond ``last`` and
    ``classifier.*`` are ignored)."""
    from . import layers

    model = _keras()(last=last, dtype=dtype)
    if state is not None:
        variables = model.torch_variables()
        missing = [k for k in variables if k not in state]
        if missing:
            raise InputError(path, f"not torchvision's VGG19: {len(missing)} "
                             f"key(s) missing ({missing[0]}, ...)")
        for key, var in variables.items():
            value = layers.from_torch_layout(np.asarray(state[key],
                                                        np.float32))
            if tuple(value.shape) != tuple(var.shape):
                raise InputError(path, f"{key} has shape "
                                 f"{tuple(state[key].shape)}, not VGG19's")
            var.assign(value)
    return model


def missing_message(where):
    return (f"the VGG19 ImageNet weights are needed for the loss: get {URL} "
            f"and put it at {where} (or pass --vgg19 FILE; --vgg19 random "
            "for a smoke test without them)")


def default_path():
    """Where ``keras.utils.get_file`` keeps the file
    (``$KERAS_HOME/models``, default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME", os.path.join(
        os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", FILENAME)


def check_file(path):
    """The file's sha256 must start with torchvision's ``dcbb9e9d`` (a file
    named otherwise is trusted as the user's own VGG19 weights)."""
    if os.path.basename(path) != FILENAME:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(SHA256_PREFIX):
        raise InputError(path, f"sha256 {digest.hexdigest()[:16]}... does not "
                         f"start with {SHA256_PREFIX}: a damaged download? "
                         "(delete it and fetch again)")


def fetch():
    """The local path of ``vgg19-dcbb9e9d.pth``: the Keras cache, else a
    download with ``keras.utils.get_file``; a one-line error saying what to
    get and where to put it when neither works."""
    path = default_path()
    if not os.path.isfile(path):
        import keras

        try:
            path = keras.utils.get_file(FILENAME, URL, cache_subdir="models")
        except Exception:  # no network, proxy, HTTP error...
            raise InputError(None, missing_message(path)) from None
    check_file(path)
    return path


def resolve(spec):
    """``--vgg19``: None (the cached / downloaded file), a file, or
    ``random`` -> (state dict or None for random, description)."""
    from ..checkpoints import pth

    if spec == "random":
        return None, "random"
    path = fetch() if spec is None else os.path.abspath(spec)
    if not os.path.isfile(path):
        raise InputError(path, "no such file; " + missing_message(path))
    check_file(path)
    return pth.tensors(pth.load_pth(path)), path


def load(spec, last=RELU["relu4_1"], seed=0):
    """(Keras VGG19 features up to ``last``, description) from ``--vgg19``."""
    state, what = resolve(spec)
    if state is None:
        state = random_state_dict(seed, last)
        return build(last, state), "random"
    return build(last, state, what), what
