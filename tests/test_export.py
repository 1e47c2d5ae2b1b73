"""stdfusion_tf.export and stdfusion-export: SavedModel, TFLite (LiteRT) and
ONNX (ONNX Runtime) models against the Keras model.

The LiteRT and ONNX tests need the optional extras (pip install
'stdfusion-tf[litert,onnx]') and are skipped only when those packages are
absent.
"""

import importlib.util
import os
import pathlib
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

# Worst-pair PSNR floor (dB) the int8 TFLite model must hold against Keras
# in the default run (small calibration set); the full check below uses
# the command's defaults.
INT8_TEST_FLOOR = 30.0


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


@pytest.fixture(scope="module")
def calibration(upstream):
    return export.calibration_patches(upstream / "Train_ir",
                                      upstream / "Train_vi", count=8)


# ----------------------------------------------------------- SavedModel --

@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
    return export.export_saved_model(
        model, tmp_path_factory.mktemp("export") / "saved_model")


def test_saved_model_matches_keras(model, keras_fuser, saved_model, two_sizes):
    diff, _ = export.verify(keras_fuser, export.SavedModelFuser(saved_model),
                            two_sizes)
    assert diff <= export.SAVED_MODEL_TOLERANCE
    # the uint8 convenience signature: upstream's min-max and plain clip
    u8 = tf.saved_model.load(saved_model).signatures["fuse_uint8"]
    ir, vi = two_sizes[1]
    ir8, vi8 = (np.round((x + 1) * 127.5).astype(np.uint8) for x in (ir, vi))
    out = u8(ir=tf.constant(ir8), vi=tf.constant(vi8))
    fused = keras_fuser(images.scale_in(ir8), images.scale_in(vi8))
    for key, mode in (("fused_minmax", "minmax"), ("fused_clip", "clip")):
        got = out[key].numpy().astype(int)
        want = images.to_uint8(fused, mode).astype(int)
        assert np.abs(got - want).max() <= 1, key


