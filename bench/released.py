"""The released model and upstream's data for the benchmark scripts."""

import os


def released_and_data(checkpoint=None):
    """(checkpoint, project root, [Train_ir, Train_vi] folders): the given
    ``checkpoint`` or the released jiayi-ma model-29, upstream's test pairs
    and training images in the project root, each fetched (from the
    configured mirror, else ``../shared``) when missing."""
    from stdfusion_tf import assets

    mirror = assets.mirror_or_shared("jiayi-ma-29")
    checkpoint = checkpoint or assets.ensure_weights(mirror=mirror)
    assets.ensure_test_data(mirror=mirror)
    root = str(assets.PROJECT_ROOT)
    train = [os.path.join(root, d) for d in ("Train_ir", "Train_vi")]
    if not all(os.path.isdir(d) for d in train):
        assets.fetch("train_images", root=root,
                     mirror=assets.mirror_or_shared("train_images"))
    return checkpoint, root, train
