"""Export STDFusionNet: SavedModel, TFLite (float, dynamic-range, int8) and
ONNX, each checked against the Keras model before it is written.

The command line is ``stdfusion-export`` (``stdfusion_tf.commands.export``);
this module holds the library logic.

Every exported model has the inputs ``ir`` and ``vi``, float32
[1, H, W, 1] in [-1, 1] for any H and W, and the output ``fused``, float32
[1, H, W, 1] in [-1, 1].  The int8 TFLite model quantises its inputs and
dequantises its output inside, so callers feed floats to every model.

* SavedModel (Keras ``ExportArchive``; batch [N, H, W, 1] there):
  ``serving_default`` as above, and ``fuse_uint8``: ``ir``, ``vi`` uint8
  [H, W] -> ``fused_minmax`` (upstream's min-max stretched saving) and
  ``fused_clip`` (``clip(round((y + 1) * 127.5))``), uint8 [H, W].
* ``stdfusion.tflite`` (float32), ``stdfusion_dynamic_range.tflite``
  (int8 weights, float activations), ``stdfusion_int8.tflite`` (int8
  weights per channel and int8 activations calibrated on training patches
  and their intensity inversions; the layers listed in
  ``INT8_FLOAT_LAYERS`` stay float) -- run with LiteRT (``ai-edge-litert``).
* ``stdfusion.onnx`` (opset ``ONNX_OPSET``, converted by tf2onnx) -- run
  with ONNX Runtime.

The export graph is the model with plain additions (``AddV2``, the training
spelling; see ``stdfusion_tf.model.residual_add``): the same arithmetic as
the inference graph, whose ``AddN`` sums serve TensorFlow's CPU fusion but
are not quantised by the TFLite converter.

Each file is written through a temporary file beside its target: it is
loaded and run on the verification pairs, and renamed into place only when
it meets its floor (``FLOAT_PSNR_FLOOR`` for float models, the caller's
floor for quantised ones); otherwise the target is left as it was.
"""

import os
import re

import numpy as np

SAVED_MODEL_TOLERANCE = 1e-5
# Float exports (TFLite float, ONNX) against Keras, dB on the 0..255 scale.
FLOAT_PSNR_FLOOR = 60.0
# Quantised models: the worst verification pair must reach this (dB) for
# the file to be written (stdfusion-export --min_psnr overrides it).
QUANTIZED_PSNR_FLOORS = {
    ("tflite", "dynamic"): 40.0,
    ("tflite", "int8"): 35.0,
    ("onnx", "int8"): 30.0,
}
ONNX_OPSET = 17
LITERT_THREADS = 2

FILE_NAMES = {
    ("tflite", "none"): "stdfusion.tflite",
    ("tflite", "dynamic"): "stdfusion_dynamic_range.tflite",
    ("tflite", "int8"): "stdfusion_int8.tflite",
    ("onnx", "none"): "stdfusion.onnx",
    ("onnx", "int8"): "stdfusion_int8.onnx",
}

# Ops of the int8 TFLite model kept in float (regular expressions on their
# output tensor names), found by measurement (docs/deployment.md): the
# reconstruction network's blocks 3 and 4 and block 2 but its 3x3 conv2,
# ~8 % of the multiply-adds.
_REC = r"reconstruction_network[^/]*/"
INT8_FLOAT_LAYERS = (
    _REC + r"block[34][^/]*/",
    _REC + r"block2[^/]*/(conv1|conv3|identity_conv)[^/]*/",
    _REC + r"block2[^/]*/(add|Elu)",
)
# --int8_float wide: also reconstruction block 1's 1x1 convs, its sum and
# ELU in float (~19 % of the multiply-adds in float in all).
INT8_FLOAT_LAYERS_WIDE = INT8_FLOAT_LAYERS + (
    _REC + r"block1[^/]*/(conv1|conv3|identity_conv)[^/]*/",
    _REC + r"block1[^/]*/(add|Elu)",
)
# int8 calibration: 128x128 training patch pairs, and (CALIBRATION_INVERT)
# the same pairs with inverted intensities.  The training images have no
# dark visible scenes; calibrated without the inversions, such a scene (TNO42
# pair 42, visible mean 23 gray levels) drives the visible branch's first
# block past its calibrated range (docs/deployment.md).
CALIBRATION_SIZE = 32
CALIBRATION_INVERT = True


