"""What the web page does, without the web framework: uploads -> registered,
fused pictures.

    service = FusionService()
    result = service.run(Upload("infrared image", "a.png", ir_bytes),
                         Upload("visible image", "a.jpg", vi_bytes),
                         register="auto", fuser="stdfusionnet_jiayima_29",
                         color=True)
    result.files["fused.png"]      # PNG bytes, the visible image's size

Each step reuses what the command lines do:

* reading: the uploads go through the fuser's own readers (STDFusionNet:
  ``images.read_gray``, as ``stdfusion-fuse``; DIFN: OpenCV's gray reading,
  as UMF-CMGR's scripts), after a check of their size from the header only;
* registration: ``stdfusion_tf.registration.register_pair`` (``auto``: global
  + dense; ``none``: the infrared image resized to the visible frame);
* fusion in the visible frame: STDFusionNet through ``fusion.Fuser`` (tiled
  under a memory budget for large images), saved min-max as ``stdfusion-fuse``;
  DIFN in tiles with enough context to equal whole-image fusion, saved as
  upstream; ``color``: the visible image's chroma put back (the paper's
  YCbCr for STDFusionNet, OpenCV's YCrCb for DIFN, as each command does);
* pictures: the registered infrared over the visible image as a
  checkerboard and as a colour overlay (infrared magenta, visible green:
  aligned edges turn gray), and the flow picture (the dense displacement
  beyond the global transform, hue = direction, brightness = length).

Models are loaded once, on first use, and kept.  Nothing here serialises
requests: the caller (``app``) runs one at a time.
"""

import collections
import dataclasses
import io
import json
import os
import tempfile
import threading
import time
import uuid

import numpy as np

from .. import assets, images, presets
from ..errors import InputError, one_line

MIB = 1 << 20
# Per request (both files together) and per image.  16 Mpx is a 4900 x 3300
# photograph; fusion tiles under a memory budget, registration works on
# reduced copies.
DEFAULT_MAX_UPLOAD_BYTES = 20 * MIB
DEFAULT_MAX_PIXELS = 16_000_000
MIN_SIDE = 16  # pixels, each side of each image
REGISTER_METHODS = ("auto", "none")
DIFN = "difn"
# DIFN: eight 3x3 convolutions along its deepest path (stem, three dense
# layers, query/key, gate, fuse_res, out_conv), so tiles with 8 pixels of
# context equal whole-image fusion; 12 for margin.  Tiles bound the memory
# (its dense blocks hold up to 256 channels per pixel).
DIFN_HALO = 12
DIFN_TILE = 512
MIN_MEMORY_BUDGET = 2 << 30  # bytes, see memory_budget
RESULTS_KEPT = 4  # the last results stay downloadable
PNG_LEVEL = 3  # zlib level: fast, the files stay local


class UploadError(InputError):
    """A bad upload (HTTP 422 unless ``status`` says otherwise); the message
    names the image and the problem on one line."""

    status = 422

    def __init__(self, problem, status=None):
        super().__init__(None, problem)
        if status is not None:
            self.status = status


class TooLarge(UploadError):
    status = 413


class Unavailable(UploadError):
    """A choice this server cannot serve (weights missing or offline)."""

    status = 400


@dataclasses.dataclass
class Limits:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = MIN_SIDE


@dataclasses.dataclass
class Upload:
    label: str  # "infrared image" / "visible image"
    filename: str
    data: bytes

    @property
    def name(self):
        return f"{self.label} {self.filename!r}" if self.filename \
            else self.label


def megapixels(n):
    return f"{n / 1e6:.1f} Mpx"


def check_upload(upload, limits):
    """Header-only checks: not empty, an image, not above the pixel limit
    (a small file can hold a huge image), not below the smallest size.
    -> (width, height)."""
    from PIL import Image, UnidentifiedImageError

    if not upload.data:
        raise UploadError(f"{upload.name}: empty file (no image was sent)")
    try:
        with Image.open(io.BytesIO(upload.data)) as im:
            width, height = im.size
    except UnidentifiedImageError:
        raise UploadError(f"{upload.name}: not an image (PNG, JPEG, BMP or "
                          "TIFF expected)", status=415)
    except Exception as exc:  # truncated header, decompression bomb, ...
        raise UploadError(f"{upload.name}: unreadable image "
                          f"({one_line(exc)})")
    pixels = width * height
    if pixels > limits.max_pixels:
        raise TooLarge(f"{upload.name}: {width}x{height} (W x H) is "
                       f"{megapixels(pixels)}, more than this server's limit "
                       f"of {megapixels(limits.max_pixels)} per image")
    if min(width, height) < limits.min_side:
        raise UploadError(f"{upload.name}: {width}x{height} (W x H) is too "
                          f"small; at least {limits.min_side} pixels each "
                          "side")
    return width, height


