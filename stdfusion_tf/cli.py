"""Shared plumbing of the absl command lines (test.py, train.py, convert/)."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) hides the output
# that matters; users can still set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


OUT_OF_MEMORY = ("out of memory; test.py: lower --max_memory or give "
                 "--tile_size (e.g. 512) to fuse in tiles")


def run(main):
    """absl ``app.run(main)`` where bad input ends the program with one line
    on stderr (``<program>: error: <file>: <problem>``) and exit status 1."""
    from absl import app

    from .errors import InputError, one_line

    def fail(message):
        prog = os.path.basename(sys.argv[0])
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(1)

    def wrapped(argv):
        try:
            return main(argv)
        except InputError as exc:
            fail(exc)
        except OSError as exc:
            # A write that failed outside our checked paths (a log file on
            # a disk that filled up, ...): still one line naming the file.
            name = getattr(exc, "filename", None)
            reason = exc.strerror or one_line(exc)
            fail(f"{name}: {reason}" if name else reason)
        except MemoryError:
            fail(OUT_OF_MEMORY)
        except Exception as exc:
            if type(exc).__name__ == "ResourceExhaustedError":  # TF / oneDNN
                fail(f"{OUT_OF_MEMORY} ({one_line(exc)[:120]})")
            raise

    app.run(wrapped)