class MissingPackage(ImportError):
    """An optional extra (onnx, litert) is not installed."""


class ConversionError(RuntimeError):
    """A converter's result is malformed (checked before it is run)."""


def _need(module, extra):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackage(
            f"{module} is not installed: pip install 'stdfusion-tf[{extra}]'"
        ) from exc


# -------------------------------------------------------------- graphs --

def export_function(model):
    """``tf.function(ir, vi) -> {"fused": ...}`` with the input signature
    ``ir``, ``vi`` float32 [1, None, None, 1] and plain additions."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, None, None, 1], tf.float32, name=n)
            for n in ("ir", "vi")]

    @tf.function(input_signature=spec)
    def fuse(ir, vi):
        # training=True only picks the AddV2 spelling of the additions
        # (the model has no dropout or normalisation).
        return {"fused": tf.cast(model((ir, vi), training=True), tf.float32)}

    return fuse


def _uint8_endpoint(model):
    import tensorflow as tf

    def fuse_uint8(ir, vi):
        x = [tf.cast(v, tf.float32)[None, :, :, None] / 127.5 - 1.0
             for v in (ir, vi)]
        y = (tf.cast(model((x[0], x[1]), training=False), tf.float32)[0, :, :, 0]
             + 1.0) * 127.5
        lo, hi = tf.reduce_min(y), tf.reduce_max(y)
        scale = 255.0 / tf.where(hi > lo, hi - lo, 1.0)
        minmax = tf.cast(tf.clip_by_value((y - lo) * scale, 0.0, 255.0) + 0.5,
                         tf.uint8)  # scipy.misc.bytescale
        clip = tf.cast(tf.clip_by_value(tf.round(y), 0.0, 255.0), tf.uint8)
        return {"fused_minmax": minmax, "fused_clip": clip}

    return fuse_uint8


# ---------------------------------------------------------- SavedModel --

def export_saved_model(model, path):
    """Write the SavedModel into a temporary folder beside ``path``, then
    swap it in: a failed export leaves ``path`` as it was."""
    import shutil
    import tempfile

    from .fileio import write_error

    path = os.path.abspath(str(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-saved_model-",
                           dir=os.path.dirname(path))
    try:
        try:
            _write_saved_model(model, tmp)
        except OSError as exc:
            raise write_error(path, exc) from exc
        except Exception as exc:  # TF's file errors are not OSErrors
            if "space" in str(exc).lower() or type(exc).__name__ in (
                    "ResourceExhaustedError", "PermissionDeniedError",
                    "FailedPreconditionError", "InternalError"):
                raise write_error(path, exc) from exc
            raise
        if os.path.isdir(path):
            old = tmp + "-old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_saved_model(model, path):
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    f32 = tf.TensorSpec([None, None, None, 1], tf.float32)
    u8 = tf.TensorSpec([None, None], tf.uint8)
    archive.add_endpoint(
        "serving_default",
        lambda ir, vi: {"fused": tf.cast(model((ir, vi), training=False),
                                         tf.float32)},
        input_signature=[tf.TensorSpec.from_spec(f32, "ir"),
                         tf.TensorSpec.from_spec(f32, "vi")])
    archive.add_endpoint(
        "fuse_uint8", _uint8_endpoint(model),
        input_signature=[tf.TensorSpec.from_spec(u8, "ir"),
                         tf.TensorSpec.from_spec(u8, "vi")])
    archive.write_out(str(path), verbose=False)
    return str(path)


class SavedModelFuser:
    """Run a SavedModel's ``serving_default`` on [H, W] float pairs."""

    def __init__(self, path):
        import tensorflow as tf

        self._tf = tf
        self.serve = tf.saved_model.load(str(path)).signatures[
            "serving_default"]

    def __call__(self, ir, vi):
        tf = self._tf
        return self.serve(ir=tf.constant(_batch(ir)),
                          vi=tf.constant(_batch(vi)))["fused"].numpy()[
                              0, :, :, 0]


