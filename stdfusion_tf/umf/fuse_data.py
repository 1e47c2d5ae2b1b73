"""DIFN's training data (upstream ``dataloader/fuse_data_vsm.py``): registered
infrared, visible and the two weight maps, paired by file stem, one size
(see :mod:`stdfusion_tf.umf.fuse_training`).  NumPy only."""

import numpy as np

from .. import images
from ..errors import InputError


def read_quads(ir_dir, vi_dir, ir_map_dir, vi_map_dir):
    """(stems, uint8 [N, H, W] x 4): the four folders paired by file stem,
    every image of one size."""
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir, ir_map_dir,
                                          vi_map_dir)
    arrays = [[], [], [], []]
    shape = None
    for quad in paths:
        for out, path in zip(arrays, quad):
            img = images.read_gray_cv2(path)
            if shape is None:
                shape, first = img.shape, path
            elif img.shape != shape:
                raise InputError(path, "size mismatch: {}x{} (H x W) but {} "
                                 "is {}x{}; upstream trains on whole images "
                                 "of one size".format(*img.shape, first,
                                                      *shape))
            out.append(img)
    return stems, tuple(np.stack(a) for a in arrays)
