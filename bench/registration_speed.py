"""CPU time of the default registration on 640x512 pairs.

    python bench/registration_speed.py [--pairs 8]

The real pairs of ``../shared/datasets/RoadScene_raw``: the raw 640x512
infrared frame against its visible crop resized to 640x512 (the size the
speed target names).  On a shared machine wall time measures the other jobs;
the process CPU time (``time.process_time``, all threads of this process,
OpenCV limited to one thread so it equals the time one free core needs) is
printed beside it.  Prints per-method medians over the pairs.
"""

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from stdfusion_tf.registration import benchmark as B  # noqa: E402
from stdfusion_tf.registration import register_pair  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    args = p.parse_args()
    cv2.setNumThreads(1)
    todo = B.pairs("raw")
    todo = todo[::max(1, len(todo) // args.pairs)][:args.pairs]
    for method in ("none", "global", "auto"):
        cpu, wall = [], []
        for stem, ir_path, vi_path in todo:
            ir = B.read01(ir_path)
            vi = cv2.resize(B.read01(vi_path), (640, 512),
                            interpolation=cv2.INTER_AREA)
            c0, w0 = time.process_time(), time.perf_counter()
            register_pair(ir, vi, method)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        print(f"{method}: CPU {np.median(cpu):.2f} s (max {max(cpu):.2f}), "
              f"wall {np.median(wall):.2f} s per 640x512 pair, "
              f"{len(todo)} pairs", flush=True)


if __name__ == "__main__":
    main()