# ---------------------------------------------------------------- fusers --
def memory_budget():
    """STDFusionNet's memory budget for one request: half the memory
    available now (as ``stdfusion-fuse``), but at least
    ``MIN_MEMORY_BUDGET``: the budget counts the TensorFlow runtime, which a
    running server has already paid for, so a busy machine must not refuse
    small pairs (large ones are fused in tiles)."""
    from .. import fusion

    return max(fusion.default_max_memory(), MIN_MEMORY_BUDGET)


class STDFusionNetEngine:
    """An STDFusionNet preset, read and saved as ``stdfusion-fuse`` does."""

    kind = "stdfusionnet"

    def __init__(self, preset):
        from .. import fusion
        from ..loading import load_model

        self.fuser = fusion.Fuser(load_model(preset),
                                  max_memory=memory_budget())
        self.fuser.warm_up()

    @staticmethod
    def fetch(preset, mirror=None):
        """A built-in preset fetched (from the mirror) and converted once."""
        from ..model import STDFusionNet

        if preset in presets.BUILTIN:
            group = presets.BUILTIN[preset]
            presets.resolve(preset, STDFusionNet,
                            mirror=mirror or assets.mirror_or_shared(group))

    def read(self, path, infrared):
        """[H, W] float32 on 0..255 (``images.read_gray``; 16-bit or float
        infrared images min-max mapped)."""
        return images.read_gray(path, ir_range="minmax" if infrared else None)

    @staticmethod
    def unit(gray):
        return np.asarray(gray, np.float32) / np.float32(255)

    def fuse(self, ir_unit, vi_gray, vi_path, color):
        from .. import fusion

        ir = np.asarray(ir_unit, np.float32) * np.float32(2) - np.float32(1)
        self.fuser.max_memory = memory_budget()  # what is free now
        fused = self.fuser(ir, images.scale_in(vi_gray))
        return fusion.to_image(fused, vi_path, color=color, inplace=True)


class DIFNEngine:
    """UMF-CMGR's DIFN, read and saved as its ``test_fuse`` does."""

    kind = "difn"

    def __init__(self, weights):
        from ..umf import pipeline
        from ..umf.weights import load_network

        _, model = load_network(weights, expect="difn")
        self.net = pipeline.DIFNFuser(model)
        z = np.zeros((16, 16), np.float32)
        self.net(z, z)  # traced once here, not in the first request

    def read(self, path, infrared):
        """uint8 [H, W] as ``cv2.imread(path, IMREAD_GRAYSCALE)``."""
        return images.read_gray_cv2(path)

    @staticmethod
    def unit(gray):
        return (np.asarray(gray, np.uint8) / 255.0).astype(np.float32)

    def fuse(self, ir_unit, vi_gray, vi_path, color):
        from ..umf import difn, pipeline

        fused = difn.to_uint8(tiled(self.net, ir_unit, self.unit(vi_gray)))
        return pipeline.merge_color(fused, vi_path) if color else fused


