"""Convert upstream UMF-CMGR PyTorch weights (.pth) to Keras weights.

A shim: the flags and the program are in stdfusion_tf/commands/from_torch.py,
installed as ``stdfusion-convert from_torch``; ``python -m convert.from_torch``
works as before (``--help`` lists the flags).
"""

from stdfusion_tf.commands.from_torch import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
