"""make_masks.py: labelme JSON -> salient masks like Train_ir_mask/, for train.py.

The fixtures (tests/fixtures/labelme/*.json) are hand-written labelme files:
1.json polygon, rectangle (corners given bottom-right first), circle;
2.json oriented_rectangle, line, linestrip, point, mask (base64 PNG patch)
and a polygon without shape_type (old labelme), imagePath with Windows
separators; 3.json no shapes.  Our drawing was also compared once with
labelme's own labelme/_utils/shape.py (3000 random shapes of the 7 drawn
types and 1953 random mask shapes: all equal; see the note in masks.py).
"""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_cli, write_gray
from stdfusion_tf import masks
from stdfusion_tf.errors import InputError

FIXTURES = ROOT / "tests" / "fixtures" / "labelme"
SIZES = {"1": (40, 48), "2": (48, 64), "3": (40, 40)}  # H, W


def _shape_mask(note, index):
    """The mask of one shape of an annotation."""
    one = masks.Annotation(note.path, None, note.height, note.width,
                           [note.shapes[index]])
    return masks.annotation_to_mask(one)


def test_shapes_drawn_as_labelme_does():
    note = masks.read_annotation(FIXTURES / "1.json")
    y, x = np.mgrid[:40, :48]
    # polygon (4,4) (20,4) (4,20): filled, edges included
    assert np.array_equal(_shape_mask(note, 0),
                          (x >= 4) & (y >= 4) & (x + y <= 24))
    # rectangle from (40,30) to (28,24): min/max corners, both inclusive
    want = np.zeros((40, 48), bool)
    want[24:31, 28:41] = True
    assert np.array_equal(_shape_mask(note, 1), want)
    # circle: centre (36,10), a point at distance 5
    r = np.hypot(x - 36, y - 10)
    circle = _shape_mask(note, 2)
    assert circle[r <= 4.5].all() and not circle[r > 5.5].any()

    note = masks.read_annotation(FIXTURES / "2.json")
    assert note.image_path == "..\\Train_ir\\2.bmp"
    y, x = np.mgrid[:48, :64]
    # oriented_rectangle: the diamond |x-10| + |y-10| <= 8, as a polygon
    assert np.array_equal(_shape_mask(note, 0),
                          abs(x - 10) + abs(y - 10) <= 8)
    # line (30,6)-(60,6), labelme's width 10: 10 rows, x 30..60
    line = _shape_mask(note, 1)
    assert np.array_equal(np.nonzero(line.any(axis=1))[0], np.arange(2, 12))
    assert np.array_equal(np.nonzero(line.any(axis=0))[0], np.arange(30, 61))
    # linestrip (30,24)-(45,24)-(45,40): both legs 10 wide, round joint
    strip = _shape_mask(note, 2)
    assert strip[20:29, 30:46].all() and strip[24:41, 41:50].all()
    assert strip.sum() == 311
    # point (10,38): disc of labelme's radius 5
    r = np.hypot(x - 10, y - 38)
    point = _shape_mask(note, 3)
    assert point[r <= 4.5].all() and not point[r > 5.5].any()
    # mask: the 3x4 patch with its top-left corner at (56, 40)
    patch = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 1]], bool)
    want = np.zeros((48, 64), bool)
    want[40:43, 56:60] = patch
    assert np.array_equal(_shape_mask(note, 4), want)
    # no shape_type (old labelme): a polygon
    assert note.shapes[5]["shape_type"] == "polygon"
    want = np.zeros((48, 64), bool)
    want[30:37, 20:27] = True
    assert np.array_equal(_shape_mask(note, 5), want)
    # the mask is the union of all shapes
    union = np.logical_or.reduce([_shape_mask(note, i) for i in range(6)])
    assert np.array_equal(masks.annotation_to_mask(note), union)
    # labelme's shapes_to_label on the fixtures (run once): 341 and 921
    # pixels, the same pixels as ours
    assert union.sum() == 921
    assert masks.annotation_to_mask(
        masks.read_annotation(FIXTURES / "1.json")).sum() == 341
    assert not masks.annotation_to_mask(
        masks.read_annotation(FIXTURES / "3.json")).any()


def test_mask_patch_bounds_as_labelme():
    patch = np.ones((3, 4), bool)
    # integer bounds: labelme crops the patch to the inclusive box
    got = masks.paste_patch((8, 8), np.array([[1.0, 2.0], [2.0, 3.0]]), patch)
    assert got.sum() == 4 and got[2:4, 1:3].all()
    # fractional bounds: the patch's own extent, from the rounded corner
    got = masks.paste_patch((8, 8), np.array([[0.6, 1.4], [3.6, 3.4]]), patch)
    assert got.sum() == 12 and got[1:4, 1:5].all()
    # clipped at the image border
    got = masks.paste_patch((8, 8), np.array([[6.6, 6.6], [9.6, 8.6]]), patch)
    assert got.sum() == 1 and got[7, 7]


