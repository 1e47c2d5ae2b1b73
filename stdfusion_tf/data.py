"""Training patches, exactly as upstream's ``input_setup`` cut them.

For each of ``Train_ir``, ``Train_vi``, ``Train_ir_mask_blur``: the ``.bmp``
and ``.tif`` files sorted by the integer in their name, each read like the
test images (``images.read_gray``), scaled ``(x - 127.5) / 127.5`` and cut
into ``image_size`` patches with ``stride``, row-major::

    for x in range(0, h - image_size + 1, stride):
        for y in range(0, w - image_size + 1, stride):

The patches go to ``<checkpoint_dir>/<folder>/train.h5`` (dataset ``data``,
[N, 128, 128, 1]).  Upstream's 20 pairs give exactly 6921 patches.

Upstream never checked that the three folders agree; the jiayi-ma
repository's ``Train_ir`` lacks 5 of the 20 images, which silently mispairs
every later patch.  Here names, counts and sizes must agree.
"""

import os

import numpy as np

from . import images
from .errors import InputError
from .fileio import atomic_output

TRAIN_EXTENSIONS = (".bmp", ".tif")
TRAIN_FOLDERS = ("Train_ir", "Train_vi", "Train_ir_mask_blur")


def training_files(folder):
    """Upstream's ``prepare_data``: *.bmp + *.tif sorted by int(name)."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise InputError(folder, "no such folder")
    names = [n for n in os.listdir(folder)
             if os.path.splitext(n)[1].lower() in TRAIN_EXTENSIONS]
    if not names:
        raise InputError(folder, "no training images (.bmp, .tif)")
    for n in names:
        if not os.path.splitext(n)[0].isdigit():
            raise InputError(os.path.join(folder, n), "training images are "
                             "sorted by the integer in their name, as "
                             "upstream; this name is not an integer")
    return sorted(names, key=lambda n: int(os.path.splitext(n)[0]))


def patch_origins(height, width, size=128, stride=24):
    return [(x, y) for x in range(0, height - size + 1, stride)
            for y in range(0, width - size + 1, stride)]


def scale_train(gray):
    """Upstream: ``(imread(...).astype(np.float) - 127.5) / 127.5`` in float64,
    cast to float32 when fed to the graph."""
    return ((gray.astype(np.float64) - 127.5) / 127.5).astype(np.float32)


def extract_patches(gray, size=128, stride=24):
    """[H, W] image -> [N, size, size, 1] patches, row-major."""
    x = scale_train(gray)
    origins = patch_origins(*x.shape, size=size, stride=stride)
    out = np.empty((len(origins), size, size, 1), np.float32)
    for i, (r, c) in enumerate(origins):
        out[i, :, :, 0] = x[r:r + size, c:c + size]
    return out


def check_folders(folders):
    """The folders must hold the same names with the same image sizes."""
    listing = [training_files(f) for f in folders]
    stems = [{os.path.splitext(n)[0] for n in names} for names in listing]
    for folder, names, have in zip(folders[1:], listing[1:], stems[1:]):
        if have != stems[0]:
            odd = min(have ^ stems[0], key=int)
            lacking, other = ((folder, folders[0]) if odd in stems[0]
                              else (folders[0], folder))
            raise InputError(lacking, f"training folders disagree: no image "
                             f"{odd}.* here but {other} has one "
                             f"({len(listing[0])} vs {len(names)} images)")
    first = listing[0]
    for i in range(len(first)):
        paths = [os.path.join(str(f), names[i])
                 for f, names in zip(folders, listing)]
        sizes = [images.image_size(p) for p in paths]
        for p, s in zip(paths[1:], sizes[1:]):
            if s != sizes[0]:
                raise InputError(p, "size mismatch: {}x{} but {} is {}x{}"
                                 .format(*s, paths[0], *sizes[0]))
    return listing


def build_patches(folder, names, size=128, stride=24):
    arrays = [extract_patches(images.read_gray(os.path.join(str(folder), n)),
                              size, stride) for n in names]
    return np.concatenate(arrays, axis=0)


def prepare_training_data(folders, checkpoint_dir, size=128, stride=24):
    """Cut all folders into patches, write ``<checkpoint_dir>/<folder
    name>/train.h5`` and return the arrays (same order as ``folders``)."""
    import h5py

    listing = check_folders(folders)
    out = []
    for folder, names in zip(folders, listing):
        patches = build_patches(folder, names, size, stride)
        if len(patches) == 0:
            raise InputError(folder, f"images smaller than the "
                             f"{size}x{size} patch size")
        target = os.path.join(str(checkpoint_dir),
                              os.path.basename(os.path.normpath(str(folder))),
                              "train.h5")
        # unique temporary name: several workers may share the folder
        with atomic_output(target, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("data", data=patches)
        out.append(patches)
    return out


def read_data(path):
    """Upstream's ``read_data``: the ``data`` dataset of a train.h5."""
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["data"])