# -------------------------------------------------------------- TFLite --

def calibration_patches(ir_dir, vi_dir, count=CALIBRATION_SIZE, size=128,
                        seed=0, invert=CALIBRATION_INVERT):
    """``count`` (ir, vi) training patch pairs, float32 [1, size, size, 1]
    each in [-1, 1], drawn without replacement (``seed``) from every patch
    position upstream's training cuts (stride 24) from the paired training
    folders; with ``invert``, followed by the same ``count`` pairs with
    their intensities inverted (``255 - gray``, i.e. ``-x``), 2 * ``count``
    pairs in all."""
    from . import data, images

    listing = data.check_folders([ir_dir, vi_dir])
    spots = []
    for i, name in enumerate(listing[0]):
        h, w = images.image_size(os.path.join(str(ir_dir), name))
        spots += [(i, r, c) for r, c in data.patch_origins(h, w, size)]
    if not spots:
        from .errors import InputError

        raise InputError(ir_dir, f"no {size}x{size} training patches")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(spots), min(count, len(spots)),
                             replace=False))
    cache, out = {}, []
    for k in pick:
        i, r, c = spots[k]
        if i not in cache:
            cache.clear()
            cache[i] = [data.scale_train(images.read_gray(os.path.join(
                str(d), names[i]))) for d, names in zip((ir_dir, vi_dir),
                                                        listing)]
        ir, vi = cache[i]
        out.append((ir[None, r:r + size, c:c + size, None],
                    vi[None, r:r + size, c:c + size, None]))
    return out + inverted(out) if invert else out


def inverted(pairs):
    """The (ir, vi) pairs with both intensities inverted (``-x`` in [-1, 1],
    ``255 - gray``): dark scenes, which the training images lack, for the
    int8 calibration ranges."""
    return [(-ir, -vi) for ir, vi in pairs]


