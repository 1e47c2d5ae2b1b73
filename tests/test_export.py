"""stdfusion_tf.export and stdfusion-export: SavedModel, TFLite (LiteRT) and
ONNX (ONNX Runtime) models against the Keras model.

The LiteRT and ONNX tests need the optional extras (pip install
'stdfusion-tf[litert,onnx]') and are skipped only when those packages are
absent.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import (RELEASES, ROOT, SHARED, UPSTREAM, assert_one_line_error,
                      run_cli, write_gray)
from stdfusion_tf import export, fusion, images
from stdfusion_tf.errors import InputError
from stdfusion_tf.loading import load_model

HAVE_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
HAVE_ONNX = all(importlib.util.find_spec(m) is not None
                for m in ("tf2onnx", "onnx", "onnxruntime"))
needs_litert = pytest.mark.skipif(
    not HAVE_LITERT, reason="ai-edge-litert not installed ([litert] extra)")
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="tf2onnx / onnxruntime not installed ([onnx] extra)")

# Worst-pair PSNR floor (dB) of the int8 TFLite model against Keras in the
# default run (8 calibration patches); the slow full check uses the
# command's defaults and its floor.
INT8_TEST_FLOOR = 35.0
FILES = {("saved_model", "none"): "saved_model",
         ("tflite", "none"): "stdfusion.tflite",
         ("tflite", "dynamic"): "stdfusion_dynamic_range.tflite",
         ("tflite", "int8"): "stdfusion_int8.tflite",
         ("onnx", "none"): "stdfusion.onnx",
         ("onnx", "int8"): "stdfusion_int8.onnx"}


@pytest.fixture(scope="module")
def model(released_arrays):
    return load_model(RELEASES["jiayi-ma"])


@pytest.fixture(scope="module")
def keras_fuser(model):
    return fusion.Fuser(model)


@pytest.fixture(scope="module")
def two_sizes(upstream):
    """Test pair 09 (360x270) whole and a 131x97 crop of it."""
    ir, vi = export.test_pairs(upstream / "Test_ir", upstream / "Test_vi")[8]
    return [(ir, vi), (ir[40:137, 60:191], vi[40:137, 60:191])]


def _pair_folders(folder, two_sizes):
    """The two sizes as PNG verification pairs for the command."""
    for stem, (ir, vi) in zip(("a", "b"), two_sizes):
        for d, x in (("ir", ir), ("vi", vi)):
            write_gray(folder / d / f"{stem}.png",
                       np.round((x + 1) * 127.5).astype(np.uint8))
    return ["--ir_dir", folder / "ir", "--vi_dir", folder / "vi"]


def _export(cwd, out, pair_flags, *args):
    return run_cli("-m", "stdfusion_tf.commands.export", "--checkpoint",
                   RELEASES["jiayi-ma"], *pair_flags, "--output_dir", out,
                   *args, cwd=cwd)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, two_sizes, released_arrays):
    """stdfusion-export run once per file (the formats whose runtime is
    installed) into one folder, verified on the two sizes: (folder, the
    verification pairs as read back, {file: stdout})."""
    tmp = tmp_path_factory.mktemp("exported")
    flags = _pair_folders(tmp, two_sizes)
    out, logs = tmp / "export", {}
    for (fmt, quantize), name in FILES.items():
        if fmt == "tflite" and not HAVE_LITERT or \
                fmt == "onnx" and not HAVE_ONNX:
            continue
        extra = ["--calibration_ir_dir", UPSTREAM / "Train_ir",
                 "--calibration_vi_dir", UPSTREAM / "Train_vi",
                 "--calibration_size", 8] if quantize == "int8" else []
        proc = _export(tmp, out, flags, "--format", fmt, "--quantize",
                       quantize, *extra)
        if proc.returncode != 0:  # pytest.fail: the whole message shown
            pytest.fail(f"{name}: exit {proc.returncode}\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        logs[name] = proc.stdout + proc.stderr
    pairs = export.test_pairs(tmp / "ir", tmp / "vi")
    return out, pairs, logs


# ----------------------------------------------------------- SavedModel --

def test_command_writes_saved_model(model, keras_fuser, exported):
    out, pairs, logs = exported
    assert "SavedModel" in logs["saved_model"]
    diff, _ = export.verify(keras_fuser,
                            export.SavedModelFuser(out / "saved_model"), pairs)
    assert diff <= export.SAVED_MODEL_TOLERANCE
    # the uint8 convenience signature: upstream's min-max and plain clip
    u8 = tf.saved_model.load(str(out / "saved_model")).signatures["fuse_uint8"]
    ir, vi = pairs[1]
    ir8, vi8 = (np.round((x + 1) * 127.5).astype(np.uint8) for x in (ir, vi))
    got = u8(ir=tf.constant(ir8), vi=tf.constant(vi8))
    fused = keras_fuser(images.scale_in(ir8), images.scale_in(vi8))
    for key, mode in (("fused_minmax", "minmax"), ("fused_clip", "clip")):
        want = images.to_uint8(fused, mode).astype(int)
        assert np.abs(got[key].numpy().astype(int) - want).max() <= 1, key


def test_saved_model_cli_lists_signatures(exported):
    """`saved_model_cli show --all` (the console script TensorFlow installs
    next to this Python) lists both signatures."""
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    proc = subprocess.run([cli, "show", "--dir", exported[0] / "saved_model",
                           "--all"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    for needle in ("signature_def['serving_default']",
                   "signature_def['fuse_uint8']", "outputs['fused']",
                   "outputs['fused_minmax']", "shape: (-1, -1, -1, 1)"):
        assert needle in proc.stdout, needle


# ------------------------------------------------------- TFLite, ONNX --

def test_export_graph_has_plain_adds(model):
    graph = export.export_function(model).get_concrete_function().graph
    ops = {op.type for op in graph.get_operations()}
    assert "AddN" not in ops and "AddV2" in ops


@needs_litert
def test_tflite_float_matches_keras_at_two_sizes(keras_fuser, exported):
    out, pairs, logs = exported
    assert "float32" in logs["stdfusion.tflite"]
    runner = export.LiteRTFuser(out / "stdfusion.tflite")
    for pair in pairs:  # the second size resizes the inputs
        diff, low = export.verify(keras_fuser, runner, [pair])
        assert low >= export.FLOAT_PSNR_FLOOR and diff <= 1e-4, pair[0].shape


@needs_litert
def test_tflite_dynamic_range(keras_fuser, exported):
    out, pairs, logs = exported
    assert "dynamic-range quantised" in logs["stdfusion_dynamic_range.tflite"]
    _, low = export.verify(keras_fuser, export.LiteRTFuser(
        out / "stdfusion_dynamic_range.tflite"), pairs)
    assert low >= export.QUANTIZED_PSNR_FLOORS["tflite", "dynamic"]


@needs_onnx
def test_onnx_float_matches_keras_at_two_sizes(keras_fuser, exported):
    import onnx

    out, pairs, logs = exported
    assert "float32" in logs["stdfusion.onnx"]
    proto = onnx.load(str(out / "stdfusion.onnx"))
    assert [i.name for i in proto.graph.input] == ["ir", "vi"]
    assert [o.name for o in proto.graph.output] == ["fused"]
    assert proto.opset_import[0].version >= 16
    runner = export.OnnxFuser(out / "stdfusion.onnx")
    for pair in pairs:
        diff, low = export.verify(keras_fuser, runner, [pair])
        assert low >= export.FLOAT_PSNR_FLOOR and diff <= 1e-4, pair[0].shape


@needs_litert
def test_int8_tflite_psnr(keras_fuser, exported):
    out, pairs, logs = exported
    path = out / "stdfusion_int8.tflite"
    interp = export._litert_interpreter(path)
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert "ADD_N" not in ops and "ADD" in ops
    # float in, float out: quantised inside
    assert all(d["dtype"] == np.float32 for d in
               interp.get_input_details() + interp.get_output_details())
    _, low = export.verify(keras_fuser, export.LiteRTFuser(path), pairs)
    print(f"int8 TFLite (8 calibration patches): worst PSNR {low:.1f} dB "
          f"against Keras (floor {INT8_TEST_FLOOR:g})")
    assert low >= INT8_TEST_FLOOR


@needs_onnx
def test_int8_onnx_psnr(keras_fuser, exported):
    out, pairs, logs = exported
    _, low = export.verify(keras_fuser, export.OnnxFuser(
        out / "stdfusion_int8.onnx"), pairs)
    print(f"int8 ONNX Runtime QDQ (8 calibration patches): worst PSNR "
          f"{low:.1f} dB against Keras")
    assert low >= export.QUANTIZED_PSNR_FLOORS["onnx", "int8"]
    # the wide float layers' convolutions take float weights, the others
    # dequantised int8 ones
    import onnx

    float_convs = {n.name for n, name in export._onnx_layer_names(
        (out / "stdfusion.onnx").read_bytes()) if n.op_type == "Conv" and any(
            re.search(p, name) for p in export.INT8_FLOAT_LAYERS_WIDE)}
    # blocks 3 and 4 whole (4 convs each), blocks 1 and 2 their 1x1 convs
    assert len(float_convs) == 14, sorted(float_convs)
    graph = onnx.load(str(out / "stdfusion_int8.onnx")).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert float_convs < {n.name for n in convs}
    for n in convs:
        weight_from = made_by.get(n.input[1])
        assert (weight_from != "DequantizeLinear") == (n.name in float_convs), \
            (n.name, weight_from)


@needs_onnx
def test_onnx_float_layers_must_match(model, upstream):
    calibration = export.calibration_patches(
        upstream / "Train_ir", upstream / "Train_vi", count=1, invert=False)
    with pytest.raises(ValueError, match="no ONNX node matches"):
        export.quantize_onnx_int8(export.convert_onnx(model), calibration,
                                  float_layers=("no_such_layer",))


def test_equalize_ranges_keeps_the_function(model, keras_fuser, two_sizes,
                                            upstream):
    calibration = export.calibration_patches(
        upstream / "Train_ir", upstream / "Train_vi", count=2)
    other = export.int8_model(model, calibration)
    w = other.reconstruction_network.blocks[0].conv2.w.numpy()
    assert not np.allclose(w, model.reconstruction_network.blocks[0]
                           .conv2.w.numpy())
    _, low = export.verify(keras_fuser, fusion.Fuser(other), two_sizes[1:])
    assert low >= 100


# ------------------------------------------------ refusal, atomic write --

def test_write_verified_refuses_below_floor(tmp_path, two_sizes):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous")
    reference = [ir for ir, _ in two_sizes]
    noisy = (lambda path: lambda ir, vi: ir + 0.1)
    with pytest.raises(InputError, match="not written.*below the 60 dB"):
        export.write_verified(target, b"new", noisy, reference, two_sizes, 60)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]
    exact = (lambda path: lambda ir, vi: ir)
    diff, low = export.write_verified(target, b"new", exact, reference,
                                      two_sizes, 60)
    assert target.read_bytes() == b"new" and diff == 0 and low == np.inf


def _without_final_squeeze(proto):
    """The defect tf2onnx sometimes produces: the Squeeze that ends the last
    transpose chain dropped, the output [1, 1, H, W, 1]."""
    import onnx

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph, out = proto.graph, proto.graph.output[0]
    if export.onnx_output_ranks(proto) == [5]:  # tf2onnx did it already
        return proto
    last = next(n for n in graph.node if out.name in n.output)
    assert last.op_type == "Squeeze"
    graph.node.remove(last)
    out.name = last.input[0]
    out.type.tensor_type.shape.dim.insert(1, onnx.TensorShapeProto.Dimension(
        dim_value=1))
    return proto


@needs_onnx
def test_onnx_conversion_repeated_when_tf2onnx_drops_a_node(
        model, two_sizes, keras_fuser, monkeypatch):
    """A conversion whose output rank is not the model's is repeated; one
    that never gets it right is refused."""
    import tf2onnx

    real, calls = tf2onnx.convert.from_function, []

    def first_defective(*args, **kwargs):
        proto, other = real(*args, **kwargs)
        calls.append(proto)
        return (_without_final_squeeze(proto) if len(calls) == 1
                else proto), other

    monkeypatch.setattr(tf2onnx.convert, "from_function", first_defective)
    content = export.convert_onnx(model)
    assert len(calls) >= 2  # more where tf2onnx itself erred again
    fuser = export.OnnxFuser(content=content)
    ir, vi = two_sizes[1]
    assert export.psnr(fuser(ir, vi), keras_fuser(ir, vi)) > 100
    # the defective graph itself runs and is wrong, as seen from tf2onnx
    bad = export.OnnxFuser(content=_without_final_squeeze(
        calls[0]).SerializeToString())
    assert np.asarray(bad(ir, vi)).shape != ir.shape

    monkeypatch.setattr(tf2onnx.convert, "from_function", lambda *a, **k: (
        _without_final_squeeze(real(*a, **k)[0]), None))
    with pytest.raises(export.ConversionError, match=r"ranks \[5\] in 4 conversions"
                       r", the model's are \[4\]"):
        export.convert_onnx(model)


# ------------------------------------------------------------ command --

def test_command_keeps_files_and_refuses_bad_flags(exported, tmp_path):
    out, _, _ = exported
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    flags = ["--ir_dir", tmp_path, "--vi_dir", tmp_path]
    for name in ("saved_model", "stdfusion.tflite"):
        if (out / name).exists():  # kept unless --overwrite
            fmt = "saved_model" if name == "saved_model" else "tflite"
            proc = _export(tmp_path, out, flags, "--format", fmt)
            assert_one_line_error(proc, out / name, "--overwrite")
    proc = _export(tmp_path, out, flags, "--format", "saved_model",
                   "--quantize", "int8")
    assert_one_line_error(proc, "--quantize int8", "float32 only")
    proc = _export(tmp_path, out, flags, "--format", "onnx", "--quantize",
                   "dynamic")
    assert_one_line_error(proc, "--quantize dynamic", "not available")
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    proc = _export(tmp_path, blocker, flags, "--format", "tflite")
    assert_one_line_error(proc, blocker, "not a folder")
    assert blocker.read_text() == "keep"


def test_command_names_the_missing_extra(tmp_path):
    """Without the optional packages the command says which extra to
    install (simulated by hiding them)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    for name in ("ai_edge_litert", "tf2onnx", "onnxruntime"):
        (hide / name).mkdir()
        (hide / name / "__init__.py").write_text(
            "raise ImportError('hidden for the test')\n")
    env = {k: v for k, v in os.environ.items() if k != "STDFUSION_MIRROR"}
    env["PYTHONPATH"] = f"{hide}{os.pathsep}{ROOT}"
    for fmt, extra in (("tflite", "litert"), ("onnx", "onnx")):
        proc = subprocess.run(
            [sys.executable, "-m", "stdfusion_tf.commands.export", "--format",
             fmt, "--output_dir", tmp_path / "o"], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=600)
        assert_one_line_error(proc, f"--format {fmt}", f"[{extra}]")


