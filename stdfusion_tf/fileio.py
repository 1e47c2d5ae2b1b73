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


class StagedOutputs:
    """The files one run writes under ``folder``, each staged as a hidden
    temporary file beside its target (``.tmp-<name>-…``) and all renamed
    into place together by :meth:`commit`, so that a run that fails half-way
    leaves the previous outputs as they were: :meth:`rollback` removes this
    run's temporary files and the folders it made (when left empty).

    As a context manager: commit when the block succeeds, roll back on any
    exception (an interrupt included).  ``stage`` may be called from a
    writer thread (``list.append`` is atomic)."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.staged = []  # (temporary file, target)
        self.made_dirs = []

    def path(self, *parts):
        """A path under the output folder."""
        return os.path.join(self.folder, *parts)

    def makedirs(self, folder=None):
        """Create ``folder`` (default: the output folder) and the missing
        folders above it, remembering which ones this run made."""
        folder = os.path.abspath(str(folder or self.folder))
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        for d in reversed(missing):
            os.makedirs(d, exist_ok=True)
            self.made_dirs.append(d)

    def stage(self, target, suffix=None):
        """A hidden temporary file beside ``target`` (its folder created as
        needed) to write ``target``'s content into; ``suffix`` defaults to
        the target's extension."""
        name = str(target)
        target = os.path.abspath(name)
        if suffix is None:
            suffix = os.path.splitext(target)[1]
        folder = os.path.dirname(target)
        try:
            self.makedirs(folder)
            fd, tmp = tempfile.mkstemp(
                prefix=".tmp-" + os.path.basename(target) + "-",
                suffix=suffix, dir=folder)
        except OSError as exc:
            raise write_error(name, exc) from exc
        os.close(fd)
        self.staged.append((tmp, target))
        return tmp

    @contextlib.contextmanager
    def writing(self, target, suffix=None):
        """``stage(target)`` as a block: an InputError of the writer (which
        names the temporary file) is reported against ``target``."""
        tmp = self.stage(target, suffix)
        try:
            yield tmp
        except InputError as exc:
            raise InputError(target, exc.problem) from exc

    def commit(self):
        """Rename every staged file into place (on a failure, the files not
        yet renamed are removed as by :meth:`rollback`)."""
        for tmp, target in self.staged:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                self.rollback()
                raise write_error(target, exc) from exc
        self.staged.clear()

    def rollback(self):
        """Remove this run's temporary files, then the folders it made that
        are left empty (innermost first)."""
        for tmp, _ in self.staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.staged.clear()
        for folder in reversed(self.made_dirs):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.commit()
        else:
            self.rollback()
        return False
