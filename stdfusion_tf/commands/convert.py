"""stdfusion-convert: the checkpoint converters, one subcommand each.

    stdfusion-convert from_tf1 --src CKPT --dst OUT.weights.h5   # TF1 -> Keras
    stdfusion-convert to_tf1 --src IN.weights.h5 --dst PREFIX    # -> TF1 names
    stdfusion-convert from_torch --src NET.pth --dst OUT.weights.h5  # UMF .pth
    stdfusion-convert SUBCOMMAND --help

The same programs as ``python -m convert.from_tf1`` (``to_tf1``,
``from_torch``) from a clone, with the same flags.
"""

SUBCOMMANDS = {
    "from_tf1": "TF1 STDFusionNet checkpoint -> Keras .weights.h5",
    "to_tf1": "Keras .weights.h5 -> TF1 checkpoint (upstream's names)",
    "from_torch": "UMF-CMGR PyTorch .pth -> Keras .weights.h5",
}


def run(argv=None):
    """Console script ``stdfusion-convert``."""
    from stdfusion_tf import commands

    commands.dispatch("stdfusion_tf.commands", SUBCOMMANDS,
                      __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    run()
