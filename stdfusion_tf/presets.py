"""Presets: STDFusionNet weights by name or folder, in keras_hub's layout.

A preset folder holds

* ``config.json``: the Keras-serialised model (``keras.saving.
  serialize_keras_object``: ``module``, ``class_name``, ``config``,
  ``registered_name`` = ``stdfusion_tf>STDFusionNet``), without
  ``build_config`` / ``compile_config`` as keras_hub writes it;
* ``model.weights.h5``: ``model.save_weights`` (float32, bitwise the
  weights of the model that was saved);
* ``metadata.json``: ``keras_version``, ``parameter_count``, ``date_saved``
  (keras_hub's keys; ``keras_hub.upload_preset`` checks only that the first
  two files exist and that ``config.json`` is JSON), plus
  ``stdfusion_tf_version``, ``source`` (where the weights came from) and ``source_sha256``
  ({file name: sha256} of the files they were read from).

Built-in names, the four released TF1 checkpoints (``assets.json``): fetched
with ``keras.utils.get_file`` (sha256-checked; from ``--mirror`` /
``$STDFUSION_MIRROR`` when given), converted once (every variable read back
bitwise) and cached, both under the Keras cache folder
(``$KERAS_HOME``, else ``~/.keras``, as ``get_file``):
``<cache>/stdfusion_tf/checkpoint/...`` (the TF1 files) and
``<cache>/stdfusion_tf/presets/<name>/`` (the preset).

    model = STDFusionNet.from_preset("stdfusionnet_jiayima_29")
    model.save_to_preset("my_preset")          # any model, e.g. train.py's
    again = STDFusionNet.from_preset("my_preset")

As keras_hub's preset loaders, the functions here are handed the model class
(``cls``) rather than importing it: ``STDFusionNet.from_preset`` calls down
into this module, and this module calls down into ``checkpoints`` (formats)
and ``assets`` (downloads), never back up.
"""

import datetime
import hashlib
import json
import os
import pathlib
import shutil

from .errors import InputError, one_line

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
REGISTERED_NAME = "stdfusion_tf>STDFusionNet"

# Preset name -> asset group of assets.json.  jiayima_29 reproduces the
# authors' result images (it is test.py's default checkpoint).
BUILTIN = {
    "stdfusionnet_jiayima_29": "jiayi-ma-29",
    "stdfusionnet_jiayima_28": "jiayi-ma-28",
    "stdfusionnet_linfengtang_28": "Linfeng-Tang-28",
    "stdfusionnet_linfengtang_29": "Linfeng-Tang-29",
}
DEFAULT_PRESET = "stdfusionnet_jiayima_29"
# Preset name -> (a ``.weights.h5`` shipped in this package, relative to
# its folder, and the file's sha256): weights trained with this project,
# read from the package (nothing to download) and cached as a preset on
# first use.  retrained_30ep: train.py's 30 epochs from scratch with the
# released recipe (float32, --seed 1); docs/retraining.md.  bf16_30ep: the
# same in bfloat16 (--precision bfloat16 --seed 1); docs/bf16.md.
PROJECT_BUILTIN = {
    "stdfusionnet_retrained_30ep": (
        "pretrained/retrained_30ep.weights.h5",
        "8d465cc9036724a02608daf7dd0fffff779ec3328705ffbdfd56d1a0f9820632"),
    "stdfusionnet_bf16_30ep": (
        "pretrained/bf16_30ep.weights.h5",
        "039c30f0c8b4c6f4f2fef1aa65acce61b6f234896d51e2e37ac272ba144ae6fa"),
}
PACKAGE_DIR = pathlib.Path(__file__).resolve().parent

# UMF-CMGR presets: name -> (asset group, file name, network kind).  The
# public retrain HaodeShi/UMF-CMGR-retrain-and-test @ 43f9365 (``cache/``),
# commit and sha256 pinned in assets.json; fetched on first use into the
# Keras cache (``<cache>/stdfusion_tf/checkpoint/umf/``), from
# ``$STDFUSION_UMF_MIRROR`` (laid out like ../shared/umf-cmgr: ``weights/``)
# when set.  Every UMF weights flag (and ``umf.weights.load_network``)
# takes these names.
UMF_BUILTIN = {
    "umfcmgr_retrain_reg_0800": ("umf_weights", "reg_0800.pth", "mrrn"),
    "umfcmgr_retrain_fus_0200": ("umf_weights", "fus_0200.pth", "difn"),
}
UMF_PREFIX = "umfcmgr_"


def names():
    return list(BUILTIN) + list(PROJECT_BUILTIN)


def cache_root():
    """``<Keras cache>/stdfusion_tf``.  The Keras cache folder is chosen as
    ``keras.utils.get_file`` does (``$KERAS_HOME``, else ``~/.keras``, else
    ``/tmp/.keras`` when home is not writable), but ``$KERAS_HOME`` is read
    now: Keras itself reads it once, at import."""
    base = os.environ.get("KERAS_HOME")
    if not base:
        home = os.path.expanduser("~")
        base = os.path.join(home if os.access(home, os.W_OK) else "/tmp",
                            ".keras")
    return pathlib.Path(base, "stdfusion_tf")


