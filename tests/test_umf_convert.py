"""convert.from_torch and stdfusion_tf.umf.weights: upstream UMF-CMGR .pth
files -> Keras, every bad case a one-line error with nothing written.

Bad .pth files are written by tests/pth_writer.py (torch.save's zip format,
no PyTorch needed)."""

import numpy as np
import pytest

from conftest import ROOT, UMF, assert_one_line_error, run_cli
from pth_writer import Call, write_pth

# used by tests that depend on the umf fixture (skipped without ../shared)
WEIGHTS = UMF / "weights"


@pytest.fixture(scope="session")
def umf_weights(umf):
    return WEIGHTS


@pytest.fixture(scope="session")
def fus_state(umf_weights):
    from stdfusion_tf.checkpoints.pth import load_pth
    return load_pth(umf_weights / "fus_0200.pth")


def _figure(stdout, after):
    return float(stdout.split(after)[1].split()[0])


@pytest.mark.parametrize("name,kind,title,variables", [
    ("reg_0800", "mrrn", "MRRN (mrrn)", 44),
    ("fus_0200", "difn", "DIFN (difn, nfeats=64)", 24)])
def test_cli_converts_validates_and_reloads(umf_weights, tmp_path, name, kind,
                                            title, variables):
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf import weights

    dst = tmp_path / "out" / f"{name}.weights.h5"
    proc = run_cli("-m", "convert.from_torch", "--src",
                   umf_weights / f"{name}.pth", "--dst", dst, "--pairs", "1")
    assert proc.returncode == 0, proc.stderr
    assert f": {title}, " in proc.stdout
    assert f"Round trip: {variables} variables read back" in proc.stdout
    # upstream outputs reproduced within a gray level
    assert _figure(proc.stdout, "max abs diff = ") <= 1
    identical = float(proc.stdout.split("gray level(s), ")[1].split("%")[0])
    assert identical >= 99.9
    if name == "reg_0800":
        assert "Flow vs reference/flow (1 pair(s))" in proc.stdout
        assert _figure(proc.stdout.split("Flow vs")[1],
                       "max abs diff = ") <= 1e-3
    assert f"Wrote {dst}" in proc.stdout
    # the written file reloads bitwise equal to the .pth tensors
    got_kind, model = weights.load_network(dst)
    assert got_kind == kind
    state = load_pth(umf_weights / f"{name}.pth")
    got = weights.model_state_dict(model)
    assert len(got) == variables
    for key, value in got.items():
        assert value.tobytes() == state[key].tobytes(), key
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]


def test_wrapped_prefixed_unknown_weights(fus_state, tmp_path):
    """{'net': ...} wrapping and a DataParallel 'module.' prefix are undone;
    a file that is not the known one (a value changed) has no reference."""
    from stdfusion_tf.umf import validate, weights

    state = {f"module.{k}": v.copy() for k, v in fus_state.items()}
    state["module.out_conv.bias"][0] += 1
    src = write_pth(tmp_path / "fus.pth", {"net": state, "epoch": 3})
    kind, model = weights.load_network(src, expect="difn")
    assert kind == "difn"
    got = weights.model_state_dict(model)
    for key, value in got.items():
        assert value.tobytes() == state[f"module.{key}"].tobytes(), key
    assert validate.known_weights(src) is None
    assert validate.known_weights(WEIGHTS / "fus_0200.pth") == (
        "difn", "fus_0200.pth")


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("fuse.gamma2.bias"),
     "1 DIFN key(s) missing: fuse.gamma2.bias"),
    (lambda d: d.__setitem__("fuse.gamma3.bias", d["fuse.gamma2.bias"]),
     "1 unexpected key(s) for DIFN: fuse.gamma3.bias"),
    (lambda d: d.__setitem__("conv1_1.0.weight",
                             d["conv1_1.0.weight"].astype(np.int64)),
     "conv1_1.0.weight is int64, not floating point"),
])
def test_bad_state_dicts_in_process(fus_state, tmp_path, change, message):
    """The same checks as the CLI case 'misshaped' below, without starting
    an interpreter each."""
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import weights

    state = dict(fus_state)
    change(state)
    src = write_pth(tmp_path / "bad.pth", state)
    with pytest.raises(InputError) as err:
        weights.load_network(src)
    assert str(err.value).startswith(f"{src}: ")
    assert message in str(err.value) and "\n" not in str(err.value)


def _bad_state(fus_state, change):
    state = dict(fus_state)
    change(state)
    return state


BAD_CASES = {
    # name: (make src in tmp_path, extra flags, needles of the error line)
    "forbidden_global": (
        lambda s, t: write_pth(t / "evil.pth", {
            "net": {"out_conv.bias": Call("os", "system",
                                          f"touch {t / 'payload_ran'}")}}),
        [], ["refuses to unpickle os.system"]),
    "truncated": (
        lambda s, t: _truncated(t), [], ["damaged or truncated zip archive"]),
    "not_zip": (
        lambda s, t: _text(t / "notes.pth"), [], ["not a PyTorch .pth file"]),
    "difn_as_mrrn": (
        lambda s, t: WEIGHTS / "fus_0200.pth", ["--network", "mrrn"],
        ["fus_0200.pth", "holds DIFN weights, MRRN expected"]),
    # (a missing and an extra key: test_bad_state_dicts_in_process)
    "misshaped": (
        lambda s, t: write_pth(t / "s.pth", _bad_state(
            s, lambda d: d.__setitem__("fuse_res.weight",
                                       d["fuse_res.weight"][:, :64]))), [],
        ["mis-shaped", "fuse_res.weight (64, 64, 3, 3) (expected "
         "(64, 128, 3, 3))"]),
}