def _tflite_converter(model, workdir, fn=None):
    """A converter for ``fn`` (default ``export_function(model)``), through
    a SavedModel in ``workdir`` (the converter keeps the signature and its
    names that way; from a concrete function it drops them)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    fn = fn or export_function(model)
    archive.add_endpoint("serving_default", fn.python_function,
                         input_signature=fn.input_signature)
    archive.write_out(workdir, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(
        workdir, signature_keys=["serving_default"])


def convert_tflite(model, quantize="none", calibration=None,
                   float_layers=None):
    """TFLite flatbuffer bytes of ``model``.

    ``quantize``: ``"none"`` (float32), ``"dynamic"`` (int8 weights, float
    activations) or ``"int8"`` (int8 weights per output channel, int8
    activations calibrated on ``calibration``, a list of (ir, vi) [1, h, w,
    1] pairs; float inputs and output).  ``float_layers`` (int8 only):
    regular expressions; the ops whose output tensor name matches one stay
    float (default ``INT8_FLOAT_LAYERS``).  int8 starts from
    ``int8_model(model, calibration)`` (range equalisation)."""
    import tempfile

    if quantize == "int8" and calibration:
        model = int8_model(model, calibration)
    with tempfile.TemporaryDirectory(prefix="stdfusion-export-") as tmp:
        return _convert_tflite(_tflite_converter(model, tmp), quantize,
                               calibration, float_layers)


def _convert_tflite(converter, quantize, calibration, float_layers):
    import tensorflow as tf

    if quantize == "none":
        return converter.convert()
    if quantize not in ("dynamic", "int8"):
        raise ValueError(f"quantize must be none, dynamic or int8, "
                         f"not {quantize!r}")
    nodes = None
    if quantize == "int8":
        if not calibration:
            raise ValueError("int8 needs calibration pairs")
        patterns = (INT8_FLOAT_LAYERS if float_layers is None
                    else tuple(float_layers))
        if patterns:
            # the float model's op outputs whose names match
            interp = _litert_interpreter(None, content=converter.convert())
            order = [d["name"] for d in interp.get_input_details()]
            nodes = [d["name"] for d in interp.get_tensor_details()
                     if any(re.search(p, d["name"]) for p in patterns)]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "dynamic":
        return converter.convert()

    def representative():
        for ir, vi in calibration:
            yield {"ir": ir, "vi": vi}

    converter.representative_dataset = representative
    # int8 kernels, float where an op has none or is left in float
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    if not nodes:
        return converter.convert()

    def debug_inputs():  # a list in the model's input order
        for ir, vi in calibration[:1]:
            yield [ir if _input_key(n) == "ir" else vi for n in order]

    # Selective quantisation, the documented way: the debugger calibrates
    # once and quantises every op but the denylisted ones.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=debug_inputs,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=nodes))
    return debugger.get_nondebug_quantized_model()


def _input_key(tensor_name):
    """``serving_default_ir:0`` -> ``ir``."""
    return tensor_name.split(":")[0].rsplit("_", 1)[-1]


def _litert_interpreter(path, content=None, threads=LITERT_THREADS):
    interpreter = _need("ai_edge_litert.interpreter", "litert").Interpreter
    if content is not None:
        return interpreter(model_content=content, num_threads=threads)
    return interpreter(model_path=str(path), num_threads=threads)


class LiteRTFuser:
    """Run a .tflite model (path or bytes) with LiteRT on [H, W] float
    pairs; the inputs are resized (``resize_tensor_input``) whenever the
    image size changes."""

    def __init__(self, path=None, content=None, threads=LITERT_THREADS):
        self.interpreter = _litert_interpreter(path, content, threads)
        names = {}
        for d in self.interpreter.get_input_details():
            for key in ("ir", "vi"):
                if _input_key(d["name"]) == key:
                    names[key] = d["index"]
        if sorted(names) != ["ir", "vi"]:
            raise ValueError("not a stdfusion model: inputs "
                             f"{[d['name'] for d in self.interpreter.get_input_details()]}")
        self.inputs = names
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    def __call__(self, ir, vi):
        shape = (1,) + tuple(np.shape(ir)) + (1,)
        it = self.interpreter
        if shape != self.shape:
            for index in self.inputs.values():
                it.resize_tensor_input(index, shape, strict=True)
            it.allocate_tensors()
            self.shape = shape
        it.set_tensor(self.inputs["ir"], _batch(ir))
        it.set_tensor(self.inputs["vi"], _batch(vi))
        it.invoke()
        return it.get_tensor(self.output)[0, :, :, 0]


# ---------------------------------------------------------------- ONNX --

# tf2onnx 1.17 is not deterministic here: in about one conversion in
# twenty (varying between runs of the same process, whatever
# PYTHONHASHSEED), its optimiser drops the Squeeze that ends the chain it
# builds for the last NCHW -> NHWC transpose, and the graph's output comes
# out as [1, 1, H, W, 1] instead of [1, H, W, 1] -- a model that runs and
# is wrong (24.6 dB against Keras on the verification pairs).  The
# converted graph's output ranks are therefore checked against the traced
# function's, and the conversion is repeated up to this many times.
ONNX_CONVERSION_TRIES = 4


def convert_onnx(model, opset=ONNX_OPSET, fn=None):
    """ONNX ModelProto bytes of ``fn`` (default ``export_function(model)``:
    inputs ``ir``, ``vi``, output ``fused``), converted by tf2onnx.

    Raises ``ConversionError`` if no conversion in ``ONNX_CONVERSION_TRIES``
    gives outputs of the traced function's ranks."""
    tf2onnx = _need("tf2onnx", "onnx")

    fn = fn or export_function(model)
    structured = fn.get_concrete_function().structured_outputs
    # tf.nest order (sorted keys), as tf2onnx flattens the outputs
    keys = sorted(structured)
    want = [structured[k].shape.rank for k in keys]
    for _ in range(ONNX_CONVERSION_TRIES):
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=opset,
            output_path=None)
        got = onnx_output_ranks(proto)
        if got == want:
            break
    else:
        raise ConversionError(f"tf2onnx gave outputs of ranks {got} in "
                              f"{ONNX_CONVERSION_TRIES} conversions, the "
                              f"model's are {want}")
    for i, key in enumerate(keys):
        _rename_output(proto, key, i)
    return proto.SerializeToString()