def test_saved_model_cli_lists_signatures(saved_model):
    """`saved_model_cli show --all` (the console script TensorFlow installs
    next to this Python) lists both signatures."""
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    proc = subprocess.run([cli, "show", "--dir", saved_model, "--all"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for needle in ("signature_def['serving_default']",
                   "signature_def['fuse_uint8']", "outputs['fused']",
                   "outputs['fused_minmax']", "shape: (-1, -1, -1, 1)"):
        assert needle in proc.stdout, needle


# ------------------------------------------------------- float exports --

def test_export_graph_has_plain_adds(model):
    graph = export.export_function(model).get_concrete_function().graph
    ops = {op.type for op in graph.get_operations()}
    assert "AddN" not in ops and "AddV2" in ops


@needs_litert
def test_tflite_float_matches_keras_at_two_sizes(model, keras_fuser,
                                                 two_sizes):
    runner = export.LiteRTFuser(content=export.convert_tflite(model))
    for ir, vi in two_sizes:  # the second size resizes the inputs
        diff, low = export.verify(keras_fuser, runner, [(ir, vi)])
        assert low >= export.FLOAT_PSNR_FLOOR and diff <= 1e-4, ir.shape


@needs_onnx
def test_onnx_float_matches_keras_at_two_sizes(model, keras_fuser, two_sizes):
    content = export.convert_onnx(model)
    import onnx

    proto = onnx.load_from_string(content)
    assert [i.name for i in proto.graph.input] == ["ir", "vi"]
    assert [o.name for o in proto.graph.output] == ["fused"]
    assert proto.opset_import[0].version >= 16
    runner = export.OnnxFuser(content=content)
    for ir, vi in two_sizes:
        diff, low = export.verify(keras_fuser, runner, [(ir, vi)])
        assert low >= export.FLOAT_PSNR_FLOOR and diff <= 1e-4, ir.shape


# -------------------------------------------------------------- int8 --

@needs_litert
def test_int8_tflite_psnr(model, keras_fuser, two_sizes, calibration):
    content = export.convert_tflite(model, "int8", calibration)
    interp = export._litert_interpreter(None, content=content)
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert "ADD_N" not in ops
    # float in, float out: quantised inside
    assert all(d["dtype"] == np.float32
               for d in interp.get_input_details() + interp.get_output_details())
    _, low = export.verify(keras_fuser, export.LiteRTFuser(content=content),
                           two_sizes)
    print(f"int8 TFLite, {len(calibration)} calibration patches: worst "
          f"PSNR {low:.1f} dB against Keras (floor {INT8_TEST_FLOOR:g})")
    assert low >= INT8_TEST_FLOOR


def test_equalize_ranges_keeps_the_function(model, keras_fuser, two_sizes,
                                            calibration):
    other = load_model(RELEASES["jiayi-ma"])
    export.equalize_ranges(other, calibration[:2])
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


# ------------------------------------------------------------ command --

def _verification_pairs(tmp_path):
    rng = np.random.default_rng(4)
    for stem, shape in (("a", (36, 44)), ("b", (29, 51))):
        for d in ("ir", "vi"):
            write_gray(tmp_path / d / f"{stem}.png",
                       rng.integers(0, 256, shape))
    return ["--ir_dir", tmp_path / "ir", "--vi_dir", tmp_path / "vi"]


def _export(tmp_path, out, *args):
    return run_cli("-m", "stdfusion_tf.commands.export", "--checkpoint",
                   RELEASES["jiayi-ma"], *_verification_pairs(tmp_path),
                   "--output_dir", out, *args, cwd=tmp_path)


@needs_litert
@needs_onnx
def test_command_writes_each_file(tmp_path):
    out = tmp_path / "export"
    cases = [("tflite", "none", "stdfusion.tflite", "float32"),
             ("tflite", "dynamic", "stdfusion_dynamic_range.tflite",
              "dynamic-range"),
             ("tflite", "int8", "stdfusion_int8.tflite", "int8"),
             ("onnx", "none", "stdfusion.onnx", "float32"),
             ("onnx", "int8", "stdfusion_int8.onnx", "int8")]
    for fmt, quantize, name, kind in cases:
        extra = ["--calibration_ir_dir", UPSTREAM / "Train_ir",
                 "--calibration_vi_dir", UPSTREAM / "Train_vi",
                 "--calibration_size", 4] if quantize == "int8" else []
        proc = _export(tmp_path, out, "--format", fmt, "--quantize",
                       quantize, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / name).is_file(), name
        assert kind in proc.stdout and "worst PSNR" in proc.stdout
        print(proc.stdout.strip().splitlines()[-1])
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    # an existing model is kept unless --overwrite
    before = (out / "stdfusion.tflite").read_bytes()
    proc = _export(tmp_path, out, "--format", "tflite")
    assert_one_line_error(proc, out / "stdfusion.tflite", "--overwrite")
    assert (out / "stdfusion.tflite").read_bytes() == before


def test_command_saved_model_and_bad_flags(tmp_path):
    out = tmp_path / "export"
    proc = _export(tmp_path, out, "--format", "saved_model")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SavedModel" in proc.stdout and "max abs diff" in proc.stdout
    assert (out / "saved_model" / "saved_model.pb").is_file()
    proc = _export(tmp_path, out, "--format", "saved_model")
    assert_one_line_error(proc, out / "saved_model", "--overwrite")
    proc = _export(tmp_path, out, "--format", "saved_model", "--quantize",
                   "int8")
    assert_one_line_error(proc, "--quantize int8", "float32 only")
    proc = _export(tmp_path, out, "--format", "onnx", "--quantize",
                   "dynamic")
    assert_one_line_error(proc, "--quantize dynamic", "not available")
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    proc = _export(tmp_path, blocker, "--format", "tflite")
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
def test_mrrn_tflite_is_refused():
    """The TFLite converter does not legalise MRRN's dynamic-size crop
    (tf.StridedSlice); the command says so in one line."""
    model = _umf("mrrn")
    with pytest.raises(Exception, match="StridedSlice"):
        export.convert_umf(model, "mrrn", "tflite")


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
