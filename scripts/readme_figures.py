"""The README's pictures, made from public data beside the project.

    python scripts/readme_figures.py                 # both pictures
    python scripts/readme_figures.py --only aligned  # (a) only
    python scripts/readme_figures.py --only misaligned

(a) ``docs/images/fusion_examples.png``: aligned pairs, infrared | visible |
    fused, with the released weights (jiayi-ma ``Fusion.model-29``, the
    default of ``stdfusion-fuse``): upstream's test pair 01 (RoadScene, colour
    strategy: the fused luma with the visible image's chroma) and test pair 07
    (TNO).
(b) ``docs/images/registration_example.png``: a pair as the cameras gave it
    (``datasets/RoadScene_raw``: a raw 640x512 FLIR frame and the visible
    camera's high-resolution crop, different size and field of view, no
    pixel correspondence) -> the infrared image registered into the visible
    frame (``stdfusion_tf.registration.register_pair``, method "auto") ->
    fused (default pair FLIR_05857, at night: the pedestrians are dark in the
    visible image and bright in the infrared one).  For contrast, the pair
    fused without registration (the infrared
    image only resized to the visible frame, ``method="none"``).

The visible crop is first resized to ``--width`` pixels (default 640) so the
picture stays small; registration and fusion then run at that size.  The
inputs are read from ``--shared`` (default ``../shared``); nothing of it is
copied, the PNGs are downscaled composites.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from stdfusion_tf import images, load_model  # noqa: E402

PANEL_HEIGHT = 240  # pixels of each panel of the first row
GAP = 6
LABEL_HEIGHT = 28
FIGURE_WIDTH = 1200  # picture (b)


def fuse(model, ir255, vi255):
    """[H, W] 0..255 float gray pair -> fused [H, W] in [-1, 1]."""
    ir = images.scale_in(np.asarray(ir255, np.float32))
    vi = images.scale_in(np.asarray(vi255, np.float32))
    out = model((ir[None, :, :, None], vi[None, :, :, None]), training=False)
    return np.asarray(out)[0, :, :, 0]


def to_rgb(gray_or_rgb):
    a = np.asarray(gray_or_rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a.astype(np.uint8)


def fused_color(fused, vi_ycbcr):
    """The paper's colour strategy (``stdfusion-fuse --color``)."""
    return images.merge_color(images.to_uint8(fused), vi_ycbcr)


def resize(rgb, height=None, width=None):
    from PIL import Image

    im = Image.fromarray(to_rgb(rgb))
    if width is None:
        width = round(im.width * height / im.height)
    if height is None:
        height = round(im.height * width / im.width)
    return np.asarray(im.resize((width, height), Image.LANCZOS))