def onnx_output_ranks(proto):
    """[rank of each graph output] of an ONNX ModelProto."""
    return [len(o.type.tensor_type.shape.dim) for o in proto.graph.output]


def _rename_output(proto, name, index=0):
    old = proto.graph.output[index].name
    if old == name:
        return proto
    for node in proto.graph.node:
        for i, o in enumerate(node.output):
            if o == old:
                node.output[i] = name
        for i, o in enumerate(node.input):
            if o == old:
                node.input[i] = name
    proto.graph.output[index].name = name
    return proto


class OnnxFuser:
    """Run a .onnx model (path or bytes) with ONNX Runtime on [H, W] float
    pairs (``threads`` intra-op threads)."""

    def __init__(self, path=None, content=None, threads=LITERT_THREADS):
        ort = _need("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            content if content is not None else str(path), options,
            providers=["CPUExecutionProvider"])
        self.output = self.session.get_outputs()[0].name

    def __call__(self, ir, vi):
        return self.session.run([self.output], {
            "ir": _batch(ir), "vi": _batch(vi)})[0][0, :, :, 0]


def convert_onnx_int8(model, calibration, float_layers=None):
    """ONNX Runtime's static QDQ int8 model (bytes) of ``model``, from the
    same range-equalised copy as the int8 TFLite model; the nodes matching
    ``float_layers`` (default ``INT8_FLOAT_LAYERS_WIDE``) stay float."""
    return quantize_onnx_int8(
        convert_onnx(int8_model(model, calibration)), calibration,
        INT8_FLOAT_LAYERS_WIDE if float_layers is None else float_layers)


def _onnx_layer_names(float_onnx):
    """[(node, its TensorFlow name)] of the float ONNX model bytes.

    tf2onnx names most nodes after the TensorFlow ops, so the TFLite
    patterns (on tensor names) select the same layers.  The convolutions it
    rebuilds (bias and activation folded) get generated names such as
    ``Conv__432``; they take the name of their kernel (``.../block2/conv3/
    Cast/ReadVariableOp``), other generated nodes the name of the first
    named node downstream.
    """
    import onnx

    graph = onnx.load_from_string(float_onnx).graph
    consumer = {}
    for n in graph.node:
        for i in n.input:
            consumer.setdefault(i, n)

    def name(n):
        for _ in range(len(graph.node)):
            if n.op_type == "Conv" and len(n.input) > 1 and "/" in n.input[1]:
                return n.input[1]
            if "/" in n.name or not n.output or n.output[0] not in consumer:
                return n.name
            n = consumer[n.output[0]]
        return n.name

    return [(n, name(n)) for n in graph.node]


def quantize_onnx_int8(float_onnx, calibration, float_layers=()):
    """ONNX Runtime's static QDQ int8 (per-channel weights, int8
    activations, calibrated on ``calibration``) of the float ONNX model
    bytes, the nodes whose names match a pattern of ``float_layers`` left
    float; returns bytes."""
    _need("onnxruntime", "onnx")
    import tempfile

    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            pair = next(self.it, None)
            return None if pair is None else {"ir": pair[0], "vi": pair[1]}

    exclude = [n.name for n, name in _onnx_layer_names(float_onnx)
               if any(re.search(p, name) for p in float_layers)]
    if float_layers and not exclude:
        raise ValueError(f"no ONNX node matches the float layers "
                         f"{tuple(float_layers)!r}")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = (os.path.join(tmp, n) for n in ("f.onnx", "q.onnx"))
        with open(src, "wb") as f:
            f.write(float_onnx)
        q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ,
                          per_channel=True,
                          activation_type=q.QuantType.QInt8,
                          weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=exclude)
        with open(dst, "rb") as f:
            return f.read()


# -------------------------------------------------------- verification --

def _batch(x):
    return np.ascontiguousarray(np.asarray(x, np.float32)[None, :, :, None])