def _truncated(tmp):
    data = (WEIGHTS / "reg_0800.pth").read_bytes()
    (tmp / "half.pth").write_bytes(data[:len(data) // 2])
    return tmp / "half.pth"


def _text(path):
    path.write_text("epoch 200\n")
    return path


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line(fus_state, tmp_path, case):
    make, flags, needles = BAD_CASES[case]
    src = make(fus_state, tmp_path)
    out = tmp_path / "out"
    dst = out / "x.weights.h5"
    proc = run_cli("-m", "convert.from_torch", "--src", src, "--dst", dst,
                   *flags, cwd=tmp_path)
    assert_one_line_error(proc, str(src), *needles)
    assert not out.exists() or list(out.iterdir()) == []
    assert not (tmp_path / "payload_ran").exists()


def test_existing_folder_as_dst(umf_weights, tmp_path):
    dst = tmp_path / "taken.weights.h5"
    dst.mkdir()
    proc = run_cli("-m", "convert.from_torch", "--src",
                   umf_weights / "fus_0200.pth", "--dst", dst)
    assert_one_line_error(proc, str(dst), "is a folder")
    assert list(dst.iterdir()) == []


def test_cpstn_detected_with_sizes_from_shapes(tmp_path):
    """The CPSTN fixtures (upstream networks.py at width 8, made by
    tests/fixtures/make_cpstn_fixture.py): kind and sizes read from the
    keys and shapes, also DataParallel-prefixed and wrapped; the sizes
    travel in the .weights.h5."""
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf import weights

    fixtures = ROOT / "tests" / "fixtures"
    g_state = load_pth(fixtures / "cpstn_G_ngf8.pth")
    src = write_pth(tmp_path / "latest_net_G.pth",
                    {"net": {f"module.{k}": v for k, v in g_state.items()}})
    kind, g = weights.load_network(src)
    assert kind == "cpstn_g"
    assert (g.input_nc, g.output_nc, g.ngf, g.n_blocks) == (3, 1, 8, 9)
    assert weights.detect(g_state, src)[1] == {
        "input_nc": 3, "output_nc": 1, "ngf": 8, "n_blocks": 9}
    got = weights.model_state_dict(g)
    assert got.keys() == g_state.keys()
    assert all(got[k].tobytes() == g_state[k].tobytes() for k in got)
    h5 = weights.save_weights(g, tmp_path / "g.weights.h5")
    kind, again = weights.load_network(h5, expect="cpstn_g")
    assert all(np.array_equal(weights.model_state_dict(again)[k], got[k])
               for k in got)
    with pytest.raises(InputError, match="holds CPSTN generator weights, "
                       "MRRN expected"):
        weights.load_network(h5, expect="mrrn")
    kind, d = weights.load_network(fixtures / "cpstn_D_ndf8.pth")
    assert kind == "cpstn_d"
    assert weights.detect(load_pth(fixtures / "cpstn_D_ndf8.pth"), "d")[1] \
        == {"input_nc": 1, "ndf": 8, "n_layers": 3}


def test_keras_weights_files(fus_state, tmp_path):
    """.weights.h5: a plain model.save_weights file is recognised by its
    layout; a wrong network, a damaged file, a variable missing: one line."""
    import h5py

    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import weights

    _, model = weights.state_dict_to_model(dict(fus_state), "fus_0200.pth")
    plain = tmp_path / "plain.weights.h5"
    model.save_weights(str(plain))  # no kind attributes
    kind, back = weights.load_network(plain)
    assert kind == "difn"
    assert all(v.tobytes() == fus_state[k].tobytes()
               for k, v in weights.model_state_dict(back).items())
    with pytest.raises(InputError, match="holds DIFN weights, MRRN expected"):
        weights.load_network(weights.save_weights(
            model, tmp_path / "d.weights.h5"), expect="mrrn")
    cut = tmp_path / "cut.weights.h5"
    data = plain.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="unreadable or truncated"):
        weights.load_network(cut)
    holed = tmp_path / "holed.weights.h5"
    holed.write_bytes(data)
    with h5py.File(holed, "a") as f:
        names = []
        f.visititems(lambda n, o: names.append(n)
                     if isinstance(o, h5py.Dataset) else None)
        del f[names[0]]
    with pytest.raises(InputError) as err:
        weights.load_network(holed, expect="difn")
    assert "1 DIFN variable(s) missing" in str(err.value)
    with pytest.raises(InputError, match="is not a .weights.h5 of MRRN"):
        weights.load_network(holed)