# ------------------------------------------------------ UMF-CMGR nets --

UMF_WEIGHTS = SHARED / "umf-cmgr" / "weights"


def _umf(kind):
    from stdfusion_tf.umf import weights

    name = {"difn": "fus_0200.pth", "mrrn": "reg_0800.pth"}[kind]
    if not (UMF_WEIGHTS / name).is_file():
        pytest.skip(f"{UMF_WEIGHTS / name} absent")
    return weights.load_network(UMF_WEIGHTS / name, expect=kind)[1]


def _umf_pairs(kind):
    rng = np.random.default_rng(7)
    pairs = []
    for shape in ((64, 64), (45, 70)):
        a = rng.uniform(0, 1, shape).astype(np.float32)
        b = rng.uniform(0, 1, shape).astype(np.float32)
        if kind == "mrrn":  # a shifted copy: a real flow to find
            b = np.roll(a, 3, axis=1) * 0.9
        pairs.append((a, b))
    return pairs


@pytest.mark.parametrize("fmt", [
    pytest.param("tflite", marks=needs_litert),
    pytest.param("onnx", marks=needs_onnx)])
def test_difn_exports_match_keras(fmt):
    model = _umf("difn")
    content = export.convert_umf(model, "difn", fmt)
    _, low = export.verify(export.umf_reference(model, "difn"),
                           export.UmfRunner("difn", content=content),
                           _umf_pairs("difn"))
    assert low >= export.FLOAT_PSNR_FLOOR


