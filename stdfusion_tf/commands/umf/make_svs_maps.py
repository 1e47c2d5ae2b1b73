r"""Make DIFN's histogram-saliency weight maps, as upstream's
``data/get_svs_map.py``.

    stdfusion-umf make_svs_maps --input_dir RoadScene --ir_subdir ir_256 \
        --vi_subdir vi_256 --output_dir RoadScene

Reads ``<input_dir>/<ir_subdir>`` and ``<input_dir>/<vi_subdir>`` (defaults
``ir`` and ``vi``, upstream's folders), pairs them by file name, and writes
``<output_dir>/ir_map/<name>.png`` and ``<output_dir>/vi_map/<name>.png``
(what ``umf.train_fuse --ir_map / --vi_map`` read).  Images are read as
``cv2.imread(GRAYSCALE)``; the maps are those of
``stdfusion_tf/umf/svs.py``.  Upstream writes each map under its input's
file name (a ``.jpg`` name makes a lossy JPEG of the map); here they are
always lossless PNG under the input's stem.
"""

import os

from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string("input_dir", None, "Folder holding the infrared and "
                    "visible image folders.")
flags.DEFINE_string("output_dir", None, "Where ir_map/ and vi_map/ go.")
flags.DEFINE_string("ir_subdir", "ir", "Infrared folder inside --input_dir.")
flags.DEFINE_string("vi_subdir", "vi", "Visible folder inside --input_dir "
                    "(colour images are read as OpenCV's gray).")
flags.mark_flags_as_required(["input_dir", "output_dir"])


def main(argv):
    from stdfusion_tf import images
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import svs

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    ir_dir = os.path.join(FLAGS.input_dir, FLAGS.ir_subdir)
    vi_dir = os.path.join(FLAGS.input_dir, FLAGS.vi_subdir)
    stems, paths, _ = images.pair_folders(ir_dir, vi_dir)
    # Everything is computed (and every input checked) before any write.
    maps = []
    for ir_path, vi_path in paths:
        ir = images.read_gray_cv2(ir_path)
        vi = images.read_gray_cv2(vi_path)
        maps.append(svs.map_pair(ir, vi, vi_path))
    outs = [os.path.join(FLAGS.output_dir, d) for d in ("ir_map", "vi_map")]
    for out in outs:
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(out, "exists and is not a folder")
    for stem, pair in zip(stems, maps):
        for out, m in zip(outs, pair):
            images.save_image(m, os.path.join(out, stem + ".png"))
    print(f"{len(stems)} pairs: maps in {os.path.abspath(outs[0])} and "
          f"{os.path.abspath(outs[1])}")


def run():
    """``stdfusion-umf make_svs_maps``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
