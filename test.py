"""Fuse infrared/visible pairs with STDFusionNet (upstream's test script).

A shim: the flags and the program are in stdfusion_tf/commands/fuse.py,
installed as ``stdfusion-fuse``; ``python test.py`` works as before (``--help``
lists the flags).
"""

from stdfusion_tf.commands.fuse import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