def label(panel, text):
    """The panel with a caption strip above it."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = panel.shape[:2]
    im = Image.new("RGB", (w, h + LABEL_HEIGHT), "white")
    im.paste(Image.fromarray(panel), (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow without scalable default font
        font = ImageFont.load_default()
    tw = draw.textlength(text, font=font)
    draw.text(((w - tw) / 2, 4), text, fill="black", font=font)
    return np.asarray(im)


def row(panels, labels, width=None):
    """Panels side by side under their captions, all of one height: that of
    ``PANEL_HEIGHT``, or the height that makes the row ``width`` wide."""
    height = PANEL_HEIGHT
    if width is not None:
        aspect = sum(np.asarray(p).shape[1] / np.asarray(p).shape[0]
                     for p in panels)
        height = round((width - GAP * (len(panels) - 1)) / aspect)
    panels = [label(resize(p, height=height), t)
              for p, t in zip(panels, labels)]
    h = panels[0].shape[0]
    out = [panels[0]]
    for p in panels[1:]:
        out += [np.full((h, GAP, 3), 255, np.uint8), p]
    return np.concatenate(out, axis=1)


def stack(rows):
    width = max(r.shape[1] for r in rows)
    padded = []
    for i, r in enumerate(rows):
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        padded.append(np.concatenate([r, pad], axis=1))
        if i < len(rows) - 1:
            padded.append(np.full((GAP, width, 3), 255, np.uint8))
    return np.concatenate(padded, axis=0)


def save_png(rgb, path):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, optimize=True)
    print(f"wrote {path} ({rgb.shape[1]}x{rgb.shape[0]})")


def aligned_figure(model, shared, out):
    test = os.path.join(shared, "upstream")
    rows, width = [], None
    for stem, color, what in (("01", True, "RoadScene"), ("07", False, "TNO")):
        ir_path = os.path.join(test, "Test_ir", stem + ".bmp")
        vi_path = os.path.join(test, "Test_vi", stem + ".bmp")
        ir, vi = images.read_gray(ir_path), images.read_gray(vi_path)
        fused = fuse(model, ir, vi)
        if color:
            vi_shown = images.merge_color(
                np.clip(np.rint(vi), 0, 255).astype(np.uint8),
                images.read_ycbcr(vi_path))
            fused_shown = fused_color(fused, images.read_ycbcr(vi_path))
        else:
            vi_shown, fused_shown = vi, images.to_uint8(fused)
        rows.append(row([np.clip(np.rint(ir), 0, 255), vi_shown, fused_shown],
                        [f"infrared ({what} {stem})", "visible", "fused"],
                        width))
        width = rows[0].shape[1]
    save_png(stack(rows), out)


def misaligned_figure(model, shared, out, name, width, method="auto"):
    from PIL import Image

    from stdfusion_tf.registration import register_pair

    raw = os.path.join(shared, "datasets", "RoadScene_raw")
    ir_path = os.path.join(raw, "infrared", name + ".png")
    vi_path = os.path.join(raw, "crop_HR_visible", name + ".jpg")
    ir = images.read_gray(ir_path)                   # 640x512, 0..255
    vi_im = Image.open(vi_path).convert("RGB")
    if width and vi_im.width > width:
        vi_im = vi_im.resize(
            (width, round(vi_im.height * width / vi_im.width)), Image.LANCZOS)
    vi_rgb = np.asarray(vi_im)
    vi_ycbcr = np.asarray(vi_im.convert("YCbCr"), np.uint8)
    vi = np.asarray(vi_im.convert("YCbCr").convert("F"), np.float32)

    unit = dict(ir=ir / 255.0, vi=vi / 255.0)
    plain = register_pair(unit["ir"].astype(np.float32),
                          unit["vi"].astype(np.float32), method="none")
    reg = register_pair(unit["ir"].astype(np.float32),
                        unit["vi"].astype(np.float32), method=method)
    print(f"{name}: registration {reg.method}, confidence "
          f"{reg.confidence:.3f}, fallback {reg.fallback}, "
          f"{reg.seconds:.2f} s")
    unregistered = fused_color(fuse(model, plain.warped * 255.0, vi), vi_ycbcr)
    registered = fused_color(fuse(model, reg.warped * 255.0, vi), vi_ycbcr)
    warped = np.clip(np.rint(reg.warped * 255.0), 0, 255)
    top = row([np.clip(np.rint(ir), 0, 255), vi_rgb, warped],
              [f"infrared as captured ({ir.shape[1]}x{ir.shape[0]})",
               f"visible ({name}, another camera)",
               "infrared registered to it"], FIGURE_WIDTH)
    bottom = row([unregistered, registered],
                 ["fused without registration (ghosts)",
                  "fused after registration"], FIGURE_WIDTH)
    save_png(stack([top, bottom]), out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: the released jiayi-ma "
                        "Fusion.model-29 under --shared)")
    parser.add_argument("--out_dir", default=os.path.join(ROOT, "docs",
                                                          "images"))
    parser.add_argument("--only", choices=("aligned", "misaligned"))
    parser.add_argument("--pair", default="FLIR_05857",
                        help="RoadScene_raw name of picture (b)")
    parser.add_argument("--width", type=int, default=640,
                        help="visible width for picture (b)")
    parser.add_argument("--method", default="auto",
                        help="registration method for picture (b)")
    args = parser.parse_args()
    checkpoint = args.checkpoint or os.path.join(
        args.shared, "upstream", "checkpoints", "jiayi-ma")
    model = load_model(checkpoint)
    if args.only in (None, "aligned"):
        aligned_figure(model, args.shared,
                       os.path.join(args.out_dir, "fusion_examples.png"))
    if args.only in (None, "misaligned"):
        misaligned_figure(model, args.shared,
                          os.path.join(args.out_dir,
                                       "registration_example.png"),
                          args.pair, args.width, args.method)


if __name__ == "__main__":
    main()
