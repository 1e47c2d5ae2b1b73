"""stdfusion-convert: the checkpoint converters, one subcommand each.

    stdfusion-convert from_tf1 --src CKPT --dst OUT.weights.h5   # TF1 -> Keras
    stdfusion-convert to_tf1 --src IN.weights.h5 --dst PREFIX    # -> TF1 names
    stdfusion-convert from_torch --src NET.pth --dst OUT.weights.h5  # UMF .pth
    stdfusion-convert SUBCOMMAND --help

The same programs as ``python -m convert.from_tf1`` (``to_tf1``,
``from_torch``) from a clone, with the same flags.  The subcommand is the
first argument; only its module is imported, since the converters share
flag names (``--src``, ``--dst``) that absl allows to be defined once.
"""

import importlib
import os
import sys

SUBCOMMANDS = {
    "from_tf1": "TF1 STDFusionNet checkpoint -> Keras .weights.h5",
    "to_tf1": "Keras .weights.h5 -> TF1 checkpoint (upstream's names)",
    "from_torch": "UMF-CMGR PyTorch .pth -> Keras .weights.h5",
}


def usage():
    prog = os.path.basename(sys.argv[0])
    lines = [f"usage: {prog} SUBCOMMAND [flags]   ({prog} SUBCOMMAND --help)",
             "", "subcommands:"]
    lines += [f"  {name:<11} {what}" for name, what in SUBCOMMANDS.items()]
    return "\n".join(lines)


def run(argv=None):
    """Console script ``stdfusion-convert``."""
    argv = list(sys.argv if argv is None else argv)
    prog = os.path.basename(argv[0])
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "-help"):
        print(__doc__.split("\n\n")[0] + "\n\n" + usage())
        sys.exit(0 if len(argv) >= 2 else 1)
    name = argv[1].replace("-", "_")
    if name not in SUBCOMMANDS:
        print(f"{prog}: error: unknown subcommand {argv[1]!r} (one of: "
              f"{', '.join(SUBCOMMANDS)})", file=sys.stderr)
        sys.exit(1)
    # absl sees "stdfusion-convert from_tf1" as the program, the rest as
    # its flags; one-line errors then name the subcommand too.
    sys.argv = [f"{argv[0]} {name}"] + argv[2:]
    module = importlib.import_module(f"{__package__}.{name}")
    module.run()


if __name__ == "__main__":
    run()
