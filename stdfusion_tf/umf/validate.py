"""Checking converted UMF-CMGR weights against the upstream code's outputs.

The two public weight files (a retrain: HaodeShi/UMF-CMGR-retrain-and-test @
43f9365, ``cache/reg_0800.pth`` and ``cache/fus_0200.pth``) are known by
their sha256.  For them, ``../shared/umf-cmgr/reference`` holds what the
upstream PyTorch code gives on CPU for the first 40 RoadScene names, saved
lossless: ``reg/<n>.png`` (registered infrared, ``x * 255`` rounded half to
even and clipped, as ``cv2.imwrite`` converts), ``flow/<n>.npy`` (first 10;
float32 [2, H, W], rows then columns, pixels) and ``fused_reg/<n>.png``
(DIFN on the stored ``ir_reg`` and ``vi_256``).

Inputs are read as upstream reads them: ``cv2.imread(IMREAD_GRAYSCALE)``
semantics (:func:`stdfusion_tf.images.read_gray_cv2`), ``u8 / 255.`` in
float64, then float32.
"""

import hashlib
import os

import numpy as np

# sha256 -> (kind, file name as released).
KNOWN_WEIGHTS = {
    "de968b9b5be8f5981381888c9ee798481402c66fef7baf395b121983e25f5c6e":
        ("mrrn", "reg_0800.pth"),
    "67d4f4d279c1ef1fa4518a391b06528f7f1d9493fccfbfbc0ad78c15fefcb682":
        ("difn", "fus_0200.pth"),
}


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def known_weights(path):
    """(kind, released name) of a known weight file, else None."""
    return KNOWN_WEIGHTS.get(sha256(path))


def _find(folder, stem):
    """The file ``<stem>.*`` in ``folder`` (upstream names are ``.jpg`` even
    for PNG content; the format is read from the content)."""
    for name in sorted(os.listdir(folder)):
        if os.path.splitext(name)[0] == stem:
            return os.path.join(folder, name)
    raise FileNotFoundError(os.path.join(folder, stem + ".*"))


def read_scaled(path):
    """float32 [H, W] in [0, 1], read as upstream reads images."""
    from ..images import read_gray_cv2

    return (read_gray_cv2(path) / 255.).astype(np.float32)


def to_uint8(x):
    """Upstream's saving of a float image: ``x * 255`` converted by OpenCV
    (round half to even, saturate)."""
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255
                   ).astype(np.uint8)


def reference_available(shared_dir):
    return (shared_dir is not None
            and os.path.isdir(os.path.join(shared_dir, "reference"))
            and os.path.isdir(os.path.join(shared_dir, "RoadScene")))


def reference_names(shared_dir, kind, count):
    sub = "reg" if kind == "mrrn" else "fused_reg"
    folder = os.path.join(shared_dir, "reference", sub)
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder)
                  if n.endswith(".png"))[:count]


def _stack(paths):
    return np.stack([read_scaled(p) for p in paths])[..., None]


def compare_with_reference(kind, model, shared_dir, count=3):
    """Run ``model`` on ``count`` reference pairs; returns a dict of figures:
    ``names``, ``max_gray`` (max |ours - reference| in gray levels after
    upstream's saving), ``identical`` (smallest per-image fraction of
    identical pixels), and for MRRN ``max_flow`` (px, over the names that
    have a stored flow; None if none)."""
    from ..images import read_gray_cv2

    road = os.path.join(shared_dir, "RoadScene")
    ref = os.path.join(shared_dir, "reference")
    names = reference_names(shared_dir, kind, count)
    if kind not in ("mrrn", "difn"):
        raise ValueError(f"no reference outputs for {kind}")
    diffs, flow_diffs = [], []
    for n in names:  # one pair at a time: DIFN's dense blocks are wide
        if kind == "mrrn":
            tgt = _stack([_find(os.path.join(road, "pseudo_ir"), n)])
            src = _stack([_find(os.path.join(road, "ir_warp"), n)])
            registered, _, flow = model((tgt, src))
            ours = to_uint8(np.asarray(registered)[0, ..., 0])
            want = read_gray_cv2(os.path.join(ref, "reg", f"{n}.png"))
            npy = os.path.join(ref, "flow", f"{n}.npy")
            if os.path.isfile(npy):
                ref_flow = np.load(npy)  # [2, H, W]: dy, dx
                flow_diffs.append(float(np.max(np.abs(
                    np.asarray(flow)[0].transpose(2, 0, 1) - ref_flow))))
        else:
            ir = _stack([_find(os.path.join(road, "ir_reg"), n)])
            vi = _stack([_find(os.path.join(road, "vi_256"), n)])
            ours = to_uint8(np.asarray(model((ir, vi)))[0, ..., 0])
            want = read_gray_cv2(os.path.join(ref, "fused_reg", f"{n}.png"))
        diffs.append(np.abs(ours.astype(np.int16) - want.astype(np.int16)))
    out = {"names": names,
           "max_gray": int(max(d.max() for d in diffs)),
           "identical": float(min(np.mean(d == 0) for d in diffs))}
    if kind == "mrrn":
        out.update(max_flow=max(flow_diffs) if flow_diffs else None,
                   flows=len(flow_diffs))
    return out
