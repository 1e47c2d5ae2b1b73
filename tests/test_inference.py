"""Tiled and bf16 inference, no retracing (exports: test_export.py)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import RELEASES, ROOT, assert_one_line_error, run_cli
from stdfusion_tf import export, fusion
from stdfusion_tf.loading import load_model
from stdfusion_tf.errors import InputError


@pytest.fixture(scope="module")
def model(released_arrays):
    return load_model(RELEASES["jiayi-ma"])


def _pair(shape, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, shape).astype(np.float32)
                 for _ in range(2))


@pytest.mark.parametrize("shape,tile", [((70, 53), 32), ((64, 64), 18),
                                        ((41, 90), 40), ((100, 37), 25)])
def test_tiles_reproduce_whole_image(model, shape, tile):
    whole, tiled = fusion.Fuser(model), fusion.Fuser(model, tile_size=tile)
    ir, vi = _pair(shape, tile)
    a, b = whole(ir, vi), tiled(ir, vi)
    assert np.abs(a - b).max() <= 1e-5
    # the halo matters: tiles without context do differ
    t = tile
    alone = whole(ir[:t, :t], vi[:t, :t])
    assert np.abs(alone - a[:t, :t]).max() > 1e-3


def test_one_trace_for_all_sizes(model):
    fuser = fusion.Fuser(model, tile_size=24)
    for shape in ((20, 30), (31, 17), (64, 50), (9, 9)):
        fuser(*_pair(shape, 0))
    assert fuser.traces == 1


def test_block_tails_run_as_one_fused_convolution(model):
    """What model.bias_add / residual_add are for: after grappler, every
    block's conv3 + bias + residual sum + activation is one oneDNN kernel,
    and no bias, sum, leaky ReLU or ELU is left as an op of its own."""
    import collections

    fn = fusion.Fuser(model)._fn.get_concrete_function()
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        ir, vi = (v1.placeholder(tf.float32, [1, None, None, 1])
                  for _ in range(2))
        out, = tf.graph_util.import_graph_def(
            fn.graph.as_graph_def(), input_map={
                fn.inputs[0].name: ir, fn.inputs[1].name: vi},
            return_elements=[fn.outputs[0].name])
        meta = v1.RunMetadata()
        x = np.zeros((1, 24, 24, 1), np.float32)
        with v1.Session() as session:
            session.run(out, {ir: x, vi: x}, run_metadata=meta,
                        options=v1.RunOptions(output_partition_graphs=True))
    nodes = [n for g in meta.partition_graphs for n in g.node]
    if not any(n.op.startswith("_Mkl") for n in nodes):
        pytest.skip("this TensorFlow build does not use oneDNN")
    ops = collections.Counter(n.op for n in nodes)
    for op in ("AddV2", "AddN", "BiasAdd", "LeakyRelu", "Elu"):
        assert ops[op] == 0, (op, ops)
    tails = collections.Counter(
        tuple(s.decode() for s in n.attr["fused_ops"].list.s)
        for n in nodes if "Add" in [s.decode() for s in
                                    n.attr["fused_ops"].list.s])
    # 5 lrelu blocks in the branches + reconstruction block3; 2 ELU blocks;
    # block4 keeps its tanh apart (not a fusable activation)
    assert tails == {("BiasAdd", "Add", "LeakyRelu"): 7,
                     ("BiasAdd", "Add", "Elu"): 2,
                     ("BiasAdd", "Add"): 1}, tails


def test_tiled_cli_keeps_whole_image_bytescale(upstream, tmp_path):
    """--tile_size: the saved images still match the authors' (min-max
    stretch over the whole image, not per tile)."""
    out = tmp_path / "tiled"
    proc = run_cli(ROOT / "test.py", "--ir_dir", upstream / "Test_ir",
                   "--vi_dir", upstream / "Test_vi", "--checkpoint",
                   RELEASES["jiayi-ma"], "--output_dir", out,
                   "--tile_size", 96, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for ref_path in sorted((upstream / "STDFusionNet_Results").glob("*.bmp")):
        ref = np.asarray(Image.open(ref_path)).astype(int)
        got = np.asarray(Image.open(out / ref_path.name)).astype(int)
        diff = np.abs(got - ref)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.9999, ref_path


def test_bad_tile_size_and_precision(tmp_path, monkeypatch):
    proc = run_cli(ROOT / "test.py", "--tile_size", 17, cwd=tmp_path)
    assert_one_line_error(proc, "--tile_size 17", "twice the halo")
    with pytest.raises(InputError, match="--precision must be one of"):
        fusion.check_precision("float16")
    monkeypatch.setattr(fusion, "bf16_supported", lambda: False)
    with pytest.raises(InputError, match="needs a CPU with AVX512_BF16"):
        fusion.check_precision("bfloat16")
    fusion.check_precision("float32")


def test_bfloat16_close_to_float32(upstream, model):
    if not fusion.bf16_supported():
        pytest.skip("no native bf16 on this machine (the refusal is "
                    "tested above)")
    fast = fusion.Fuser(load_model(RELEASES["jiayi-ma"],
                                   dtype="mixed_bfloat16"))
    pairs = export.test_pairs(upstream / "Test_ir", upstream / "Test_vi")
    diff, low = export.verify(fusion.Fuser(model), fast, pairs)
    assert low >= 45, low
    assert diff > 0  # really computed in bf16
