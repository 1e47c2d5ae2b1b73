"""Salient-target masks for training, from labelme annotations.

The authors drew their masks (``Train_ir_mask/``) by hand in labelme.  This
module turns labelme JSON files into masks like theirs: one 8-bit gray BMP per
infrared image, ``<stem>.bmp``, the image's size, 255 on the salient targets
and 0 elsewhere -- ready for ``train.py --mask_dir``.  (The released
``Train_ir_mask_blur/`` is byte-identical to ``Train_ir_mask/``: no blur was
applied, whatever its name says.  ``blur`` offers soft masks on request.)

labelme's JSON format: ``imagePath`` (relative to the JSON file, possibly
with Windows separators), ``imageHeight``, ``imageWidth``, ``imageData``
(base64 image or null) and ``shapes``: ``label``, ``points`` ([[x, y], ...]
in pixels, x to the right, y down), ``shape_type``, and for ``mask`` shapes a
base64 PNG patch.  Each shape is drawn as labelme's own ``shape_to_mask`` /
``shapes_to_label`` draw it (``labelme/_utils/shape.py``, re-stated here with
the same Pillow calls so that no labelme install -- a Qt application -- is
needed):

==================  =====================================================
``polygon``         ``ImageDraw.polygon(points, outline=1, fill=1)``, >= 3
                    points (a shape without ``shape_type``, from old
                    labelme versions, is a polygon, as labelme reads it)
``rectangle``       2 corners, ``ImageDraw.rectangle`` of their min/max,
                    outline included
``circle``          centre and a point on the circle: ``ImageDraw.ellipse``
                    of the box ``centre -/+ radius``
``oriented_rectangle``  4 corners, drawn as a polygon
``line``            2 points, ``ImageDraw.line(width=line_width)`` (10)
``linestrip``       >= 2 points, the same with ``joint="curve"``
``point``           a disc of radius ``point_size`` (5)
``mask``            the PNG patch pasted with its top-left corner at the
                    first point (rounded), clipped to the image
==================  =====================================================

Checked once against labelme's own ``labelme/_utils/shape.py``
(wkentaro/labelme @ 51e50e4, 2026-08; run from a scratch script, not part
of the project): 3000 random shapes of the 7 drawn types, half with
fractional points, some reaching outside the image, and 1953 random
``mask`` shapes: every mask identical.  The 47 other random ``mask`` shapes
had integer boxes larger than their patch, on which labelme raises a
broadcast error or smears a one-pixel-wide patch; they are an error here.

Every shape of every label is salient (the union), unless ``labels`` names
the ones to keep.  ``points`` (labelme's point-prompt type) has no mask in
labelme either and is an error, as is any other type.

Checks, all before anything is written: each infrared image has exactly one
``<stem>.json`` and each JSON an infrared image; ``imagePath`` names that
image (its file stem); ``imageHeight``/``imageWidth`` equal the infrared
image's size; every point lies in ``[0, width] x [0, height]`` -- the bounds
labelme's canvas keeps points in (``allow_outside`` accepts points outside,
drawn clipped, for files made with labelme's out-of-bounds option).
"""

import base64
import io
import json
import math
import os
import pathlib

import numpy as np

from . import images
from .errors import InputError, one_line
from .fileio import StagedOutputs, atomic_output

# labelme's shape_to_mask defaults
LINE_WIDTH = 10
POINT_SIZE = 5
# shape type -> (fewest points, most points); None: no upper bound
SHAPE_POINTS = {
    "polygon": (3, None),
    "rectangle": (2, 2),
    "circle": (2, 2),
    "oriented_rectangle": (4, 4),
    "line": (2, 2),
    "linestrip": (2, None),
    "point": (1, 1),
    "mask": (2, 2),
}
MASK_EXT = ".bmp"  # as the released Train_ir_mask/ (train.py reads .bmp/.tif)