def _data(tmp_path):
    """ir/, vi/ (paired training images) and labels/ (the fixtures)."""
    rng = np.random.default_rng(5)
    for stem, (h, w) in SIZES.items():
        # .bmp for train.py; 1.json's imagePath says 1.png: the stem counts
        write_gray(tmp_path / "Train_ir" / f"{stem}.bmp",
                   rng.integers(0, 256, (h, w)))
        write_gray(tmp_path / "Train_vi" / f"{stem}.bmp",
                   rng.integers(0, 256, (h, w)))
    shutil.copytree(FIXTURES, tmp_path / "labels")
    return tmp_path / "Train_ir", tmp_path / "labels"


def _make(tmp_path, *flags, out="Train_ir_mask"):
    ir, labels = tmp_path / "Train_ir", tmp_path / "labels"
    return run_cli(ROOT / "make_masks.py", "--ir_dir", ir, "--json_dir",
                   labels, "--output_dir", tmp_path / out, *flags,
                   cwd=tmp_path)


def test_masks_like_the_released_ones_and_train_py_reads_them(upstream,
                                                              tmp_path):
    _data(tmp_path)
    proc = _make(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 3 masks" in proc.stdout
    out = tmp_path / "Train_ir_mask"
    assert sorted(p.name for p in out.iterdir()) == ["1.bmp", "2.bmp",
                                                     "3.bmp"]
    released = upstream / "Train_ir_mask" / "5.bmp"
    ref = Image.open(released)
    for stem, (h, w) in SIZES.items():
        im = Image.open(out / f"{stem}.bmp")
        # 8-bit gray BMP (256-gray palette, 1078-byte header) like upstream's
        assert (im.format, im.mode, im.size) == (ref.format, ref.mode, (w, h))
        raw = (out / f"{stem}.bmp").read_bytes()
        assert raw[28] == released.read_bytes()[28] == 8  # bits per pixel
        assert raw[10:14] == released.read_bytes()[10:14]  # pixel offset
        note = masks.read_annotation(tmp_path / "labels" / f"{stem}.json")
        want = np.where(masks.annotation_to_mask(note), 255, 0)
        assert np.array_equal(np.asarray(im), want)
    assert np.asarray(Image.open(out / "3.bmp")).max() == 0

    # train.py takes the folder as it is (2 pairs + 1 without targets)
    proc = run_cli(ROOT / "train.py", "--ir_dir", tmp_path / "Train_ir",
                   "--vi_dir", tmp_path / "Train_vi", "--mask_dir", out,
                   "--epoch", 1, "--max_steps", 1, "--image_size", 32,
                   "--stride", 16, "--batch_size", 2, "--seed", 1,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "9 patches of 32x32" in proc.stdout
    assert (tmp_path / "checkpoint" / "STDFusion_2_Pixel_Grad" /
            "Fusion.model-0.index").is_file()


def test_blur_gives_soft_masks(tmp_path):
    _data(tmp_path)
    proc = _make(tmp_path, "--blur", 2, out="soft")
    assert proc.returncode == 0, proc.stderr
    assert "sigma 2" in proc.stdout
    note = masks.read_annotation(tmp_path / "labels" / "1.json")
    hard = np.where(masks.annotation_to_mask(note), 255.0, 0.0)
    soft = np.asarray(Image.open(tmp_path / "soft" / "1.bmp")).astype(float)
    assert len(np.unique(soft)) > 50  # really soft
    # centre of the 7x13 rectangle (rows 24..30, columns 28..40): the
    # sampled Gaussian (sigma 2, 4-sigma support) summed over the rectangle
    k = np.arange(-8, 9)
    g = np.exp(-k ** 2 / 8.0)
    g /= g.sum()
    want = 255 * g[np.abs(k) <= 3].sum() * g[np.abs(k) <= 6].sum()
    assert abs(soft[27, 34] - want) <= 0.5 + 1e-9, (soft[27, 34], want)
    assert soft[38, 2] == 0  # far from every shape
    # a normalised Gaussian keeps the mass (borders replicated)
    assert abs(soft.sum() - hard.sum()) <= 0.02 * hard.sum()
    assert np.abs(soft - hard).max() > 100  # edges changed
    # sigma 0 is the binary default
    assert np.array_equal(masks.to_uint8(hard > 0, 0), hard.astype(np.uint8))


def test_labels_and_allow_outside(tmp_path):
    ir, labels = _data(tmp_path)
    got = masks.make_masks(ir, labels, tmp_path / "cars", labels=["car"])
    car = np.asarray(Image.open(tmp_path / "cars" / "1.bmp")) > 0
    note = masks.read_annotation(labels / "1.json")
    assert np.array_equal(car, _shape_mask(note, 1))  # the rectangle only
    assert got[2][1] == 0.0  # 3.bmp: no targets
    with pytest.raises(InputError, match="--labels truck: no shape"):
        masks.make_masks(ir, labels, tmp_path / "x", labels=["truck"])
    # a polygon reaching outside: an error, or drawn clipped on request
    data = json.loads((labels / "1.json").read_text())
    data["shapes"][0]["points"][1] = [60.0, 4.0]
    (labels / "1.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"point \(60, 4\) outside"):
        masks.make_masks(ir, labels, tmp_path / "y")
    masks.make_masks(ir, labels, tmp_path / "y", allow_outside=True)
    clipped = np.asarray(Image.open(tmp_path / "y" / "1.bmp")) > 0
    assert clipped[4, 40:48].all()
    # entirely outside covers nothing: an error even then
    data["shapes"][0]["points"] = [[50, 1], [60, 1], [55, 9]]
    (labels / "1.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="covers no pixel"):
        masks.make_masks(ir, labels, tmp_path / "z", allow_outside=True)


def _edit(labels, stem, change):
    path = labels / f"{stem}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


BAD = {
    "outside": (lambda d: d["shapes"][0]["points"].append([-3.0, 10.0]),
                ["shapes[0]", "point (-3, 10) outside the 48x40 image"]),
    "unknown type": (lambda d: d["shapes"][2].update(shape_type="ellipse"),
                     ["shapes[2] (label 'person')",
                      "unknown shape_type 'ellipse'"]),
    "points type": (lambda d: d["shapes"][2].update(shape_type="points"),
                    ["unknown shape_type 'points'"]),
    "other image": (lambda d: d.update(imagePath="2.png"),
                    ["imagePath '2.png' names another image"]),
    "size": (lambda d: d.update(imageHeight=41),
             ["size mismatch", "41x48", "40x48"]),
    "point count": (lambda d: d["shapes"][2]["points"].append([1.0, 1.0]),
                    ["a circle needs exactly 2 points, got 3"]),
    "bad points": (lambda d: d["shapes"][1].update(points=[[1, "a"], [2, 3]]),
                   ["shapes[1] (label 'car')", "'points'"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_annotation_is_a_one_line_error(tmp_path, case):
    _, labels = _data(tmp_path)
    change, needles = BAD[case]
    path = _edit(labels, "1", change)
    proc = _make(tmp_path)
    assert_one_line_error(proc, path, *needles)
    assert not (tmp_path / "Train_ir_mask").exists()


def test_unpaired_and_unreadable(tmp_path):
    ir, labels = _data(tmp_path)
    out = tmp_path / "Train_ir_mask"
    out.mkdir()
    write_gray(out / "1.bmp", np.full((40, 48), 7))  # an earlier mask
    (labels / "3.json").rename(tmp_path / "3.json")
    proc = _make(tmp_path)
    assert_one_line_error(proc, ir / "3.bmp", "no annotation 3.json")
    shutil.move(tmp_path / "3.json", labels / "3.json")
    (labels / "4.json").write_text((labels / "3.json").read_text())
    proc = _make(tmp_path)
    assert_one_line_error(proc, labels / "4.json", "no infrared image named "
                          "'4.*'")
    (labels / "4.json").unlink()
    (labels / "2.json").write_text('{"shapes": [')
    proc = _make(tmp_path)
    assert_one_line_error(proc, labels / "2.json", "not a labelme JSON")
    proc = _make(tmp_path, "--blur", -1)
    assert_one_line_error(proc, "--blur must be a sigma >= 0")
    # nothing was written by the failed runs
    assert [p.name for p in out.iterdir()] == ["1.bmp"]
    assert np.asarray(Image.open(out / "1.bmp")).max() == 7


def test_own_data_under_the_default_names_is_not_replaced(upstream,
                                                          tmp_path):
    """Own data in Train_ir/, Train_vi/, Train_ir_mask_blur/ (train.py's
    defaults) with a mirror configured: train.py trains on it instead of
    replacing 1.bmp, 2.bmp, 3.bmp by upstream's files of those names."""
    _data(tmp_path)
    proc = _make(tmp_path, out="Train_ir_mask_blur")
    assert proc.returncode == 0, proc.stderr
    before = {p: p.read_bytes() for p in tmp_path.glob("Train_*/*.bmp")}
    proc = run_cli(ROOT / "train.py", "--epoch", 1, "--max_steps", 1,
                   "--image_size", 32, "--stride", 16, "--batch_size", 2,
                   cwd=tmp_path, env={"STDFUSION_MIRROR": str(upstream)})
    assert proc.returncode == 0, proc.stderr
    assert "9 patches of 32x32" in proc.stdout
    after = {p: p.read_bytes() for p in tmp_path.glob("Train_*/*.bmp")}
    assert after == before
