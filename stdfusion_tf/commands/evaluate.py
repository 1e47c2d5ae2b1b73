r"""Evaluate fused images with the paper's metrics: Table I, Table II, Fig. 9.

    stdfusion-evaluate --ir_dir ir --vi_dir vi \
        --fused STDFusionNet=fused/ours --fused DenseFuse=peers/DenseFuse \
        --out_dir report

Writes table.md (mean ± std per method, best in bold, second in italics,
plus a runtime table from test.py's timings.csv where present), metrics.csv
(one row per method and image) and curves.png (cumulative curves).

From a clone: ``python evaluate.py``, the same program and flags.
"""

from absl import flags

from stdfusion_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("ir_dir", None, "Infrared source images.")
flags.DEFINE_string("vi_dir", None, "Visible source images.")
flags.DEFINE_multi_string("fused", None, "NAME=DIR of a method's fused "
                          "images (repeat for several methods).")
flags.DEFINE_string("out_dir", "evaluation", "Where the report goes.")
flags.DEFINE_string("metrics", "EN,MI,VIF,SF", "Comma-separated metrics "
                    "(EN, MI, VIF, SF, SF255, SD, AG, CC, SCD, Qabf, PSNR, "
                    "MSE) or 'all'.  Default: the paper's Table I.")
flags.DEFINE_string("ir_range", "minmax", "How 16-bit and float infrared "
                    "source images are mapped to 0..255 (as test.py's "
                    "--ir_range, then rounded to 8 bits): minmax or "
                    "percentile:P.")
flags.DEFINE_bool("allow_missing", False, "Skip (and report) names missing "
                  "from some folders instead of stopping.")
flags.mark_flags_as_required(["ir_dir", "vi_dir", "fused"])


def main(argv):
    import os

    from stdfusion_tf import evaluation, fileio, images

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    chosen = evaluation.parse_metrics(FLAGS.metrics)
    methods = evaluation.parse_methods(FLAGS.fused)
    images.parse_ir_range(FLAGS.ir_range)
    fileio.check_writable(FLAGS.out_dir, [
        os.path.join(FLAGS.out_dir, n)
        for n in ("table.md", "metrics.csv", "curves.png")])
    from stdfusion_tf import progress

    bar = progress.progbar(None, unit_name="pair")
    rows, skipped, columns = evaluation.evaluate_folders(
        FLAGS.ir_dir, FLAGS.vi_dir, methods, chosen,
        allow_missing=FLAGS.allow_missing, ir_range=FLAGS.ir_range,
        progress=lambda i, n: (setattr(bar, "target", n), bar.update(i)))
    if skipped:
        print(f"Skipped {len(skipped)} name(s) missing from some folder: "
              + ", ".join(skipped))
    summary = evaluation.summarize(rows, columns)
    table = evaluation.markdown_table(summary, chosen)
    n = len(rows) // len(methods)
    report = f"{n} image pairs; mean ± std (sample std)\n\n" + table
    runtime = evaluation.runtime_table(methods)
    if runtime:
        report += "\nRuntime (test.py timings):\n\n" + runtime
    evaluation.write_report(FLAGS.out_dir, {
        "table.md": report,
        "metrics.csv": evaluation.metrics_csv(rows, columns),
        "curves.png": evaluation.curves_png(rows, chosen),
    })
    print(report)
    print(f"Wrote table.md, metrics.csv, curves.png to {FLAGS.out_dir}")


def run():
    """Console script ``stdfusion-evaluate``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
