"""Progress bars that stay readable in log files.

Keras' ``Progbar`` always redraws in place (it treats every POSIX process as
a dynamic display) and colours its bar with ANSI escapes, so a log file or a
CI log gets ``\\x1b[1m1/1\\x1b[0m \\x1b[32m━━━`` and backspaces.  ``progbar``
returns Keras' bar when stdout is a terminal and otherwise ``PlainProgbar``:
plain text lines, at most one every ``interval`` seconds, plus the last one.
"""

import sys
import time


def is_terminal(stream=None):
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progbar(target, verbose=1, unit_name="step", stateful_metrics=None,
            interval=None):
    """Keras ``Progbar`` on a terminal, ``PlainProgbar`` elsewhere (same
    ``update(current, values)`` / ``target`` interface)."""
    if is_terminal():
        import keras

        return keras.utils.Progbar(target, verbose=verbose,
                                   unit_name=unit_name,
                                   stateful_metrics=stateful_metrics)
    return PlainProgbar(target, verbose=verbose, unit_name=unit_name,
                        stateful_metrics=stateful_metrics,
                        interval=10.0 if interval is None else interval)


class PlainProgbar:
    """``12/216 - 35s - 2.9s/step - loss: 0.1234``, one line per update
    (throttled to ``interval`` seconds), no escape codes, no redrawing.

    Values are averaged over updates like Keras does, except the
    ``stateful_metrics``, which are shown as given."""

    def __init__(self, target, verbose=1, unit_name="step",
                 stateful_metrics=None, interval=10.0, stream=None):
        self.target = target
        self.verbose = verbose
        self.unit_name = unit_name
        self.stateful = set(stateful_metrics or ())
        self.interval = interval
        self.stream = stream
        self._values = {}
        self._start = time.time()
        self._last = None
        self._seen = 0

    def update(self, current, values=None, finalize=None):
        for name, value in values or ():
            if name in self.stateful:
                self._values[name] = (value, 1)
            else:
                total, count = self._values.get(name, (0.0, 0))
                steps = max(current - self._seen, 1)
                self._values[name] = (total + value * steps, count + steps)
        self._seen = current
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        now = time.time()
        if not self.verbose or (not finalize and not current) or (
                not finalize and self._last is not None
                and now - self._last < self.interval):
            return
        if self.verbose == 2 and not finalize:
            return
        self._last = now
        elapsed = now - self._start
        count = (f"{current}/{self.target}" if self.target
                 else f"{current}/?")
        line = f"{count} - {elapsed:.0f}s"
        if current:
            per = elapsed / current
            line += (f" - {per:.2f}s/{self.unit_name}" if per >= 1
                     else f" - {per * 1000:.0f}ms/{self.unit_name}")
        for name, (total, n) in self._values.items():
            line += f" - {name}: {total / max(n, 1):.4g}"
        print(line, file=self.stream or sys.stdout, flush=True)

    def add(self, n, values=None):
        self.update(self._seen + n, values)