@pytest.mark.slow
@needs_onnx
def test_mrrn_onnx_matches_keras():
    model = _umf("mrrn")
    content = export.convert_umf(model, "mrrn", "onnx")
    pairs = _umf_pairs("mrrn")
    reference = export.umf_reference(model, "mrrn")
    assert np.abs(reference(*pairs[0])[..., :2]).max() > 0.5  # a real flow
    _, low = export.verify(reference,
                           export.UmfRunner("mrrn", content=content), pairs)
    assert low >= export.FLOAT_PSNR_FLOOR


@pytest.mark.slow
@needs_litert
def test_mrrn_tflite_fixed_size_only():
    """The TFLite converter does not legalise MRRN's crop of the padded
    flow at an unknown size (tf.StridedSlice); a fixed size, multiple of 4,
    converts and matches Keras."""
    model = _umf("mrrn")
    with pytest.raises(Exception, match="StridedSlice"):
        export.convert_umf(model, "mrrn", "tflite")
    content = export.convert_umf(model, "mrrn", "tflite", size=(64, 64))
    _, low = export.verify(export.umf_reference(model, "mrrn", (64, 64)),
                           export.UmfRunner("mrrn", content=content),
                           _umf_pairs("mrrn")[:1])
    assert low >= export.FLOAT_PSNR_FLOOR


