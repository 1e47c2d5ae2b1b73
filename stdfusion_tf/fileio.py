"""Atomic file writes: readers never see a half-written output.

Every command checks the paths it will write before it starts
(``check_writable``: a file where a folder is expected or the other way
round, a folder it cannot create or write into) and turns a failure while
writing (a full disk, a vanished folder) into a one-line ``InputError``
naming the path, with the temporary file removed and the previous version of
the output, if any, left as it was.
"""

import contextlib
import os
import tempfile

from .errors import InputError


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import (os.umask can only be read by setting it, which
# would race with files created by other threads)
UMASK = _read_umask()


def _reason(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).strip().splitlines()[0] if str(exc).strip() \
        else type(exc).__name__


def write_error(path, exc):
    """InputError for a failed write of ``path``."""
    return InputError(path, f"cannot write ({_reason(exc)})")


def check_folder(folder):
    """``folder`` is a folder we can write into, or can be created: the
    nearest existing ancestor must be a folder and accept a file (tried
    with a temporary file, removed at once: root ignores permission bits,
    so only a real write tells).  Nothing is left behind."""
    folder = os.path.abspath(str(folder))
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        if probe == folder:
            raise InputError(folder, "exists and is not a folder")
        raise InputError(folder, f"cannot create this folder: {probe} is "
                         "a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-probe-", dir=probe)
        os.close(fd)
        os.remove(tmp)
    except OSError as exc:
        raise InputError(folder, f"cannot write here ({_reason(exc)})")
    return folder


def check_writable(folder, files=()):
    """``check_folder(folder)``, and none of ``files`` (to be written,
    replaced if present) is a folder."""
    check_folder(folder)
    for path in files:
        if os.path.isdir(str(path)):
            raise InputError(path, "is a folder; cannot write a file there")


def check_file_target(path):
    """A file will be written at ``path``: its folder must be writable and
    ``path`` itself must not be a folder."""
    path = os.path.abspath(str(path))
    check_writable(os.path.dirname(path), [path])
    return path


@contextlib.contextmanager
def atomic_output(path, suffix=""):
    """Yield a temporary path beside ``path``; when the block succeeds it is
    renamed to ``path`` (atomic on one file system), otherwise removed.
    ``suffix`` keeps writers that look at the extension happy.  An OSError
    while writing (full disk, ...) becomes a one-line InputError naming
    ``path``; ``path``'s previous content is then untouched."""
    path = os.path.abspath(str(path))
    directory = os.path.dirname(path)
    tmp = None
    try:
        if os.path.isdir(path):
            raise InputError(path, "is a folder; cannot write a file there")
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix,
                                   dir=directory)
        os.close(fd)
        yield tmp
        # mkstemp makes 0600 files; outputs get the usual 0666 & ~umask
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except OSError as exc:  # incl. h5py's, which carry no errno
        raise write_error(path, exc) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
