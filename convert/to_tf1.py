"""Export Keras STDFusionNet weights as a TF1-name checkpoint.

A shim: the flags and the program are in stdfusion_tf/commands/to_tf1.py,
installed as ``stdfusion-convert to_tf1``; ``python -m convert.to_tf1`` works
as before (``--help`` lists the flags).
"""

from stdfusion_tf.commands.to_tf1 import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
