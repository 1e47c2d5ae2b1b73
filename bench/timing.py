"""Interleaved timing shared by the benchmark scripts."""

import statistics
import time


def timed(fns, runs):
    """Median, min, max seconds of each function; the functions are run
    interleaved (a, b, c, a, b, c, ...) after two warm-up calls each, so
    that clock or load drift hits all of them alike."""
    for fn in fns:
        fn(), fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [(statistics.median(t), min(t), max(t)) for t in times]
