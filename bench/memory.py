"""Peak memory of big images: whole-image, tiled and automatic (--max_memory)
fusion.

    python bench/memory.py                     # the default cases below
    python bench/memory.py --whole 1024,2048 --tiled 8192 --tile_size 1024 \
        --auto 4096 --compare_tile 512
    python bench/memory.py --allocator system  # as test.py --lean_allocator

Each case runs in a fresh process on a synthetic square pair (copies of a
test pair) and reports its peak RSS (getrusage ru_maxrss), the RSS after the
model is loaded and warmed up ("runtime"), and the working memory per pixel:
(peak - runtime) / pixels of the image.  Runs are capped with RLIMIT_AS
(--cap_gb) so that one needing more memory than the machine has fails
cleanly and is reported as such.

* whole: ``Fuser(model)`` (test.py --tile_size 0);
* tiled: ``Fuser(model, tile_size)``;
* auto: test.py's default, tiles chosen from --max_memory's default (half of
  MemAvailable); with --compare_tile its 8-bit output is compared with a
  --compare_tile fusion of the same pair (must be identical).

``--allocator bfc`` (default, as test.py) runs oneDNN on TF's pool;
``system`` on the system allocator (TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1, as
test.py --lean_allocator).
"""

import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("whole", ["1024", "2048"], "Sizes to fuse whole.")
flags.DEFINE_list("tiled", ["8192"], "Sizes to fuse with --tile_size.")
flags.DEFINE_integer("tile_size", 1024, "Tile size of the tiled runs.")
flags.DEFINE_list("auto", ["4096"], "Sizes to fuse with test.py's default "
                  "(tiles chosen from the memory budget).")
flags.DEFINE_integer("compare_tile", 512, "Compare each auto run's output "
                     "with a run in tiles of this size (0: no comparison).")
flags.DEFINE_enum("allocator", "bfc", ["system", "bfc"], "oneDNN's "
                  "allocator: TF's BFC pool (test.py's default) or the "
                  "system's (test.py --lean_allocator).")
flags.DEFINE_float("cap_gb", 20.0, "Address-space cap of each run (GB).")
flags.DEFINE_string("mirror", None, "Folder laid out like ../shared/upstream "
                    "(default: ../shared/upstream when present).")

CHILD = r"""
import os, sys, time, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
size, mode, tile, checkpoint, ir_path, vi_path, save = sys.argv[1:8]
size, tile = int(size), int(tile)
import numpy as np
from stdfusion_tf import fusion, images
from stdfusion_tf.loading import load_model
def rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def tiled(x):  # fill size x size with copies of x, no big temporaries
    out = np.empty((size, size), np.float32)
    for r in range(0, size, x.shape[0]):
        for c in range(0, size, x.shape[1]):
            part = out[r:r + x.shape[0], c:c + x.shape[1]]
            part[...] = x[:part.shape[0], :part.shape[1]]
    return out
model = load_model(checkpoint)
if mode == "auto":
    fuser = fusion.Fuser(model, max_memory=fusion.default_max_memory())
else:
    fuser = fusion.Fuser(model, tile_size=tile or None)
fuser.warm_up()
runtime = rss_kb()
ir = tiled(images.scale_in(images.read_gray(ir_path)))
vi = tiled(images.scale_in(images.read_gray(vi_path)))
start = time.perf_counter()
fused = fuser(ir, vi)
del ir, vi
try:  # whole-image min-max, as test.py
    out = images.to_uint8(fused, inplace=True)
except TypeError:  # older to_uint8 without inplace (before/after figures)
    out = images.to_uint8(fused)
seconds = time.perf_counter() - start
if save != "-":
    np.save(save, out)
used = fuser.tile_for(size, size) if mode == "auto" else (tile or None)
print("RESULT", seconds, runtime, rss_kb(), used or 0)
"""


def run(size, mode, tile, checkpoint, pair, save="-"):
    def limit():
        cap = int(FLAGS.cap_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "PYTHONPATH": ROOT,
           "TF_ONEDNN_USE_SYSTEM_ALLOCATOR":
               "1" if FLAGS.allocator == "system" else "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(size), mode,
                           str(tile), checkpoint, *pair, save],
                          capture_output=True, text=True, preexec_fn=limit,
                          env=env)
    if proc.returncode or "RESULT" not in proc.stdout:
        last = [l for l in proc.stderr.splitlines() if l.strip()][-1:]
        return None, (last[0][:100] if last else "failed")
    seconds, runtime, peak, used = proc.stdout.split("RESULT")[1].split()
    return (float(seconds), int(runtime) * 1024, int(peak) * 1024,
            int(used)), ""


def report(label, size, result, err):
    if result is None:
        print(f"{label:<30} FAILED under a {FLAGS.cap_gb:.0f} GB cap: {err}",
              flush=True)
        return
    seconds, runtime, peak, used = result
    per_px = (peak - runtime) / size ** 2
    note = f"tiles of {used}" if used else "whole image"
    print(f"{label:<30} {peak / 2 ** 30:8.2f} {runtime / 2 ** 30:8.2f} "
          f"{per_px:8.0f} {seconds:8.1f}  {note}", flush=True)


def main(argv):
    del argv
    import numpy as np

    from stdfusion_tf import assets

    mirror = FLAGS.mirror or assets.mirror_or_shared("jiayi-ma-29")
    checkpoint = assets.ensure_weights(mirror=mirror)
    assets.ensure_test_data(mirror=mirror)
    root = assets.PROJECT_ROOT
    pair = (str(root / "Test_ir" / "08.bmp"), str(root / "Test_vi" / "08.bmp"))
    print(f"oneDNN allocator: {FLAGS.allocator}")
    print(f"{'case':<30} {'peak GB':>8} {'runtime':>8} {'B/px':>8} "
          f"{'seconds':>8}  (B/px: (peak - runtime RSS) / pixels)")
    for size in sorted(FLAGS.whole, key=int):
        report(f"{size}x{size} whole image", int(size),
               *run(int(size), "whole", 0, checkpoint, pair))
    for size in FLAGS.tiled:
        report(f"{size}x{size} tiled ({FLAGS.tile_size})", int(size),
               *run(int(size), "tiled", FLAGS.tile_size, checkpoint, pair))
    with tempfile.TemporaryDirectory() as tmp:
        for size in FLAGS.auto:
            a = os.path.join(tmp, f"auto{size}.npy")
            report(f"{size}x{size} default (auto)", int(size),
                   *run(int(size), "auto", 0, checkpoint, pair, a))
            if not FLAGS.compare_tile:
                continue
            b = os.path.join(tmp, f"tile{size}.npy")
            report(f"{size}x{size} tiled ({FLAGS.compare_tile})", int(size),
                   *run(int(size), "tiled", FLAGS.compare_tile, checkpoint,
                        pair, b))
            if os.path.exists(a) and os.path.exists(b):
                x, y = np.load(a), np.load(b)
                diff = np.abs(x.astype(int) - y.astype(int))
                print(f"{size}x{size} default vs tiles of "
                      f"{FLAGS.compare_tile}: 8-bit outputs "
                      f"{'identical' if not diff.any() else 'DIFFER'} "
                      f"(max abs diff {diff.max()}, "
                      f"{(diff > 0).mean():.2e} of pixels)", flush=True)


if __name__ == "__main__":
    app.run(main)