def psnr(a, b):
    """PSNR (dB) between two fused images in [-1, 1], on the 0..255 scale."""
    mse = np.mean(((a - b) * 127.5) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))


def verify(reference, candidate, pairs):
    """(max abs diff, min PSNR) of ``candidate`` against ``reference`` over
    the [(ir, vi)] float pairs; ``reference`` may also be a list of the
    reference outputs."""
    worst, low = 0.0, float("inf")
    for k, (ir, vi) in enumerate(pairs):
        a = reference[k] if isinstance(reference, list) else reference(ir, vi)
        b = candidate(ir, vi)
        worst = max(worst, float(np.abs(a - b).max()))
        low = min(low, psnr(a, b))
    return worst, low


def test_pairs(ir_dir, vi_dir):
    from . import images
    from .fusion import check_pairs

    _, paths = check_pairs(ir_dir, vi_dir)
    return [(images.scale_in(images.read_gray(i)),
             images.scale_in(images.read_gray(v))) for i, v in paths]


def write_verified(path, content, runner, reference, pairs, floor):
    """Write ``content`` (bytes) to ``path`` only if ``runner(tmp_path)``
    (a fuser built from the written temporary file) reaches ``floor`` dB
    PSNR against ``reference`` on every pair.  Returns (max abs diff, min
    PSNR); raises ``InputError`` (``path`` untouched) below the floor."""
    from .errors import InputError
    from .fileio import atomic_output

    with atomic_output(path, suffix=os.path.splitext(str(path))[1]) as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
        diff, low = verify(reference, runner(tmp), pairs)
        if not low >= floor:
            raise InputError(path, f"not written: {low:.1f} dB PSNR against "
                             f"the Keras model on {len(pairs)} pairs, below "
                             f"the {floor:g} dB floor")
    return diff, low


# ------------------------------------------------- range equalisation --

def activation_ranges(model, calibration):
    """{(block, conv): per-channel max |activation|} of the leaky-ReLU
    outputs of every block's ``conv1`` and ``conv2`` over ``calibration``."""
    import tensorflow as tf

    stats = {}

    def note(key, a):
        m = tf.reduce_max(tf.abs(a), axis=(0, 1, 2)).numpy()
        stats[key] = np.maximum(stats.get(key, 0), m)

    def blocks(net, x, prefix):
        for block in net.blocks:
            a1 = block.conv1(x)
            a2 = block.conv2(a1)
            note((prefix, block.name, "conv1"), a1)
            note((prefix, block.name, "conv2"), a2)
            x = block(x)
        return x

    for ir, vi in calibration:
        feats = []
        for net, x in ((model.vi_extraction_network, vi),
                       (model.ir_extraction_network, ir)):
            feats.append(blocks(net, net.conv1(tf.constant(x)), net.name))
        blocks(model.reconstruction_network, tf.concat(feats, -1),
               model.reconstruction_network.name)
    return stats


def equalize_ranges(model, calibration, strength=1.0):
    """Rescale, in place, the channels between each block's ``conv1`` ->
    ``conv2`` and ``conv2`` -> ``conv3`` so that the per-channel activation
    ranges come closer together (cross-layer equalisation; leaky ReLU is
    positively homogeneous, so the function is unchanged up to float
    rounding).  Channel i of the first conv is divided by
    ``s_i = (r_i / max r) ** strength`` and the matching input channel of
    the next conv multiplied by it (``r``: the channel's activation range
    on ``calibration``).  One per-tensor int8 scale then fits every
    channel better."""
    stats = activation_ranges(model, calibration)
    for net in (model.vi_extraction_network, model.ir_extraction_network,
                model.reconstruction_network):
        for block in net.blocks:
            for first, second in (("conv1", block.conv2),
                                  ("conv2", block.conv3)):
                conv = getattr(block, first)
                r = stats[(net.name, block.name, first)]
                s = np.ones_like(r)
                live = r > 0
                s[live] = (r[live] / r.max()) ** strength
                s = s.astype(np.float32)
                conv.w.assign(conv.w.numpy() / s)
                conv.b.assign(conv.b.numpy() / s)
                second.w.assign(second.w.numpy() * s[None, None, :, None])
    return model