def tiled(net, a, b, tile=DIFN_TILE, halo=DIFN_HALO):
    """``net(a, b)`` of a stride-1 network on [H, W] images, in tiles of
    ``tile`` pixels with ``halo`` pixels of context each (clipped at the
    border, where the whole-image run sees zero padding too): the same
    output as one call whenever ``halo`` covers the receptive field."""
    h, w = a.shape
    if max(h, w) <= tile + 2 * halo:
        return net(a, b)
    out = np.empty((h, w), np.float32)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            y0, x0 = max(top - halo, 0), max(left - halo, 0)
            y1, x1 = min(bottom + halo, h), min(right + halo, w)
            part = net(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
            out[top:bottom, left:right] = part[top - y0:bottom - y0,
                                               left - x0:right - x0]
    return out


class Models:
    """The fuser choices, each model loaded on first use and then kept.

    STDFusionNet: every built-in preset (``presets.names()``); a built-in
    TF1 release is fetched once from the mirror (``$STDFUSION_MIRROR``, else
    ``../shared/upstream`` beside a clone, else GitHub) and cached under
    ``$KERAS_HOME``.  DIFN: ``difn_weights`` (a ``.pth`` or ``.weights.h5``
    file) when given, else the public UMF-CMGR retrain (asset group
    ``umf_weights``: ``$STDFUSION_UMF_MIRROR``, ``../shared/umf-cmgr``, or
    GitHub), fetched once into the Keras cache."""

    def __init__(self, difn_weights=None, mirror=None):
        self.difn_weights = difn_weights
        self.mirror = mirror
        self._loaded = {}
        self._failed = {}  # name -> one-line reason (e.g. offline)
        self._lock = threading.Lock()

    def names(self):
        return presets.names() + [DIFN]

    def default(self):
        return presets.DEFAULT_PRESET

    def _difn_asset(self):
        entry = next(e for e in assets.manifest()["groups"]["umf_weights"]
                     if e["dest"].endswith("fus_0200.pth"))
        return entry, presets.cache_root() / entry["dest"]

    def _local(self, name):
        """Whether ``name`` loads without the network (None: not known)."""
        if name == DIFN:
            if self.difn_weights:
                return os.path.isfile(self.difn_weights)
            entry, cached = self._difn_asset()
            mirror = assets.mirror_or_shared("umf_weights")
            return cached.is_file() or bool(
                mirror and os.path.isfile(os.path.join(mirror,
                                                       entry["mirror"])))
        if name in presets.PROJECT_BUILTIN:
            return True
        if (presets.cache_root() / "presets" / name).is_dir():
            return True
        mirror = self.mirror or assets.mirror_or_shared(presets.BUILTIN[name])
        return bool(mirror and os.path.isdir(mirror))

    def choices(self):
        """[{name, label, available, note}] for the page's fuser menu."""
        out = []
        for name in self.names():
            label = ("DIFN (UMF-CMGR, public retrain weights)"
                     if name == DIFN and not self.difn_weights else
                     f"DIFN (UMF-CMGR, {os.path.basename(self.difn_weights)})"
                     if name == DIFN else f"STDFusionNet {name}")
            if name in self._failed:
                available, note = False, self._failed[name]
            elif name in self._loaded or self._local(name):
                available, note = True, ""
            else:
                available, note = True, ("weights not on this machine: "
                                         "fetched on first use (needs the "
                                         "network)")
            out.append({"name": name, "label": label, "available": available,
                        "note": note})
        return out

    def get(self, name):
        if name not in self.names():
            raise UploadError(f"fuser {name!r} unknown; choose one of "
                              f"{', '.join(self.names())}", status=400)
        with self._lock:
            if name in self._loaded:
                return self._loaded[name], 0.0
            if name in self._failed:
                raise Unavailable(f"fuser {name!r} unavailable on this "
                                  f"server: {self._failed[name]}")
            start = time.perf_counter()
            try:  # a failure to get the weights (offline) is remembered
                source = self._weights(name)
            except InputError as exc:
                self._failed[name] = str(exc)
                raise Unavailable(f"fuser {name!r} unavailable on this "
                                  f"server: {exc}")
            try:
                engine = (DIFNEngine(source) if name == DIFN
                          else STDFusionNetEngine(source))
            except InputError as exc:  # bad weights file, memory, ...
                raise Unavailable(f"fuser {name!r} cannot be loaded: {exc}")
            self._loaded[name] = engine
            return engine, time.perf_counter() - start

    def _weights(self, name):
        """Fetch what ``name`` needs -> what its engine loads."""
        if name != DIFN:
            STDFusionNetEngine.fetch(name, self.mirror)
            return name
        if self.difn_weights:
            return self.difn_weights
        _, cached = self._difn_asset()
        assets.fetch("umf_weights", root=presets.cache_root(), verbose=False,
                     mirror=assets.mirror_or_shared("umf_weights"))
        return str(cached)


# -------------------------------------------------------------- pictures --
def to_u8(unit):
    return np.clip(np.rint(np.asarray(unit, np.float32) * 255), 0,
                   255).astype(np.uint8)


def checkerboard(a, b, cells=8):
    """``a`` and ``b`` (uint8 [H, W]) in alternate squares, ``cells`` along
    the shorter side."""
    h, w = a.shape
    side = max(8, min(h, w) // cells)
    yy, xx = np.ogrid[:h, :w]
    mask = ((yy // side) + (xx // side)) % 2 == 0
    return np.where(mask, a, b)


def colour_overlay(ir_u8, vi_u8):
    """Infrared in red and blue (magenta), visible in green: where edges
    coincide the picture is gray, misplaced edges show as coloured
    fringes."""
    return np.stack([ir_u8, vi_u8, ir_u8], axis=-1)


def global_flow(matrix, shape):
    """The displacement of the global transform alone, [2, H, W] (dy, dx)
    in the flow's convention."""
    h, w = shape
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    m = np.asarray(matrix, np.float64)
    z = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    x = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / z
    y = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / z
    return np.stack([y - ys, x - xs]).astype(np.float32)


def flow_picture(flow):
    """[2, H, W] displacement -> uint8 RGB: hue = direction, saturation =
    length relative to the largest (white = no displacement).  -> (picture,
    largest length in pixels)."""
    dy, dx = np.asarray(flow[0], np.float32), np.asarray(flow[1], np.float32)
    length = np.hypot(dx, dy)
    peak = float(length.max()) if length.size else 0.0
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    sat = length / peak if peak > 1e-6 else np.zeros_like(length)
    # HSV (value 1) -> RGB
    h6 = hue * 6
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = 1 - sat, 1 - sat * f, 1 - sat * (1 - f)
    one = np.ones_like(sat)
    table = [(one, t, p), (q, one, p), (p, one, t), (p, q, one),
             (t, p, one), (one, p, q)]
    rgb = np.zeros(sat.shape + (3,), np.float32)
    for k, planes in enumerate(table):
        sel = i == k
        for c in range(3):
            rgb[..., c][sel] = planes[c][sel]
    return to_u8(rgb), peak


def png(array):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


# ---------------------------------------------------------------- running --
@dataclasses.dataclass
class Result:
    id: str
    summary: dict
    files: dict  # file name -> bytes


MEDIA_TYPES = {".png": "image/png", ".npy": "application/octet-stream",
               ".json": "application/json"}


def register(ir, vi, method):
    """``registration.register_pair`` (imported on use: the registration
    library is optional for the page until a pair is sent)."""
    from ..registration import register_pair

    return register_pair(ir, vi, method=method)


class FusionService:
    """Uploads -> a ``Result`` (the fused PNG and the pictures), keeping the
    last ``RESULTS_KEPT`` results for download."""

    def __init__(self, models=None, limits=None):
        self.models = models or Models()
        self.limits = limits or Limits()
        self._results = collections.OrderedDict()
        self._results_lock = threading.Lock()

    def info(self):
        return {
            "fusers": self.models.choices(),
            "default_fuser": self.models.default(),
            "register": list(REGISTER_METHODS),
            "limits": dataclasses.asdict(self.limits),
        }

    def result(self, result_id):
        with self._results_lock:
            return self._results.get(result_id)

    def _keep(self, result):
        with self._results_lock:
            self._results[result.id] = result
            while len(self._results) > RESULTS_KEPT:
                self._results.popitem(last=False)

    def check(self, ir, vi, register_method="auto", fuser=None, color=False):
        """Everything that can be refused before any work."""
        if register_method not in REGISTER_METHODS:
            raise UploadError(f"register={register_method!r}: expected "
                              f"{' or '.join(REGISTER_METHODS)}", status=400)
        fuser = fuser or self.models.default()
        if fuser not in self.models.names():
            raise UploadError(f"fuser {fuser!r} unknown; choose one of "
                              f"{', '.join(self.models.names())}",
                              status=400)
        total = len(ir.data) + len(vi.data)
        if total > self.limits.max_upload_bytes:
            raise TooLarge(f"upload of {total / MIB:.1f} MB is more than "
                           "this server's limit of "
                           f"{self.limits.max_upload_bytes / MIB:.0f} MB")
        return check_upload(ir, self.limits), check_upload(vi, self.limits)

    def run(self, ir, vi, register_method="auto", fuser=None, color=False):
        """Both uploads -> Result.  Bad input raises ``UploadError``."""
        fuser = fuser or self.models.default()
        t = {}
        start = time.perf_counter()
        (iw, ih), (vw, vh) = self.check(ir, vi, register_method, fuser, color)
        engine, t["load model"] = self.models.get(fuser)
        with tempfile.TemporaryDirectory(prefix="stdfusion-web-") as tmp:
            paths = []
            for upload, stem in ((ir, "infrared"), (vi, "visible")):
                path = os.path.join(tmp, stem)
                with open(path, "wb") as f:
                    f.write(upload.data)
                paths.append(path)
            mark = time.perf_counter()
            ir_gray = _read(engine, paths[0], ir, infrared=True)
            vi_gray = _read(engine, paths[1], vi, infrared=False)
            t["decode"] = time.perf_counter() - mark

            mark = time.perf_counter()
            try:
                reg = register(engine.unit(ir_gray), engine.unit(vi_gray),
                               register_method)
            except InputError as exc:
                raise UploadError(f"registration: {exc}")
            t["register"] = time.perf_counter() - mark

            mark = time.perf_counter()
            try:
                fused = engine.fuse(reg.warped, vi_gray, paths[1], color)
            except InputError as exc:  # above the memory budget
                raise TooLarge(f"fusion: {exc}")
            t["fuse"] = time.perf_counter() - mark

        mark = time.perf_counter()
        files = {"fused.png": png(fused)}
        t["encode fused"] = time.perf_counter() - mark
        mark = time.perf_counter()
        pictures, peak = registration_files(reg, engine.unit(vi_gray))
        files.update(pictures)
        t["pictures"] = time.perf_counter() - mark
        t["total"] = time.perf_counter() - start

        summary = {
            "fuser": fuser,
            "color": bool(color),
            "infrared": {"name": ir.filename, "width": iw, "height": ih},
            "visible": {"name": vi.filename, "width": vw, "height": vh},
            "fused": {"width": int(fused.shape[1]),
                      "height": int(fused.shape[0])},
            "registration": {
                "requested": register_method,
                "method": str(reg.method),
                # None where no registration ran (method none: NaN)
                "confidence": finite_or_none(reg.confidence),
                "fallback": bool(reg.fallback),
                "matrix": np.asarray(reg.matrix, np.float64).tolist(),
                "largest_dense_displacement_px": round(peak, 3),
                "seconds": float(reg.seconds),
            },
            "seconds": {k: round(v, 4) for k, v in t.items()},
        }
        files["transform.json"] = json.dumps(
            {"matrix": summary["registration"]["matrix"],
             "confidence": summary["registration"]["confidence"],
             "fallback": summary["registration"]["fallback"],
             "method": summary["registration"]["method"]}, indent=2).encode()
        result = Result(uuid.uuid4().hex[:16], summary, files)
        summary["id"] = result.id
        summary["files"] = sorted(files)
        self._keep(result)
        return result


def registration_files(reg, vi_unit):
    """The pictures and files of a registration result: {name: bytes}, and
    the largest dense displacement beyond the global transform (pixels)."""
    ir_u8, vi_u8 = to_u8(reg.warped), to_u8(vi_unit)
    flow = np.asarray(reg.flow, np.float32)
    residual = flow - global_flow(reg.matrix, flow.shape[1:])
    flow_rgb, peak = flow_picture(residual)
    buf = io.BytesIO()
    np.save(buf, flow)
    return {"registered.png": png(ir_u8),
            "checkerboard.png": png(checkerboard(ir_u8, vi_u8)),
            "overlay.png": png(colour_overlay(ir_u8, vi_u8)),
            "flow.png": png(flow_rgb),
            "flow.npy": buf.getvalue()}, peak


def finite_or_none(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _read(engine, path, upload, infrared):
    try:
        return engine.read(path, infrared)
    except InputError as exc:
        raise UploadError(f"{upload.name}: {exc.problem}")