def is_preset_dir(path):
    return (isinstance(path, (str, os.PathLike))
            and os.path.isfile(os.path.join(str(path), CONFIG_FILE)))


def is_preset(src):
    """A built-in name, or a folder with ``config.json``: what ``from_preset``
    and every ``--checkpoint`` flag accept besides checkpoints."""
    return (isinstance(src, (str, os.PathLike))
            and (str(src) in names() or is_preset_dir(src)))


def reject_near_misses(src):
    """For the checkpoint readers: what is meant as a preset but is none --
    a misspelt built-in name (``stdfusionnet_...``, no such file), or a
    folder with a preset's other files but no ``config.json`` -- gets the
    preset error, not the TF1 reader's."""
    s = str(src)
    if (s.startswith("stdfusionnet_") and os.sep not in s
            and not os.path.exists(s)):
        raise unknown_name(src)
    if os.path.isdir(s) and any(os.path.isfile(os.path.join(s, f))
                                for f in (WEIGHTS_FILE, METADATA_FILE)):
        raise InputError(src, f"not a preset folder: no {CONFIG_FILE}")


def unknown_name(src):
    builtin = ", ".join(names())
    if os.sep in str(src):
        return InputError(src, f"no such preset folder (built-in presets: "
                          f"{builtin})")
    return InputError(None, f"unknown preset {str(src)!r} (built-in: "
                      f"{builtin}; or a preset folder with {CONFIG_FILE})")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def origin_of(src):
    """(source, {file name: sha256}) of a checkpoint: a ``.weights.h5``
    file, a TF1 prefix (or folder) or a preset folder."""
    from .checkpoints import DATA_SUFFIX, is_keras_weights, resolve_tf1_prefix

    if is_preset_dir(src):
        meta = read_metadata(src)
        return meta.get("source", str(src)), meta.get("source_sha256", {})
    if is_keras_weights(src):
        path = os.path.abspath(str(src))
        return path, {os.path.basename(path): sha256(path)}
    prefix = os.path.abspath(resolve_tf1_prefix(src))
    files = [prefix + ".index", prefix + DATA_SUFFIX]
    return prefix, {os.path.basename(f): sha256(f) for f in files}


# ----------------------------------------------------------------- saving --

