"""Salient-target masks for train.py from labelme annotations.

A shim: the flags and the program are in stdfusion_tf/commands/masks.py,
installed as ``stdfusion-masks``; ``python make_masks.py`` works as before
(``--help`` lists the flags).
"""

from stdfusion_tf.commands.masks import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