class Annotation:
    """One labelme file, validated: ``shapes`` is a list of dicts with
    ``label``, ``shape_type``, ``points`` (float [N, 2]) and, for ``mask``
    shapes, ``patch`` (bool [h, w])."""

    def __init__(self, path, image_path, height, width, shapes):
        self.path = str(path)
        self.image_path = image_path
        self.height = height
        self.width = width
        self.shapes = shapes


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _decode_png(data, path, where):
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        im.load()
    except Exception as exc:
        raise InputError(path, f"{where}: 'mask' is not a base64 image "
                         f"({one_line(exc)})")
    patch = np.asarray(im)
    if patch.ndim != 2:
        raise InputError(path, f"{where}: 'mask' image must be 2-D (one "
                         f"channel), got shape {patch.shape}")
    return patch.astype(bool)


def _image_size_from_data(data, path):
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        return im.size[1], im.size[0]
    except Exception as exc:
        raise InputError(path, f"'imageData' is not a base64 image "
                         f"({one_line(exc)})")


def read_annotation(path):
    """Parse and validate one labelme JSON file (one-line errors)."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise InputError(path, "no such file")
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a labelme JSON file ({one_line(exc)})")
    if not isinstance(raw, dict) or not isinstance(raw.get("shapes"), list):
        raise InputError(path, "not a labelme JSON file (no 'shapes' list)")
    image_path = raw.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise InputError(path, "no 'imagePath'")
    height, width = raw.get("imageHeight"), raw.get("imageWidth")
    if height is None or width is None:
        # labelme writes both; files of old versions may only embed the image
        if raw.get("imageData"):
            height, width = _image_size_from_data(raw["imageData"], path)
        else:
            raise InputError(path, "no 'imageHeight'/'imageWidth' (and no "
                             "'imageData' to take the size from)")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
               for v in (height, width)):
        raise InputError(path, f"'imageHeight'/'imageWidth' must be positive "
                         f"integers, got {height!r}/{width!r}")
    shapes = [_read_shape(s, i, path) for i, s in enumerate(raw["shapes"])]
    return Annotation(path, image_path, height, width, shapes)


def _read_shape(shape, index, path):
    where = f"shapes[{index}]"
    if not isinstance(shape, dict):
        raise InputError(path, f"{where} is not an object")
    label = shape.get("label")
    if not isinstance(label, str):
        raise InputError(path, f"{where}: no 'label' string")
    where = f"shapes[{index}] (label {label!r})"
    kind = shape.get("shape_type")
    if kind is None:
        kind = "polygon"  # old labelme files, as labelme's shape_to_mask
    if kind not in SHAPE_POINTS:
        raise InputError(path, f"{where}: unknown shape_type {kind!r} (masks "
                         f"are drawn for {', '.join(SHAPE_POINTS)})")
    points = shape.get("points")
    if not (isinstance(points, list) and points and all(
            isinstance(p, list) and len(p) == 2 and all(map(_is_number, p))
            for p in points)):
        raise InputError(path, f"{where}: 'points' must be a list of [x, y] "
                         "numbers")
    points = np.asarray(points, np.float64)
    if not np.isfinite(points).all():
        raise InputError(path, f"{where}: 'points' must be finite")
    fewest, most = SHAPE_POINTS[kind]
    if len(points) < fewest or (most is not None and len(points) > most):
        want = (f"exactly {fewest}" if fewest == most
                else f"at least {fewest}")
        raise InputError(path, f"{where}: a {kind} needs {want} points, got "
                         f"{len(points)}")
    out = {"label": label, "shape_type": kind, "points": points}
    if kind == "mask":
        if not isinstance(shape.get("mask"), str):
            raise InputError(path, f"{where}: a mask shape needs its 'mask' "
                             "(base64 PNG)")
        out["patch"] = _decode_png(shape["mask"], path, where)
        if np.array_equal(points, np.trunc(points)):
            (x1, y1), (x2, y2) = points.astype(int)
            ph, pw = out["patch"].shape
            if y2 - y1 + 1 > ph or x2 - x1 + 1 > pw:
                # labelme itself fails on these (a broadcast error)
                raise InputError(path, f"{where}: the box {x1},{y1} - "
                                 f"{x2},{y2} is larger than the {ph}x{pw} "
                                 "mask patch")
    elif shape.get("mask") is not None:
        raise InputError(path, f"{where}: 'mask' is only allowed for "
                         "shape_type 'mask'")
    return out


def shape_to_mask(size, points, shape_type="polygon", line_width=LINE_WIDTH,
                  point_size=POINT_SIZE):
    """labelme's ``shape_to_mask``: bool [H, W] of one shape (not ``mask``)."""
    from PIL import Image, ImageDraw

    mask = Image.fromarray(np.zeros(size, np.uint8))
    draw = ImageDraw.Draw(mask)
    xy = [(float(x), float(y)) for x, y in points]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)),
                        (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type == "line":
        draw.line(xy=xy, fill=1, width=line_width)
    elif shape_type == "linestrip":
        # labelme: round joints, so that wide lines have no notch at turns
        draw.line(xy=xy, fill=1, width=line_width, joint="curve")
    elif shape_type == "point":
        (cx, cy), r = xy[0], point_size
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    elif shape_type in ("polygon", "oriented_rectangle"):
        draw.polygon(xy=xy, outline=1, fill=1)
    else:
        raise ValueError(f"shape_type {shape_type!r} has no mask")
    return np.asarray(mask, dtype=bool)


def paste_patch(size, points, patch):
    """labelme's ``shapes_to_label`` for a ``mask`` shape: the patch at the
    rounded first point; integer bounds crop it to the inclusive box, as
    labelme does for files of older versions."""
    out = np.zeros(size, bool)
    (x1, y1), (x2, y2) = np.round(points).astype(int)
    if np.array_equal(points, np.trunc(points)):
        ph, pw = y2 - y1 + 1, x2 - x1 + 1
    else:
        ph, pw = patch.shape
    h, w = size
    ys, ye = max(y1, 0), min(y1 + ph, h)
    xs, xe = max(x1, 0), min(x1 + pw, w)
    if ys < ye and xs < xe:
        block = patch[ys - y1:ye - y1, xs - x1:xe - x1]
        out[ys:ys + block.shape[0], xs:xs + block.shape[1]] = block
    return out


def annotation_to_mask(annotation, labels=None, line_width=LINE_WIDTH,
                       point_size=POINT_SIZE):
    """bool [H, W]: the union of the (selected) shapes."""
    size = (annotation.height, annotation.width)
    out = np.zeros(size, bool)
    for shape in annotation.shapes:
        if labels is not None and shape["label"] not in labels:
            continue
        if shape["shape_type"] == "mask":
            out |= paste_patch(size, shape["points"], shape["patch"])
        else:
            out |= shape_to_mask(size, shape["points"], shape["shape_type"],
                                 line_width, point_size)
    return out


def to_uint8(mask, blur=0.0):
    """bool mask -> uint8 0/255; ``blur`` > 0: a Gaussian of that sigma
    (pixels, truncated at 4 sigma, borders replicated) on the 0/255 mask,
    rounded -- soft masks, which train.py maps to weights in [0, 1]."""
    out = np.where(mask, np.uint8(255), np.uint8(0))
    if blur and blur > 0:
        from scipy import ndimage

        soft = ndimage.gaussian_filter(out.astype(np.float64), float(blur),
                                       mode="nearest", truncate=4.0)
        out = np.clip(np.rint(soft), 0, 255).astype(np.uint8)
    return out


def _image_stem(image_path):
    # labelme writes imagePath relative to the JSON file, with the
    # separators of the machine it ran on
    return os.path.splitext(pathlib.PureWindowsPath(image_path).name)[0]


def check_bounds(annotation, allow_outside=False):
    """Every point in ``[0, width] x [0, height]`` (labelme's canvas bounds);
    with ``allow_outside`` a shape may reach outside but must still cover
    some pixel of the image."""
    for i, shape in enumerate(annotation.shapes):
        p = shape["points"]
        bad = ((p[:, 0] < 0) | (p[:, 0] > annotation.width)
               | (p[:, 1] < 0) | (p[:, 1] > annotation.height))
        if not bad.any():
            continue
        x, y = p[np.argmax(bad)]
        where = (f"shapes[{i}] (label {shape['label']!r}, "
                 f"{shape['shape_type']}): point ({x:g}, {y:g}) outside the "
                 f"{annotation.width}x{annotation.height} image")
        if not allow_outside:
            raise InputError(annotation.path, where + " (--allow_outside "
                             "draws such shapes clipped)")
        single = Annotation(annotation.path, None, annotation.height,
                            annotation.width, [shape])
        if not annotation_to_mask(single).any():
            raise InputError(annotation.path, where + "; the shape covers no "
                             "pixel of the image")


def plan(ir_dir, json_dir=None, output_dir="Train_ir_mask",
         allow_outside=False):
    """Pair ``<stem>.json`` with the infrared images and check everything;
    returns ``[(stem, Annotation, target path)]`` in natural order."""
    json_dir = str(json_dir if json_dir is not None else ir_dir)
    ir_images = images.by_stem(ir_dir)
    if not os.path.isdir(json_dir):
        raise InputError(json_dir, "no such folder")
    notes = {os.path.splitext(n)[0]: n for n in os.listdir(json_dir)
             if n.lower().endswith(".json") and not n.startswith(".")
             and os.path.isfile(os.path.join(json_dir, n))}
    if not notes:
        raise InputError(json_dir, "no labelme annotations (.json) in this "
                         "folder")
    missing = sorted(set(ir_images) - set(notes), key=images.natural_key)
    if missing:
        raise InputError(os.path.join(str(ir_dir), ir_images[missing[0]]),
                         f"no annotation {missing[0]}.json in {json_dir} "
                         f"({len(missing)} image(s) without one; save an "
                         "empty annotation in labelme for an image without "
                         "salient targets)")
    orphans = sorted(set(notes) - set(ir_images), key=images.natural_key)
    if orphans:
        raise InputError(os.path.join(json_dir, notes[orphans[0]]),
                         f"no infrared image named '{orphans[0]}.*' in "
                         f"{ir_dir} ({len(orphans)} annotation(s) without "
                         "one)")
    out = []
    for stem in sorted(ir_images, key=images.natural_key):
        ir_path = os.path.join(str(ir_dir), ir_images[stem])
        note = read_annotation(os.path.join(json_dir, notes[stem]))
        if _image_stem(note.image_path) != stem:
            raise InputError(note.path, f"imagePath {note.image_path!r} names "
                             f"another image than {ir_path}")
        size = images.image_size(ir_path)
        if size != (note.height, note.width):
            raise InputError(note.path, "size mismatch: imageHeight x "
                             "imageWidth {}x{} but the infrared image {} is "
                             "{}x{}".format(note.height, note.width, ir_path,
                                            *size))
        check_bounds(note, allow_outside)
        out.append((stem, note,
                    os.path.join(str(output_dir), stem + MASK_EXT)))
    return out


def save_mask(mask_u8, path):
    """8-bit gray BMP (256-entry gray palette), as the released masks."""
    from PIL import Image

    with atomic_output(path, suffix=MASK_EXT) as tmp:
        Image.fromarray(mask_u8, "L").save(tmp, format="BMP")
    return path


def make_masks(ir_dir, json_dir=None, output_dir="Train_ir_mask", blur=0.0,
               labels=None, allow_outside=False, line_width=LINE_WIDTH,
               point_size=POINT_SIZE):
    """Check every annotation, then write every mask; returns
    ``[(path, fraction of salient pixels)]``.  If writing fails half-way the
    masks written by this call are removed again."""
    if blur is not None and (not np.isfinite(blur) or blur < 0):
        raise InputError(None, f"--blur must be a sigma >= 0, got {blur}")
    if line_width < 1 or point_size < 0:
        raise InputError(None, "--line_width must be >= 1 and --point_size "
                         ">= 0")
    labels = set(labels) if labels else None
    jobs = plan(ir_dir, json_dir, output_dir, allow_outside)
    if labels:
        seen = {s["label"] for _, note, _ in jobs for s in note.shapes}
        unseen = sorted(labels - seen)
        if unseen:
            raise InputError(json_dir if json_dir is not None else ir_dir,
                             f"--labels {', '.join(unseen)}: no shape has "
                             f"this label (labels used: "
                             f"{', '.join(sorted(seen)) or 'none'})")
    report = []
    # staged, renamed into place together at the end; a failure leaves the
    # earlier masks as they were (fileio.StagedOutputs, as fusion does)
    with StagedOutputs(output_dir) as out:
        for stem, note, target in jobs:
            mask = annotation_to_mask(note, labels, line_width, point_size)
            with out.writing(target) as tmp:
                save_mask(to_uint8(mask, blur), tmp)
            report.append((target, float(mask.mean())))
    return report
