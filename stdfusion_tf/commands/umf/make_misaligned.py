r"""Seeded misaligned benchmark: deform aligned infrared images as UMF-CMGR.

    stdfusion-umf make_misaligned --ir_dir ir_256 --output_dir misaligned \
        --seed 0 [--translate 0.01] [--alpha 1]
    stdfusion-umf make_misaligned --ir_dir ir --output_dir hard --seed 0 \
        --level easy|normal|hard|extreme

Upstream's deformation (``data/get_test_data.py``): a random translation
(kornia ``RandomAffine(degrees=0, translate=(0.01, 0.01))``) then an elastic
field (uniform(-1, 1) noise per pixel blurred by a 101 x 101 Gaussian,
sigma 16, zero border, as a displacement in normalised coordinates), but
seeded (NumPy, per image from the seed and the file stem) and for any image
size.  Images are read as upstream (cv2 IMREAD_GRAYSCALE semantics).

Writes ``<output_dir>/<stem>.png`` (the deformed infrared, 8-bit, lossless),
``<output_dir>/flow/<stem>.npy`` (float32 [2, H, W], channel 0 rows/dy,
channel 1 cols/dx, pixels, ``deformed(p) = original(p + d(p))``) and
``<output_dir>/misaligned.json`` (the settings and each translation).
``umf.evaluate_reg --true_flow_dir <output_dir>/flow`` scores a
registration's flow against it.

``--level`` makes one of the registration benchmark levels of
``stdfusion_tf.umf.deform.LEVELS`` instead (rotation, scale, translation and
an elastic field of upstream's shape; ``easy`` is upstream's deformation,
``hard`` rotation +-7 deg, translation +-14 px at 640 px width, scale
0.95-1.05, elastic 1.5 px mean; ``extreme`` +-15 deg, scale 0.7-1.4,
translation 10 %), one bilinear resampling, and writes besides the image and
``flow/`` (same convention) ``undo/<stem>.npy``: the flow ``f`` with
``registered(p) = deformed(p + f(p))`` equal to the original, the ground
truth of a registration (``--translate``, ``--alpha``, ``--kernel_size``,
``--sigma``, ``--padding``, ``--resample`` do not apply to it).
"""

from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Aligned infrared images.")
flags.DEFINE_string("output_dir", None, "Where the deformed images go.")
flags.DEFINE_integer("seed", None, "Random seed (>= 0); with the file stem "
                     "it fixes each image's deformation.")
flags.DEFINE_float("translate", 0.01, "Largest translation, a fraction of "
                   "the width / height (kornia RandomAffine's translate).")
flags.DEFINE_float("alpha", 1.0, "Scale of the elastic displacement "
                   "(upstream has none: 1).")
flags.DEFINE_integer("kernel_size", 101, "Gaussian window of the elastic "
                     "noise blur (odd).")
flags.DEFINE_float("sigma", 16.0, "Gaussian sigma of the elastic noise "
                   "blur, pixels.")
flags.DEFINE_enum("padding", "zeros", ["zeros", "border"], "Outside the "
                  "image: zeros (upstream: dark borders) or the border "
                  "pixels.")
flags.DEFINE_enum("resample", "twice", ["twice", "once"], "twice: as "
                  "upstream (translation, then elastic); once: one bilinear "
                  "resampling at p + d(p), exactly consistent with the "
                  "written displacement.")
flags.DEFINE_enum("level", None, ["easy", "normal", "hard", "extreme"],
                  "A named registration benchmark level (see above).")
flags.mark_flags_as_required(["ir_dir", "output_dir", "seed"])


def main(argv):
    from stdfusion_tf.umf import deform

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if FLAGS.level:
        written = deform.make_level_folder(FLAGS.ir_dir, FLAGS.output_dir,
                                           FLAGS.seed, FLAGS.level)
        print(f"Wrote {len(written)} deformed images (level {FLAGS.level}), "
              f"their displacements (flow/), ground-truth registration "
              f"flows (undo/) and misaligned.json to {FLAGS.output_dir}")
        return
    written = deform.make_folder(
        FLAGS.ir_dir, FLAGS.output_dir, FLAGS.seed, translate=FLAGS.translate,
        alpha=FLAGS.alpha, kernel_size=FLAGS.kernel_size, sigma=FLAGS.sigma,
        padding=FLAGS.padding, resample=FLAGS.resample)
    print(f"Wrote {len(written)} deformed images, their displacements "
          f"(flow/) and misaligned.json to {FLAGS.output_dir}")


def run():
    """``stdfusion-umf make_misaligned``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
