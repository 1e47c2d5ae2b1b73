"""Seconds per 640x512 infrared/visible pair: the weight-free registration's
default method (``register_pair(ir, vi, "auto")``) against MRRN, same run,
same pairs, same threads.

    python bench/registration_speed.py [--pairs 3] [--runs 5] [--method auto]
        [--model auto]

Pairs: the first ``--pairs`` names of ``../shared/datasets/RoadScene_raw``
(``--raw_dir``): the raw 640x512 FLIR infrared frame and the visible
camera's crop resized (area) to 640x512, both read as the project reads them
(``images.read_gray``, / 255).  MRRN: UMF-CMGR's public retrain
``reg_0800.pth`` (asset group ``umf_weights``, from ``--mirror``, default
``../shared/umf-cmgr``), registering the infrared image onto the visible one
(``--target visible``: no pseudo-infrared image exists for a user's pair),
traced once for the size before timing.

Timing: after one warm-up round each, ``--runs`` rounds; in each round both
sides register every pair once, in alternating order (ours first on even
rounds), so load drift hits both alike.  Prints median [min-max] over rounds
of the mean seconds per pair -- wall time and the process CPU time
(``time.process_time``: all threads of this process, i.e. what the work
costs on free cores whatever else runs) -- the ratios ours / MRRN, the
thread counts and the load average (on a shared machine wall time measures
the other jobs: compare the CPU time and the ratios).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "shared"))
SIZE = (512, 640)  # H, W


def define_flags():
    flags.DEFINE_integer("pairs", 3, "RoadScene_raw pairs (first names).")
    flags.DEFINE_integer("runs", 5, "Timed rounds after one warm-up.")
    flags.DEFINE_string("method", "auto", "Registration method to time.")
    flags.DEFINE_string("model", "auto", "Global model (register_pair's "
                        "model=): auto, similarity, affine, projective.")
    flags.DEFINE_string("raw_dir", os.path.join(
        SHARED, "datasets", "RoadScene_raw"), "RoadScene_raw folder "
        "(infrared/, crop_HR_visible/).")
    flags.DEFINE_string("mirror", os.path.join(SHARED, "umf-cmgr"),
                        "Folder laid out like ../shared/umf-cmgr for the "
                        "MRRN weights (else fetched from GitHub).")
    flags.DEFINE_bool("mrrn", True, "Also time MRRN (the ratio).")


def load_pairs(raw_dir, count):
    import cv2
    import numpy as np

    from stdfusion_tf import images
    from stdfusion_tf.errors import InputError

    stems, paths, _ = images.pair_folders(
        os.path.join(raw_dir, "infrared"),
        os.path.join(raw_dir, "crop_HR_visible"))
    if not 1 <= count <= len(stems):
        raise InputError(None, f"--pairs must be 1..{len(stems)}")
    pairs = []
    for ir_path, vi_path in paths[:count]:
        ir = images.read_gray(ir_path, ir_range="minmax") / np.float32(255)
        if ir.shape != SIZE:
            ir = cv2.resize(ir, SIZE[::-1], interpolation=cv2.INTER_AREA)
        vi = images.read_gray(vi_path) / np.float32(255)
        vi = cv2.resize(vi, SIZE[::-1], interpolation=cv2.INTER_AREA)
        pairs.append((ir.astype(np.float32), vi.astype(np.float32)))
    return stems[:count], pairs


def timed(fn, pairs):
    """(mean wall seconds, mean CPU seconds) per pair."""
    wall, cpu = [], []
    for ir, vi in pairs:
        c0, w0 = time.process_time(), time.perf_counter()
        fn(ir, vi)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return sum(wall) / len(wall), sum(cpu) / len(cpu)


def stats(values):
    return (f"{statistics.median(values):7.3f} s "
            f"[{min(values):.3f}-{max(values):.3f}]")


def benchmark(pairs_count, runs, method, raw_dir, mirror, with_mrrn,
              model="auto", out=print):
    import cv2

    from stdfusion_tf.registration import register_pair

    names, pairs = load_pairs(raw_dir, pairs_count)
    sides = {"ours": lambda ir, vi: register_pair(ir, vi, method,
                                                  model=model)}
    tf_note = ""
    if with_mrrn:
        import tensorflow as tf

        from stdfusion_tf import assets
        from stdfusion_tf.umf import pipeline, weights

        reg_pth, _ = assets.fetch("umf_weights", mirror=mirror)
        registrar = pipeline.Registrar(weights.load_network(reg_pth,
                                                            "mrrn")[1])
        sides["MRRN"] = lambda ir, vi: registrar(vi, ir)  # (target, source)
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        tf_note = f", TF intra-op {intra or 'default (all cores)'}"
    times = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    order = list(sides)
    for i in range(1 + runs):
        for side in (order if i % 2 == 0 else order[::-1]):
            t, c = timed(sides[side], pairs)
            if i:
                times[side].append(t)
                cpu[side].append(c)
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),)
    out(f"registration per {SIZE[1]}x{SIZE[0]} pair: {len(pairs)} "
        f"RoadScene_raw pair(s) ({', '.join(names)}), {runs} "
        f"{'interleaved ' if with_mrrn else ''}rounds after 1 warm-up, "
        "median [min-max] of the mean seconds per pair")
    out(f"{'':19}{'wall':>24}{'CPU (all threads)':>28}")
    out(f"  ours ({method}, {model})".ljust(19) + f"{stats(times['ours']):>24}"
        f"{stats(cpu['ours']):>28}")
    if with_mrrn:
        out(f"  MRRN (reg_0800)  {stats(times['MRRN']):>24}"
            f"{stats(cpu['MRRN']):>28}")
        for what, table in (("wall", times), ("CPU", cpu)):
            ratios = [a / b for a, b in zip(table["ours"], table["MRRN"])]
            out(f"  ours / MRRN, {what:<4} {statistics.median(ratios):7.2f} "
                f"[{min(ratios):.2f}-{max(ratios):.2f}] (per round)")
    out(f"  {cores} cores, OpenCV threads {cv2.getNumThreads()}{tf_note}; "
        f"load average {load[0]:.1f} (above {cores}: the machine is shared,"
        " compare the ratio)")
    return times


def main(argv):
    del argv
    benchmark(FLAGS.pairs, FLAGS.runs, FLAGS.method, FLAGS.raw_dir,
              FLAGS.mirror, FLAGS.mrrn, FLAGS.model,
              out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
