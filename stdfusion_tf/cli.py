"""Shared plumbing of the absl command lines (test.py, train.py, convert/)."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) hides the output
# that matters; users can still set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main):
    """absl ``app.run(main)`` where bad input ends the program with one line
    on stderr (``<program>: error: <file>: <problem>``) and exit status 1."""
    from absl import app

    from .errors import InputError

    def wrapped(argv):
        try:
            return main(argv)
        except InputError as exc:
            prog = os.path.basename(sys.argv[0])
            print(f"{prog}: error: {exc}", file=sys.stderr)
            sys.exit(1)

    app.run(wrapped)
