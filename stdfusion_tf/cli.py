"""Shared plumbing of the absl command lines (stdfusion_tf/commands/)."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) hides the output
# that matters; users can still set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


OUT_OF_MEMORY = ("out of memory; test.py: lower --max_memory or give "
                 "--tile_size (e.g. 512) to fuse in tiles")


def interrupted_line(prog, signum, written):
    """``<program>: interrupted (SIGTERM): <n> output file(s) written, ...``"""
    import signal

    name = signal.Signals(signum).name
    return (f"{prog}: interrupted ({name}): {written} output file(s) "
            "written; partial outputs and temporary files removed, earlier "
            "files intact")


def run(main):
    """absl ``app.run(main)`` where bad input ends the program with one line
    on stderr (``<program>: error: <file>: <problem>``) and exit status 1.

    SIGTERM and SIGINT (Ctrl-C) end the run the same way: the writers'
    clean-up runs (temporary and partial outputs removed, earlier files
    untouched), then one line says how many outputs were written; exit
    status 128 + the signal's number (143, 130), no traceback."""
    import signal

    from absl import app

    from . import fileio
    from .errors import InputError, one_line

    fileio.install_signal_handlers()

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
        except KeyboardInterrupt as exc:  # incl. fileio.Interrupted
            import atexit

            fileio.remove_own_temporaries()
            # again once the writer threads have ended (they are joined
            # before atexit functions run)
            atexit.register(fileio.remove_own_temporaries)
            signum = getattr(exc, "signum", signal.SIGINT)
            prog = os.path.basename(sys.argv[0])
            print(interrupted_line(prog, signum, fileio.outputs_written()),
                  file=sys.stderr, flush=True)
            sys.exit(128 + signum)
        except MemoryError:
            fail(OUT_OF_MEMORY)
        except Exception as exc:
            if type(exc).__name__ == "ResourceExhaustedError":  # TF / oneDNN
                fail(f"{OUT_OF_MEMORY} ({one_line(exc)[:120]})")
            raise

    app.run(wrapped)
