"""TF1 checkpoints of STDFusionNet (``.index`` + ``.data-00000-of-00001``;
``.meta`` is never needed), as released upstream under the root scope
``STMFusion_model/`` (jiayi-ma) or ``STDFusion_model/`` (Linfeng-Tang), read
with ``tf.train.load_checkpoint`` and written as TF1 writes them.  Adam
slots and ``beta*_power`` of a training checkpoint are optimizer state, kept
apart from the model variables.

Every problem raises :class:`InputError` naming the file and the variables.
"""

import os
import tempfile

from ..errors import InputError, one_line
from ..fileio import atomic_output

# Root scopes of the two releases (jiayi-ma, Linfeng-Tang).  Checkpoints we
# write use STDFusion_model, the name in the released training code.
KNOWN_ROOTS = ("STMFusion_model", "STDFusion_model")
DEFAULT_ROOT = "STDFusion_model"
STATE_FILE = "checkpoint"
DATA_SUFFIX = ".data-00000-of-00001"


def is_optimizer_variable(name):
    """Adam slots, power accumulators and step counters of a TF1 training run."""
    last = name.rsplit("/", 1)[-1]
    return (last in ("Adam", "Adam_1", "beta1_power", "beta2_power",
                     "global_step", "iterations")
            or name.startswith("optimizer/"))


# --------------------------------------------------------------------- TF1 --

def resolve_tf1_prefix(src):
    """A checkpoint directory (with a ``checkpoint`` state file) or a prefix
    (``.../Fusion.model-29``, or one of its files) -> the prefix."""
    import tensorflow as tf

    src = str(src)
    if os.path.isdir(src):
        state = os.path.join(src, STATE_FILE)
        if not os.path.isfile(state):
            raise InputError(src, f"no '{STATE_FILE}' state file in this "
                             "directory; give a checkpoint prefix such as "
                             f"{os.path.join(src, 'Fusion.model-29')}")
        try:
            ckpt = tf.train.get_checkpoint_state(src)
        except Exception as exc:  # malformed text proto
            raise InputError(state, f"unreadable state file ({one_line(exc)})")
        if ckpt is None or not ckpt.model_checkpoint_path:
            raise InputError(state, "state file names no model_checkpoint_path")
        prefix = ckpt.model_checkpoint_path
        if not os.path.isabs(prefix) or not os.path.exists(prefix + ".index"):
            # Relative, or absolute on the machine that trained it.
            prefix = os.path.join(src, os.path.basename(prefix))
    else:
        prefix = src
        for suffix in (".index", DATA_SUFFIX, ".meta"):
            if prefix.endswith(suffix):
                prefix = prefix[: -len(suffix)]
    if not os.path.isfile(prefix + ".index"):
        raise InputError(prefix, "not a TF1 checkpoint: "
                         f"{os.path.basename(prefix)}.index does not exist")
    if not os.path.isfile(prefix + DATA_SUFFIX):
        raise InputError(prefix, f"TF1 checkpoint without its data file "
                         f"{os.path.basename(prefix)}{DATA_SUFFIX}")
    return prefix


def read_tf1_checkpoint(src):
    """(prefix, {full TF1 name: array}) with every tensor read, so that a
    truncated data file is found here and not half-way through a run."""
    import tensorflow as tf

    prefix = resolve_tf1_prefix(src)
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
        tensors = {name: reader.get_tensor(name) for name in names}
    except Exception as exc:
        raise InputError(prefix, "unreadable or truncated TF1 checkpoint "
                         f"({one_line(exc)})")
    return prefix, tensors


def split_tf1_tensors(tensors, source):
    """{full name: array} -> (root, model {name: array}, optimizer {name: array}).

    The root scope is the first path component of the model variables; it
    must be the same for all of them.
    """
    model_vars = {k: v for k, v in tensors.items()
                  if not is_optimizer_variable(k)}
    optimizer = {k: v for k, v in tensors.items() if is_optimizer_variable(k)}
    roots = sorted({k.split("/", 1)[0] for k in model_vars if "/" in k})
    if not roots:
        raise InputError(source, "holds no STDFusionNet variables "
                         f"(found: {', '.join(sorted(tensors)[:5]) or 'none'})")
    if len(roots) > 1:
        raise InputError(source, "variables under several root scopes "
                         f"({', '.join(roots)}); expected one of "
                         f"{', '.join(KNOWN_ROOTS)}")
    root = roots[0]
    stray = sorted(k for k in model_vars if "/" not in k)
    if stray:
        raise InputError(source, f"unexpected variables: {', '.join(stray)}")
    arrays = {k.split("/", 1)[1]: v for k, v in model_vars.items()}
    return root, arrays, optimizer


def write_tf1_checkpoint(prefix, tensors, update_state=True):
    """Write {full TF1 name: array} as a TF1 (V2 format) checkpoint.

    Written under a temporary prefix and renamed into place, index last, so
    that a killed write leaves either no loadable checkpoint or the complete
    one, never a mix.  Then the directory's ``checkpoint`` state file is
    pointed at it (atomically), keeping its list of earlier checkpoints.
    """
    import tensorflow as tf

    from ..fileio import check_writable, committed, mkdtemp, write_error

    prefix = os.path.abspath(str(prefix))
    directory = os.path.dirname(prefix)
    check_writable(directory, [prefix + ".index", prefix + DATA_SUFFIX])
    try:
        os.makedirs(directory, exist_ok=True)
        tmp = mkdtemp(directory, "ckpt")
    except OSError as exc:
        raise write_error(prefix, exc) from exc
    try:
        names = sorted(tensors)
        try:
            tf.raw_ops.SaveV2(
                prefix=os.path.join(tmp, "ckpt"), tensor_names=names,
                shape_and_slices=[""] * len(names),
                tensors=[tf.convert_to_tensor(tensors[n]) for n in names])
        except (OSError, tf.errors.OpError) as exc:
            # a full disk: the temporary folder goes, the previous
            # checkpoint of that name (if any) is untouched
            raise write_error(prefix, exc) from exc
        if os.path.exists(prefix + ".index"):
            os.remove(prefix + ".index")  # never a new data file + old index
        os.replace(os.path.join(tmp, "ckpt" + DATA_SUFFIX), prefix + DATA_SUFFIX)
        os.replace(os.path.join(tmp, "ckpt.index"), prefix + ".index")
        committed(prefix + DATA_SUFFIX)
        committed(prefix + ".index")
    finally:
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        os.rmdir(tmp)
    if update_state:
        write_state_file(directory, os.path.basename(prefix))
    return prefix


def write_state_file(directory, name):
    """Point ``directory/checkpoint`` (TF1's text-proto state file) at
    ``name``, keeping the list of earlier checkpoints; written atomically."""
    import tensorflow as tf

    previous = tf.train.get_checkpoint_state(directory)
    paths = [os.path.basename(p) for p in
             (previous.all_model_checkpoint_paths if previous else [])]
    paths = [p for p in paths if p != name] + [name]
    text = f'model_checkpoint_path: "{name}"\n' + "".join(
        f'all_model_checkpoint_paths: "{p}"\n' for p in paths)
    with atomic_output(os.path.join(directory, STATE_FILE)) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
