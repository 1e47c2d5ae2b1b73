"""Atomic file writes: readers never see a half-written output.

Every command checks the paths it will write before it starts
(``check_writable``: a file where a folder is expected or the other way
round, a folder it cannot create or write into) and turns a failure while
writing (a full disk, a vanished folder) into a one-line ``InputError``
naming the path, with the temporary file removed and the previous version of
the output, if any, left as it was.

Temporary files are hidden, beside their target, and tagged with the
writer's process id (``.tmp-stdf<pid>-...``): the next run into a folder removes
those a killed run (SIGKILL, power loss) left behind.  SIGTERM and SIGINT
(``install_signal_handlers``, set up by ``cli.run`` for every command)
raise ``Interrupted`` in the main thread, so that the writers' clean-up
runs; ``cli.run`` then prints one line with ``outputs_written()``.
"""

import contextlib
import os
import re
import shutil
import signal
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


# ------------------------------------------------ temporary files, signals --

TEMP_PREFIX = ".tmp-stdf"
_TAGGED = re.compile(r"^\.tmp-stdf(\d+)-")
_cleaned = set()
_written = []


def temp_prefix(name=""):
    """``.tmp-stdf<pid>-[<name>-]``: the prefix of this process's temporary
    files."""
    return f"{TEMP_PREFIX}{os.getpid()}-" + (f"{name}-" if name else "")


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder):
    """Remove the temporary files (and folders) that runs no longer alive
    left in ``folder``; once per folder and process.  Returns how many."""
    folder = os.path.abspath(str(folder))
    if folder in _cleaned:
        return 0
    _cleaned.add(folder)
    removed = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        match = _TAGGED.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed += 1
        except OSError:
            pass  # gone meanwhile, or not ours to remove
    return removed


def remove_own_temporaries():
    """Remove this process's temporary files (and folders) from every
    folder it made one in: the last step of an interrupted run, also run at
    exit, after the other threads have ended (a writer thread may still be
    finishing a file when the main thread is interrupted)."""
    prefix = temp_prefix()
    for folder in list(_cleaned):
        try:
            names = [n for n in os.listdir(folder) if n.startswith(prefix)]
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except OSError:
                pass


def mkstemp(folder, name="", suffix=""):
    """A new hidden temporary file in ``folder`` (closed; returns its path),
    stale ones of dead runs removed first."""
    remove_stale_temporaries(folder)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=suffix,
                               dir=folder)
    os.close(fd)
    return tmp


def mkdtemp(folder, name=""):
    remove_stale_temporaries(folder)
    return tempfile.mkdtemp(prefix=temp_prefix(name), dir=folder)


def committed(path):
    """Record ``path`` as an output of this run (for ``outputs_written``)."""
    _written.append(os.path.abspath(str(path)))
    return path


def outputs_written():
    """How many outputs this process wrote that are still in place."""
    return sum(os.path.exists(p) for p in set(_written))


def makedirs(folder):
    """``os.makedirs(folder, exist_ok=True)``; returns the folders it
    created, outermost first (for ``remove_empty_folders``)."""
    folder = os.path.abspath(str(folder))
    missing = []
    probe = folder
    while not os.path.exists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    os.makedirs(folder, exist_ok=True)
    return missing[::-1]


def remove_empty_folders(folders):
    """Remove those of ``folders`` (outermost first, as ``makedirs``
    returns them) that are empty, innermost first."""
    for folder in reversed(list(folders)):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty, or gone


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: ends the run like Ctrl-C, so ``finally`` /
    ``except BaseException`` clean-ups run."""

    def __init__(self, signum):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGINT)):
    """SIGTERM / SIGINT raise ``Interrupted`` in the main thread, the first
    time only: a second signal during the clean-up is ignored (SIGKILL still
    ends the process; its temporary files go with the next run)."""
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    for sig in signals:
        signal.signal(sig, handler)


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
        os.remove(mkstemp(probe, "probe"))
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
        tmp = mkstemp(directory, suffix=suffix)
        yield tmp
        # mkstemp makes 0600 files; outputs get the usual 0666 & ~umask
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
        committed(path)
    except OSError as exc:  # incl. h5py's, which carry no errno
        raise write_error(path, exc) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


class StagedOutputs:
    """The files one run writes under ``folder``, each staged as a hidden
    temporary file beside its target (``.tmp-stdf<pid>-<name>-…``) and all renamed
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
        self.made_dirs += makedirs(folder or self.folder)

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
            tmp = mkstemp(folder, os.path.basename(target), suffix)
        except OSError as exc:
            raise write_error(name, exc) from exc
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
            committed(target)
        self.staged.clear()

    def rollback(self):
        """Remove this run's temporary files, then the folders it made that
        are left empty (innermost first)."""
        for tmp, _ in self.staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.staged.clear()
        remove_empty_folders(self.made_dirs)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.commit()
        else:
            self.rollback()
        return False
