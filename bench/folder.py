"""Folder throughput: test.py's path against plain per-image loops, same run.

    python bench/folder.py [--limit 221]

Over the RoadScene pairs (221, all of different sizes; from
$STDFUSION_DATA_MIRROR, ../shared or the pinned origin), end to end: read,
fuse, min-max save as BMP.

* ours: ``fusion.fuse_folders`` (what test.py runs): one traced function for
  every size, decoding ahead in a reader thread, saving in a writer thread;
* loop/eager: for each pair read, ``model((ir, vi))`` eagerly, save;
* loop/predict: the same with ``model.predict`` (Keras retraces for every new
  image size).

Each variant runs in a fresh process (so none inherits another's warm
caches).  Prints images/s and the ratio ours / loop.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_integer("limit", None, "Use only the first N pairs.")
flags.DEFINE_bool("predict", True, "Also time the model.predict loop.")
flags.DEFINE_bool("variant", False, "(internal) time one variant, given as "
                  "arguments: ours|eager|predict WORKDIR CHECKPOINT")


def plain_loop(model, paths, out_dir, call):
    from stdfusion_tf import images

    for ir_path, vi_path in paths:
        ir = images.scale_in(images.read_gray(ir_path))
        vi = images.scale_in(images.read_gray(vi_path))
        fused = call(model, ir[None, :, :, None], vi[None, :, :, None])
        name = os.path.splitext(os.path.basename(ir_path))[0] + ".bmp"
        images.save_image(images.to_uint8(fused[0, :, :, 0]),
                          os.path.join(out_dir, name))


def run_variant(variant, work, checkpoint):
    """One timed variant in this process; prints its wall seconds."""
    import numpy as np

    from stdfusion_tf import fusion, images
    from stdfusion_tf.loading import load_model

    ir_dir, vi_dir = os.path.join(work, "ir"), os.path.join(work, "vi")
    out = os.path.join(work, variant)
    os.makedirs(out, exist_ok=True)
    model = load_model(checkpoint)
    start = time.perf_counter()
    if variant == "ours":
        fusion.fuse_folders(fusion.Fuser(model), ir_dir, vi_dir, out,
                            verbose=0)
    else:
        _, paths, _ = images.pair_folders(ir_dir, vi_dir)
        call = ((lambda m, a, b: np.asarray(m((a, b)))) if variant == "eager"
                else (lambda m, a, b: m.predict((a, b), verbose=0)))
        plain_loop(model, paths, out, call)
    print(f"SECONDS {time.perf_counter() - start}")


def main(argv):
    if FLAGS.variant:
        variant, work, checkpoint = argv[1:4]
        return run_variant(variant, work, checkpoint)
    from stdfusion_tf import assets, images

    root = assets.PROJECT_ROOT
    assets.fetch("roadscene", mirror=assets.mirror_or_shared("roadscene"))
    checkpoint = assets.ensure_weights(
        mirror=assets.mirror_or_shared("jiayi-ma-29"))
    ir_dir, vi_dir = root / "datasets/RoadScene/ir", root / "datasets/RoadScene/vi"
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir)
    if FLAGS.limit:
        stems, paths = stems[:FLAGS.limit], paths[:FLAGS.limit]
    work = tempfile.mkdtemp()
    for d in ("ir", "vi"):
        os.makedirs(os.path.join(work, d))
    for ir_path, vi_path in paths:
        shutil.copy(ir_path, os.path.join(work, "ir"))
        shutil.copy(vi_path, os.path.join(work, "vi"))
    n = len(paths)
    print(f"{n} RoadScene pairs, {len({images.image_size(p[0]) for p in paths})}"
          " different sizes; each variant in a fresh process", flush=True)
    variants = ["ours", "eager"] + (["predict"] if FLAGS.predict else [])
    results = {}
    for variant in variants:
        proc = subprocess.run(
            [sys.executable, __file__, "--variant", variant, work,
             checkpoint], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-2000:])
        results[variant] = float(proc.stdout.split("SECONDS")[1])
    names = {"ours": "ours (test.py path)", "eager": "loop/eager",
             "predict": "loop/predict"}
    ours = results["ours"]
    for variant, seconds in results.items():
        print(f"{names[variant]:<22} {seconds:8.1f} s  {n / seconds:6.2f} "
              f"images/s  ours/this = {seconds / ours:5.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    app.run(main)