def save_to_preset(model, preset_dir, source=None, source_sha256=None):
    """Write ``model`` as a preset folder (created; existing files of the
    three names are replaced, atomically each).  ``source`` /
    ``source_sha256`` default to where the model's weights were loaded from
    (``model.weights_origin``, set by ``load_model`` / ``from_preset``)."""
    import keras

    from .fileio import atomic_output

    if source is None and getattr(model, "weights_origin", None):
        source, source_sha256 = model.weights_origin
    preset_dir = pathlib.Path(preset_dir)
    if preset_dir.exists() and not preset_dir.is_dir():
        raise InputError(preset_dir, "exists and is not a folder")
    preset_dir.mkdir(parents=True, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    for key in ("build_config", "compile_config"):  # as keras_hub
        config.pop(key, None)
    metadata = {
        "keras_version": keras.version(),
        "stdfusion_tf_version": package_version(),
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "source": source or "unknown (weights not loaded from a file)",
        "source_sha256": dict(source_sha256 or {}),
    }
    with atomic_output(preset_dir / WEIGHTS_FILE, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
    for name, content in ((CONFIG_FILE, config), (METADATA_FILE, metadata)):
        with atomic_output(preset_dir / name) as tmp:
            with open(tmp, "w") as f:
                json.dump(content, f, indent=4)
                f.write("\n")
    return str(preset_dir)


def package_version():
    from importlib import metadata

    try:
        return metadata.version("stdfusion-tf")
    except metadata.PackageNotFoundError:  # run from a clone
        return None


# ---------------------------------------------------------------- loading --

def resolve(preset, cls, mirror=None):
    """A preset name or folder -> its folder (a built-in is fetched and
    converted on first use into a ``cls`` model's weights)."""
    if is_preset_dir(preset):
        return pathlib.Path(preset)
    if str(preset) in names():
        return ensure_builtin(str(preset), cls, mirror)
    if isinstance(preset, (str, os.PathLike)) and os.path.isdir(str(preset)):
        raise InputError(preset, f"not a preset folder: no {CONFIG_FILE}")
    if isinstance(preset, (str, os.PathLike)) and os.path.exists(str(preset)):
        raise InputError(preset, "not a preset folder (a preset is a folder "
                         f"with {CONFIG_FILE} and {WEIGHTS_FILE})")
    raise unknown_name(preset)


def read_json(path):
    try:
        with open(path) as f:
            content = json.load(f)
    except FileNotFoundError:
        raise InputError(path, "missing from the preset folder")
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable JSON ({one_line(exc)})")
    if not isinstance(content, dict):
        raise InputError(path, "not a JSON object")
    return content


def read_metadata(folder):
    path = pathlib.Path(folder, METADATA_FILE)
    return read_json(path) if path.exists() else {}


def read_config(folder):
    path = pathlib.Path(folder, CONFIG_FILE)
    config = read_json(path)
    name = config.get("registered_name")
    if name != REGISTERED_NAME:
        raise InputError(path, f"holds {name or config.get('class_name')!r}, "
                         f"not an STDFusionNet preset ({REGISTERED_NAME})")
    return config


def load(cls, preset, mirror=None, load_weights=True, paper_activations=None,
         **kwargs):
    """``cls.from_preset``: the ``cls`` model of a preset name or folder.
    ``kwargs`` override the saved config (``dtype="mixed_bfloat16"``).
    ``paper_activations`` must agree with the preset when given as True."""
    import keras

    from .checkpoints import assign_weights, read_keras_weights

    folder = resolve(preset, cls, mirror)
    config = read_config(folder)
    saved = bool(config.get("config", {}).get("paper_activations", False))
    if paper_activations and not saved:
        raise InputError(folder, "preset was saved without "
                         "paper_activations; drop --paper_activations")
    weights = folder / WEIGHTS_FILE
    arrays = read_keras_weights(weights, cls) if load_weights else None
    config = dict(config, config={**config.get("config", {}), **kwargs})
    try:
        model = keras.saving.deserialize_keras_object(
            config, custom_objects={REGISTERED_NAME: cls})
    except Exception as exc:
        raise InputError(folder / CONFIG_FILE, f"cannot build the model "
                         f"({one_line(exc)})")
    if arrays is not None:
        assign_weights(model, arrays)
        meta = read_metadata(folder)
        model.weights_origin = (meta.get("source", str(folder)),
                                meta.get("source_sha256", {}))
    return model


def ensure_builtin(name, cls, mirror=None):
    """The cached preset folder of a built-in name, made on first use from
    its pinned, sha256-checked files (a TF1 release, or a project file) read
    into a ``cls`` model."""
    from . import assets, fileio
    from .checkpoints import (assign_weights, read_keras_weights,
                              read_tf1_weights, variable_shapes)

    if name in PROJECT_BUILTIN:
        rel, digest = PROJECT_BUILTIN[name]
        path = PACKAGE_DIR / rel
        pinned = {path.name: digest}
    else:
        group = BUILTIN[name]
        entries = assets.manifest()["groups"][group]
        pinned = {pathlib.Path(e["dest"]).name: e["sha256"] for e in entries}
    folder = cache_root() / "presets" / name
    if _cached_ok(folder, pinned, cls):
        return folder
    model = cls()
    if name in PROJECT_BUILTIN:
        if not path.is_file():
            raise InputError(path, f"missing: preset {name!r} is this file "
                             "of the stdfusion-tf package (reinstall it)")
        if sha256(path) != digest:
            raise InputError(path, f"sha256 differs from preset {name!r}'s "
                             "pinned one; preset not cached")
        assign_weights(model, read_keras_weights(path, cls))
        source = f"stdfusion-tf:{pathlib.PurePath('stdfusion_tf', rel)}"
    else:
        paths = assets.fetch(group, root=cache_root(), mirror=mirror)
        prefix = paths[0][: -len(".index")]
        assign_weights(model, read_tf1_weights(prefix,
                                               variable_shapes(model))[1])
        repo = assets.manifest()["repos"][entries[0]["repo"]]
        source = (f"{repo['repo']}@{repo['commit']}:"
                  f"{entries[0]['path'][: -len('.index')]}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(fileio.mkdtemp(folder.parent, name))
    try:
        save_to_preset(model, tmp, source=source, source_sha256=pinned)
        back = read_keras_weights(tmp / WEIGHTS_FILE, cls)
        for key, var in model.tf1_variables().items():
            if back[key].tobytes() != var.numpy().tobytes():
                raise InputError(tmp / WEIGHTS_FILE, f"{key} does not read "
                                 "back bitwise; preset not cached")
        if folder.exists():  # stale or broken: replaced
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def umf_names():
    return list(UMF_BUILTIN)


def resolve_umf(src, mirror=None):
    """UMF-CMGR weights: a preset name -> the path of its cached, sha256-
    checked ``.pth`` (fetched on first use); anything else unchanged.  A
    misspelt ``umfcmgr_...`` name that is no file is a one-line error."""
    from . import assets

    s = str(src)
    if s in UMF_BUILTIN:
        group, file_name, _ = UMF_BUILTIN[s]
        (path,) = assets.fetch(group, root=cache_root(), mirror=mirror,
                               only=[file_name])
        return path
    if s.startswith(UMF_PREFIX) and os.sep not in s and not os.path.exists(s):
        raise InputError(None, f"unknown UMF-CMGR preset {s!r} (built-in: "
                         f"{', '.join(UMF_BUILTIN)})")
    return src


def _cached_ok(folder, pinned, cls):
    """A cached built-in preset made from exactly the pinned files, with its
    weights complete."""
    from .checkpoints import read_keras_weights

    if not (folder / CONFIG_FILE).is_file():
        return False
    try:
        if read_metadata(folder).get("source_sha256") != pinned:
            return False
        read_config(folder)
        read_keras_weights(folder / WEIGHTS_FILE, cls)
    except InputError:
        return False
    return True
