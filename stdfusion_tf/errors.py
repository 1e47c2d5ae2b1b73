"""User-facing errors: one line, naming the file and the problem."""


class InputError(Exception):
    """Bad input (file, folder, checkpoint, flag).  Command lines print the
    message on one line and exit non-zero; nothing is written."""

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if path is not None
                         else problem)


def one_line(exc):
    """The first line of an exception's message (TF/h5py errors are long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