def int8_model(model, calibration):
    """A float32 copy of ``model`` with its ranges equalised on
    ``calibration`` (``equalize_ranges``): the same function, better suited
    to per-tensor int8 activations.  Both int8 exports start from it."""
    from .model import STDFusionNet

    copy = STDFusionNet(paper_activations=model.paper_activations)
    copy.set_weights([w.numpy() for w in model.weights])
    return equalize_ranges(copy, calibration)


# ------------------------------------------------------ UMF-CMGR nets --

def umf_function(model, kind, size=None):
    """The export signature of a UMF-CMGR network, batch 1, any H and W
    (``size=None``) or a fixed ``(H, W)``:

    * ``difn``: ``ir``, ``vi`` float32 [1, H, W, 1] in [0, 1] -> ``fused``
      [1, H, W, 1] in [-1, 1];
    * ``mrrn``: ``tgt`` (pseudo-infrared), ``src`` (distorted infrared)
      float32 [1, H, W, 1] in [0, 1] -> ``registered`` [1, H, W, 1] and
      ``flow`` [1, H, W, 2] (pixels; channel 0 rows, 1 columns).

    The TFLite converter fails on MRRN at any size (it does not legalise
    the ``tf.StridedSlice`` that crops the padded flow back); a fixed size
    whose sides are multiples of 4 has no padding and converts."""
    import tensorflow as tf

    names = {"difn": ("ir", "vi"), "mrrn": ("tgt", "src")}[kind]
    h, w = size or (None, None)
    spec = [tf.TensorSpec([1, h, w, 1], tf.float32, name=n)
            for n in names]
    if kind == "difn":
        @tf.function(input_signature=spec)
        def fn(ir, vi):
            return {"fused": model((ir, vi))}
    else:
        @tf.function(input_signature=spec)
        def fn(tgt, src):
            registered, _, flow = model((tgt, src))
            return {"flow": flow, "registered": registered}
    return fn


def convert_umf(model, kind, fmt, size=None):
    """A UMF-CMGR network as float ``fmt`` ("tflite" or "onnx") bytes
    (``size``: see ``umf_function``)."""
    fn = umf_function(model, kind, size)
    if fmt == "onnx":
        return convert_onnx(model, fn=fn)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="stdfusion-export-") as tmp:
        return _tflite_converter(model, tmp, fn=fn).convert()


class UmfRunner:
    """Run an exported UMF-CMGR network (.tflite in LiteRT or .onnx in ONNX
    Runtime, path or bytes) on [H, W] float pairs in [0, 1]; returns its
    outputs (sorted by name) stacked on the last axis, [H, W, C]."""

    def __init__(self, kind, path=None, content=None, threads=LITERT_THREADS):
        self.names = {"difn": ("ir", "vi"), "mrrn": ("tgt", "src")}[kind]
        if content is None:
            with open(str(path), "rb") as f:
                head = f.read(8)
        else:
            head = content[:8]
        if head[4:8] == b"TFL3":  # the TFLite flatbuffer identifier
            interp = _litert_interpreter(path, content, threads)
            runner = interp.get_signature_runner("serving_default")
            self.run = lambda feeds: runner(**feeds)  # resizes the inputs
        else:
            session = OnnxFuser(path, content, threads).session
            outputs = [o.name for o in session.get_outputs()]
            self.run = lambda feeds: dict(zip(outputs,
                                              session.run(None, feeds)))

    def __call__(self, a, b):
        out = self.run({n: _batch(x) for n, x in zip(self.names, (a, b))})
        return np.concatenate([out[k][0] for k in sorted(out)], axis=-1)


def umf_reference(model, kind, size=None):
    """The Keras counterpart of ``UmfRunner``."""
    fn = umf_function(model, kind, size)

    def run(a, b):
        import tensorflow as tf

        out = fn(tf.constant(_batch(a)), tf.constant(_batch(b)))
        return np.concatenate([out[k].numpy()[0] for k in sorted(out)],
                              axis=-1)
    return run
