"""Fuse infrared/visible pairs with STDFusionNet (upstream's test script).

    stdfusion-fuse                       # Test_ir + Test_vi -> STDFusionNet_Results
    stdfusion-fuse --ir_dir my/ir --vi_dir my/vi --output_dir fused --color
    stdfusion-fuse --ir_dir raw/ir --vi_dir raw/vi --output_dir fused \
        --register auto          # pairs of any size, fused in the visible frame

Defaults reproduce the authors' release: the released jiayi-ma model-29
weights, upstream's 9 test pairs, min-max ("imsave") saving.  The default
weights and test pairs are fetched on demand (pinned commit, sha256-checked),
from --mirror / $STDFUSION_MIRROR when given: the weights into the Keras
cache ($KERAS_HOME, else ~/.keras) when installed, into ./checkpoint/ from a
clone (upstream's place).  SIGTERM / Ctrl-C: one line, no partial outputs.

From a clone: ``python test.py``, the same program and flags.
"""

import os

from absl import flags

from stdfusion_tf import cli, presets

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", "Test_ir", "Folder of infrared images.")
flags.DEFINE_string("vi_dir", "Test_vi", "Folder of visible images (paired "
                    "with the infrared ones by file name).")
flags.DEFINE_string("output_dir", "STDFusionNet_Results",
                    "Where the fused images go (<name>.bmp).")
flags.DEFINE_string("checkpoint", "checkpoint/Fusion.model-29",
                    "Weights: a .weights.h5 file, or a TF1 checkpoint "
                    "directory (with its 'checkpoint' state file) or prefix, "
                    "converted on the fly; or a preset: a folder written by "
                    "save_to_preset, or a built-in name ("
                    + ", ".join(presets.names()) + "; "
                    f"{presets.DEFAULT_PRESET} = the default weights; "
                    "cached under $KERAS_HOME).")
flags.DEFINE_enum("save_mode", "minmax", ["minmax", "clip"],
                  "minmax: stretch each result to 0..255 like upstream's "
                  "scipy.misc.imsave (default, reproduces the authors' "
                  "images); clip: clip(round((y + 1) * 127.5)).")
flags.DEFINE_bool("color", False, "Fuse the luma (Y) of a colour visible "
                  "image and restore its Cb/Cr: RGB output (the paper's "
                  "RoadScene strategy).  Off, as in upstream's script.")
flags.DEFINE_bool("paper_activations", False, "Leaky ReLU instead of ELU in "
                  "reconstruction blocks 1-2 (only for weights trained with "
                  "train.py --paper_activations).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "float32 (default, faithful) or bfloat16 compute (Keras "
                  "mixed_bfloat16; ~2x faster on CPUs with AVX512_BF16/AMX "
                  "and on recent GPUs, PSNR >= 45 dB against float32).  "
                  "Refused where bf16 is not native.")
flags.DEFINE_integer("tile_size", None, "Fuse in tiles of this size (with a "
                     "9-pixel halo each) to bound memory on huge images; "
                     "the output equals whole-image fusion.  >= 18; 0: "
                     "always whole images.  Default: chosen per image from "
                     "--max_memory.")
flags.DEFINE_bool("salient_map", False, "Also write the paper's Fig. 15 "
                  "map per pair: |fused - visible| on the network's [-1, 1] "
                  "scale times 127.5 (gray levels), <output_dir>/salient/"
                  "<name>.png, and <name>_overlay.png (the map in 'hot' "
                  "colours over the visible image).")
flags.DEFINE_string("max_memory", None, "Memory budget (e.g. 8G, 500M) from "
                    "which the tile size is chosen when --tile_size is not "
                    "given: whole images when they fit, else the largest "
                    "tiles that do.  Default: half the memory available at "
                    "start (MemAvailable).")
flags.DEFINE_bool("lean_allocator", False, "Run oneDNN on the system "
                  "allocator instead of TensorFlow's pool: ~1.3 instead of "
                  "~2.1 KB per pixel of working memory (larger tiles under "
                  "--max_memory), same output, but ~1.6x slower.")
flags.DEFINE_string("ir_range", "minmax", "How 16-bit and float infrared "
                    "images are mapped to the network's 0..255: minmax "
                    "(per image, like a thermal viewer's automatic gain) or "
                    "percentile:P (between the P-th and (100-P)-th "
                    "percentiles, the tails clipped).  8-bit images are "
                    "read as upstream, whatever this says.")
flags.DEFINE_enum("register", "none", ["none", "auto", "global", "dense"],
                  "Register each infrared image onto its visible image "
                  "before fusing (no weights needed; see stdfusion-register)"
                  ": auto (global then dense), global, dense (same-size "
                  "pairs).  The pair may then differ in size and the fused "
                  "image is in the visible frame.  none (default, as "
                  "upstream): fuse the pair as given; sizes must match.")
flags.DEFINE_string("mirror", None, "Local folder laid out like ../shared/"
                    "upstream to copy the default assets from instead of "
                    "downloading them (default: $STDFUSION_MIRROR).")


def main(argv):
    from stdfusion_tf import fileio, fusion, images, salient
    from stdfusion_tf.loading import ensure_defaults, load_model

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    fusion.check_precision(FLAGS.precision)  # before any work
    fusion.check_tile_size(FLAGS.tile_size)
    images.parse_ir_range(FLAGS.ir_range)
    max_memory = (fusion.parse_memory(FLAGS.max_memory) if FLAGS.max_memory
                  else fusion.default_max_memory())
    fileio.check_folder(FLAGS.output_dir)  # before fetching anything
    if FLAGS.lean_allocator:
        fusion.lean_allocator()  # before TensorFlow starts
    checkpoint = ensure_defaults(FLAGS.checkpoint, FLAGS.ir_dir,
                                 FLAGS.vi_dir, FLAGS.mirror)
    model = load_model(checkpoint,
                       paper_activations=FLAGS.paper_activations,
                       dtype="mixed_bfloat16" if FLAGS.precision == "bfloat16"
                       else None)
    fuser = fusion.Fuser(model, tile_size=FLAGS.tile_size,
                         max_memory=max_memory)
    timings = fusion.fuse_folders(
        fuser, FLAGS.ir_dir, FLAGS.vi_dir, FLAGS.output_dir,
        save_mode=FLAGS.save_mode, color=FLAGS.color,
        ir_range=FLAGS.ir_range,
        register=None if FLAGS.register == "none" else FLAGS.register,
        extra=salient.MapWriter(FLAGS.output_dir) if FLAGS.salient_map
        else None)
    print(f"Fused {len(timings)} pairs into {os.path.abspath(FLAGS.output_dir)}"
          f": {fusion.summarize(timings)} (network only)")
    if fuser.tiled_images and FLAGS.tile_size is None:
        print(f"{fuser.tiled_images} image(s) fused in tiles to stay under "
              f"--max_memory {fusion.gigabytes(max_memory)} (same output as "
              "whole-image fusion)")


def run():
    """Console script ``stdfusion-fuse``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
