"""Atomic file writes: readers never see a half-written output."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path, suffix=""):
    """Yield a temporary path beside ``path``; when the block succeeds it is
    renamed to ``path`` (atomic on one file system), otherwise removed.
    ``suffix`` keeps writers that look at the extension happy."""
    path = os.path.abspath(str(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
