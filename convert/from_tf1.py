"""Convert a released TF1 STDFusionNet checkpoint to Keras weights.

A shim: the flags and the program are in stdfusion_tf/commands/from_tf1.py,
installed as ``stdfusion-convert from_tf1``; ``python -m convert.from_tf1``
works as before (``--help`` lists the flags).
"""

from stdfusion_tf.commands.from_tf1 import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
