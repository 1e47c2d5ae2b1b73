"""Folders of source and fused images -> the paper's Table I, Fig. 9 curves.

Images are read as MATLAB's ``imread`` gives them to the group's evaluation
script: 8-bit gray as is (palette images as their indices), colour through
``rgb2gray``.  Everything is computed before anything is written.
"""

import csv
import io
import os

import numpy as np

from . import images, metrics
from .errors import InputError, one_line
from .fileio import atomic_output


def read_u8(path, ir_range=None):
    """8-bit gray array as the MATLAB evaluation sees the file.

    ``ir_range`` (infrared sources only): a 16-bit or float single-channel
    image is mapped to 0..255 as test.py maps it (``images.wide_to_gray``),
    then rounded to uint8 -- the image the network saw, to the gray level.
    (MATLAB's ``imread`` would give the raw 16-bit values, which the group's
    code does not handle.)"""
    im = images.open_image(path)  # sniffed format, full decode, one-line errors
    if im.mode in images.WIDE_MODES and ir_range is not None:
        try:
            gray = images.wide_to_gray(np.asarray(im), ir_range)
        except InputError as exc:
            raise InputError(path, exc.problem)
        return np.rint(gray).astype(np.uint8)
    if im.mode in ("L", "P"):
        return np.asarray(im)  # MATLAB imread: palette indices for 'P'
    if im.mode == "LA":
        return np.asarray(im)[..., 0]
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        rgb = np.asarray(im if im.mode in ("RGB", "RGBA")
                         else im.convert("RGB"))
        return metrics.rgb2gray(rgb)
    raise InputError(path, f"unsupported image mode {im.mode} (8-bit gray "
                     "or colour expected; 16-bit and float images are "
                     "accepted as infrared sources only)")


def parse_metrics(spec):
    if spec.strip().lower() == "all":
        return list(metrics.ALL_METRICS)
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in metrics.ALL_METRICS]
    if unknown or not chosen:
        raise InputError(None, f"--metrics: unknown {', '.join(unknown) or 'empty list'}"
                         f" (choose from {', '.join(metrics.ALL_METRICS)} or all)")
    return chosen


def parse_methods(specs):
    """['NAME=DIR', ...] -> {name: dir} (order kept)."""
    methods = {}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise InputError(None, f"--fused {spec!r}: expected NAME=DIR")
        if name in methods:
            raise InputError(None, f"--fused: method {name!r} given twice")
        methods[name] = folder
    if not methods:
        raise InputError(None, "give at least one --fused NAME=DIR")
    return methods


def evaluate_folders(ir_dir, vi_dir, methods, chosen, allow_missing=False,
                     progress=None, ir_range="minmax"):
    """-> (rows [{method, name, metric: value}], skipped stems).

    Pairs by file stem over all folders; a stem missing anywhere is an error
    unless ``allow_missing`` (then it is skipped everywhere and returned).
    """
    folders = [ir_dir, vi_dir] + list(methods.values())
    stems, paths, skipped = images.pair_folders(*folders,
                                                allow_missing=allow_missing)
    columns = list(chosen) + (["SF255"] if "SF" in chosen
                              and "SF255" not in chosen else [])
    rows = []
    for i, (stem, (ir_path, vi_path, *fused_paths)) in enumerate(
            zip(stems, paths)):
        a, b = read_u8(ir_path, ir_range), read_u8(vi_path)
        if a.shape != b.shape:
            raise InputError(vi_path, "size mismatch: {}x{} but the infrared "
                             "image {} is {}x{}".format(*b.shape, ir_path,
                                                        *a.shape))
        for method, path in zip(methods, fused_paths):
            f = read_u8(path)
            if f.shape != a.shape:
                raise InputError(path, "size mismatch: {}x{} but the source "
                                 "images are {}x{}".format(*f.shape, *a.shape))
            row = {"method": method, "name": stem}
            row.update(metrics.evaluate(f, a, b, columns))
            rows.append(row)
        if progress:
            progress(i + 1, len(stems))
    return rows, skipped, columns


def summarize(rows, columns):
    """{method: {metric: (mean, sample std)}} in first-seen method order."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        values = {c: np.array([r[c] for r in rows if r["method"] == method])
                  for c in columns}
        out[method] = {c: (float(v.mean()),
                           float(v.std(ddof=1)) if len(v) > 1 else 0.0)
                       for c, v in values.items()}
    return out


def ranks(summary, column, higher_is_better=None):
    """(best method, second best method) of a column by its mean;
    ``higher_is_better``: {column: bool}, the fusion metrics' by default."""
    higher = (higher_is_better or metrics.HIGHER_IS_BETTER)[column]
    order = sorted(summary, key=lambda m: summary[m][column][0],
                   reverse=higher)
    return order[0], (order[1] if len(order) > 1 else None)


def markdown_table(summary, columns, digits=4, higher_is_better=None,
                   spec=None, first_header="Method"):
    """Table I: mean ± std; best **bold**, second best _italic_.

    Numbers have ``digits`` decimals unless ``spec`` (a format spec such as
    ``".5g"``) is given; ``higher_is_better`` ({column: bool}) ranks
    columns that are not fusion metrics."""
    spec = spec or f".{digits}f"
    lines = [f"| {first_header} | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    best = {c: ranks(summary, c, higher_is_better) for c in columns}
    for method, stats in summary.items():
        cells = []
        for c in columns:
            mean, std = stats[c]
            cell = f"{format(mean, spec)} ± {format(std, spec)}"
            if len(summary) > 1 and method == best[c][0]:
                cell = f"**{cell}**"
            elif len(summary) > 2 and method == best[c][1]:
                cell = f"_{cell}_"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runtime_table(methods):
    """Table II from test.py's ``timings.csv`` in the fused folders."""
    lines = []
    for method, folder in methods.items():
        path = os.path.join(str(folder), "timings.csv")
        if not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                seconds = np.array([float(r["seconds"])
                                    for r in csv.DictReader(f)])
        except (KeyError, ValueError) as exc:
            raise InputError(path, f"not a test.py timings file "
                             f"({one_line(exc)})")
        if len(seconds):
            std = seconds.std(ddof=1) if len(seconds) > 1 else 0.0
            lines.append(f"| {method} | {len(seconds)} | "
                         f"{seconds.mean():.4f} ± {std:.4f} |")
    if not lines:
        return ""
    return ("| Method | images | seconds per image (mean ± std) |\n"
            "|---|---|---|\n" + "\n".join(lines) + "\n")


def metrics_csv(rows, columns):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "name"] + list(columns))
    for r in rows:
        writer.writerow([r["method"], r["name"]]
                        + [repr(float(r[c])) for c in columns])
    return buf.getvalue()


def curves_png(rows, columns):
    """Fig. 9-style cumulative curves as PNG bytes: per metric, each
    method's sorted values against the fraction of image pairs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(columns), squeeze=False,
                             figsize=(4.2 * len(columns), 3.6))
    for ax, column in zip(axes[0], columns):
        for method in methods:
            v = np.sort([r[column] for r in rows if r["method"] == method])
            x = np.arange(1, len(v) + 1) / len(v)
            mean = v.mean()
            ax.plot(x, v, marker=".", markersize=3, linewidth=1,
                    label=f"{method}: {mean:.4g}")
        ax.set_title(column)
        ax.set_xlabel("fraction of image pairs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(out_dir, files):
    """Write {name: str | bytes} into out_dir, each atomically."""
    for name, content in files.items():
        with atomic_output(os.path.join(str(out_dir), name)) as tmp:
            with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
                f.write(content)
