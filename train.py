"""Train STDFusionNet as the authors' released train.py does.

A shim: the flags and the program are in stdfusion_tf/commands/train.py,
installed as ``stdfusion-train``; ``python train.py`` works as before
(``--help`` lists the flags).
"""

from stdfusion_tf.commands.train import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