# --------------------------------------------------------- full check --

@pytest.mark.slow
@needs_litert
@needs_onnx
def test_int8_full_check(model, keras_fuser, upstream):
    """The shipped int8 recipe on the 9 test pairs and TNO42."""
    pairs = export.test_pairs(upstream / "Test_ir", upstream / "Test_vi")
    tno = SHARED / "datasets" / "TNO42"
    if tno.is_dir():
        pairs += export.test_pairs(tno / "ir", tno / "vi")
    calibration = export.calibration_patches(
        upstream / "Train_ir", upstream / "Train_vi")
    reference = [keras_fuser(ir, vi) for ir, vi in pairs]
    q = export.convert_tflite(model, "int8", calibration)
    _, low = export.verify(reference, export.LiteRTFuser(content=q), pairs)
    print(f"int8 TFLite: worst PSNR {low:.2f} dB on {len(pairs)} pairs")
    assert low >= export.QUANTIZED_PSNR_FLOORS["tflite", "int8"]
    q = export.convert_onnx_int8(model, calibration)
    _, low = export.verify(reference, export.OnnxFuser(content=q), pairs)
    print(f"ONNX Runtime QDQ int8: worst PSNR {low:.2f} dB")
    assert low >= export.QUANTIZED_PSNR_FLOORS["onnx", "int8"]
