"""Evaluate fused images with the paper's metrics: Table I, Table II, Fig. 9.

A shim: the flags and the program are in stdfusion_tf/commands/evaluate.py,
installed as ``stdfusion-evaluate``; ``python evaluate.py`` works as before
(``--help`` lists the flags).
"""

from stdfusion_tf.commands.evaluate import FLAGS, main, run  # noqa: F401

if __name__ == "__main__":
    run()
