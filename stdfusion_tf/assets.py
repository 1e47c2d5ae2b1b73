"""The upstream files (released weights, test and training images), fetched on
demand from their pinned commits and checked against sha256 hashes.

``assets.json`` lists every file: the repository and commit it comes from,
its path there, its path in a local mirror laid out like this project's
``../shared/upstream`` (``checkpoints/<release>/...``, ``Test_ir/...``), where
it goes in the project (upstream's default locations: ``checkpoint/``,
``Test_ir/``, ...) and its sha256.

Files are fetched with ``keras.utils.get_file`` (hash-checked, re-fetched when
a local copy does not match) either from GitHub or, when a mirror folder is
given, from that folder through a ``file://`` origin.  A hash mismatch is an
error and the bad file is removed.  Mirrors: ``--mirror`` or
``STDFUSION_MIRROR`` for the upstream release (laid out like
``../shared/upstream``), ``STDFUSION_DATA_MIRROR`` for the evaluation data
sets (laid out like ``../shared``: ``datasets/``, ``peers/``),
``STDFUSION_UMF_MIRROR`` for UMF-CMGR's weights and RoadScene working set
(laid out like ``../shared/umf-cmgr``: ``weights/``, ``RoadScene/``).

    stdfusion-assets --groups tno42,roadscene,peers_tno42   # commands/assets.py
"""

import contextlib
import io
import json
import os
import pathlib

from . import fileio
from .errors import InputError, one_line

MIRROR_ENV = "STDFUSION_MIRROR"
DATA_MIRROR_ENV = "STDFUSION_DATA_MIRROR"
UMF_MIRROR_ENV = "STDFUSION_UMF_MIRROR"
# Evaluation data (Table I): TNO42 and RoadScene sources, other methods'
# TNO42 results; everything else is the upstream release.
DATASET_GROUPS = ("tno42", "roadscene", "peers_tno42")
# UMF-CMGR: the public retrain's MRRN/DIFN weights and its RoadScene set.
UMF_GROUPS = ("umf_weights", "umf_roadscene")
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent

# The released jiayi-ma model-29 reproduces the authors' result images.
DEFAULT_WEIGHTS = "jiayi-ma-29"
DEFAULT_CHECKPOINT = "checkpoint/Fusion.model-29"


def in_clone():
    """Running from a checkout of the project (or an editable install), not
    from an installed package: a clone keeps upstream's default locations
    (``checkpoint/`` ... in the working folder)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file()


def manifest():
    with open(pathlib.Path(__file__).with_name("assets.json")) as f:
        return json.load(f)


def groups():
    return sorted(manifest()["groups"])


def origin(entry, mirror=None):
    if mirror:
        return pathlib.Path(mirror, entry["mirror"]).resolve().as_uri()
    repo = manifest()["repos"][entry["repo"]]
    return RAW_URL.format(repo=repo["repo"], commit=repo["commit"],
                          path=entry["path"])


def default_mirror(group, mirror=None):
    env = (DATA_MIRROR_ENV if group in DATASET_GROUPS
           else UMF_MIRROR_ENV if group in UMF_GROUPS else MIRROR_ENV)
    return mirror or os.environ.get(env) or None


def mirror_or_shared(group):
    """The benchmarks' source: the configured mirror, else this workplace's
    ``../shared`` beside the project when present, else None (download)."""
    shared = PROJECT_ROOT.parent / "shared"
    if group in UMF_GROUPS:
        shared = shared / "umf-cmgr"
    elif group not in DATASET_GROUPS:
        shared = shared / "upstream"
    return default_mirror(group) or (str(shared) if shared.is_dir() else None)


def fetch(group, root=PROJECT_ROOT, mirror=None, verbose=True, only=None):
    """Make sure every file of ``group`` (or those whose file name is in
    ``only``) is at ``root/<dest>`` with the right hash; returns the list of
    paths.  A failure is one ``InputError`` line (no chained traceback) and
    leaves nothing behind: no partial file, no folder this call created."""
    import keras

    entries = manifest()["groups"].get(group)
    if entries is None:
        raise InputError(None, f"unknown asset group {group!r} "
                         f"(known: {', '.join(groups())})")
    if only is not None:
        entries = [e for e in entries
                   if pathlib.Path(e["dest"]).name in set(only)]
    mirror = default_mirror(group, mirror)
    if mirror and not os.path.isdir(mirror):
        raise InputError(mirror, "mirror folder does not exist")
    paths, fetched, made = [], 0, []
    try:
        for entry in entries:
            dest = pathlib.Path(root, entry["dest"]).resolve()
            fileio.check_writable(dest.parent, [dest])
            made += fileio.makedirs(dest.parent)
            log = io.StringIO()  # get_file's progress bars: one line below
            try:
                with contextlib.redirect_stdout(log):
                    got = keras.utils.get_file(
                        fname=dest.name, origin=origin(entry, mirror),
                        file_hash=entry["sha256"], hash_algorithm="sha256",
                        cache_dir=str(dest.parent.parent),
                        cache_subdir=dest.parent.name)
            except Exception as exc:
                if dest.exists():  # get_file leaves a corrupt download
                    dest.unlink()
                source = (os.path.join(mirror, entry["mirror"]) if mirror
                          else origin(entry))
                raise InputError(source, f"cannot fetch {entry['dest']} "
                                 f"({one_line(exc)})") from None
            if pathlib.Path(got).resolve() != dest:
                raise InputError(dest.parent, "folder is not writable")
            fetched += "Downloading" in log.getvalue()
            paths.append(str(dest))
    except BaseException:
        fileio.remove_empty_folders(made)
        raise
    if fetched and verbose:
        source = mirror or "GitHub (pinned commits)"
        print(f"Fetched {fetched} file(s) of '{group}' from {source}, "
              "sha256 verified.")
    return paths


def ensure_test_data(root=PROJECT_ROOT, mirror=None):
    fetch("test_images", root, mirror)


def ensure_weights(group=DEFAULT_WEIGHTS, root=PROJECT_ROOT, mirror=None):
    """Fetch a released checkpoint; returns its TF1 prefix."""
    paths = fetch(group, root, mirror)
    return paths[0][: -len(".index")]
