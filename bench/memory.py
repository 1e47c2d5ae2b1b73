"""Peak memory of huge images: tiled against whole-image inference.

    python bench/memory.py [--tiled 8192] [--whole 2048,4096,8192] [--tile_size 512]

Each case runs in a fresh process on a synthetic pair (tiles of a test
pair) and reports its own peak RSS (getrusage ru_maxrss of that process).  Whole-image
runs are capped with RLIMIT_AS (--cap_gb) so that one that needs more
memory than the machine has fails cleanly and is reported as such.  The
tiled run also reports the wall time.
"""

import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("tiled", ["8192"], "Sizes to fuse with --tile_size.")
flags.DEFINE_list("whole", ["2048", "4096", "8192"], "Sizes to fuse whole.")
flags.DEFINE_integer("tile_size", 512, "Tile size of the tiled runs.")
flags.DEFINE_float("cap_gb", 20.0, "Address-space cap of each run (GB).")

CHILD = r"""
import os, sys, time, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
size, tile, checkpoint, ir_path, vi_path = sys.argv[1:6]
size, tile = int(size), (int(tile) or None)
import numpy as np
from stdfusion_tf import fusion, images
from stdfusion_tf.checkpoints import load_model
ir = images.scale_in(images.read_gray(ir_path))
vi = images.scale_in(images.read_gray(vi_path))
def tiled(x):  # fill size x size with copies of x, no big temporaries
    out = np.empty((size, size), np.float32)
    for r in range(0, size, x.shape[0]):
        for c in range(0, size, x.shape[1]):
            part = out[r:r + x.shape[0], c:c + x.shape[1]]
            part[...] = x[:part.shape[0], :part.shape[1]]
    return out
ir, vi = tiled(ir), tiled(vi)
fuser = fusion.Fuser(load_model(checkpoint), tile_size=tile)
start = time.perf_counter()
out = images.to_uint8(fuser(ir, vi))   # whole-image min-max, as test.py
print("SECONDS", time.perf_counter() - start, out.shape)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run(size, tile, checkpoint, pair):
    def limit():
        cap = int(FLAGS.cap_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    proc = subprocess.run([sys.executable, "-c", CHILD, str(size), str(tile),
                           checkpoint, *pair], capture_output=True, text=True,
                          preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))})
    if proc.returncode:
        last = [l for l in proc.stderr.splitlines() if l.strip()][-1:]
        return None, FLAGS.cap_gb, (last[0][:120] if last else "failed")
    peak_gb = int(proc.stdout.split("PEAK_KB")[1]) / 2 ** 20
    return float(proc.stdout.split("SECONDS")[1].split()[0]), peak_gb, ""


def main(argv):
    del argv
    from stdfusion_tf import assets

    root = assets.PROJECT_ROOT
    mirror = assets.mirror_or_shared("jiayi-ma-29")
    checkpoint = assets.ensure_weights(mirror=mirror)
    assets.ensure_test_data(mirror=mirror)
    pair = (str(root / "Test_ir" / "08.bmp"), str(root / "Test_vi" / "08.bmp"))
    print(f"{'case':<28} {'peak RSS GB':>11} {'seconds':>9}  note")
    for size in FLAGS.tiled:
        seconds, peak, err = run(int(size), FLAGS.tile_size, checkpoint, pair)
        print(f"{f'{size}x{size} tiled ({FLAGS.tile_size})':<28} {peak:11.2f} "
              f"{seconds or float('nan'):9.1f}  {err}", flush=True)
    for size in sorted(FLAGS.whole, key=int):
        seconds, peak, err = run(int(size), 0, checkpoint, pair)
        note = err and f"FAILED under a {FLAGS.cap_gb:.0f} GB cap: {err}"
        print(f"{f'{size}x{size} whole image':<28} "
              f"{'>' if err else ' '}{peak:10.2f} "
              f"{seconds or float('nan'):9.1f}  {note}", flush=True)


if __name__ == "__main__":
    app.run(main)
