"""stdfusion_tf.checkpoints.pth: .pth files read without PyTorch and without running
pickled code.  Fixtures made by tests/fixtures/make_pth_fixtures.py."""

import collections
import zipfile

import numpy as np
import pytest

from conftest import ROOT
from stdfusion_tf.errors import InputError
from stdfusion_tf.checkpoints.pth import load_pth

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "pth_expected.npz") as f:
        return {k: f[k] for k in f.files}


def assert_bitwise(got, want, key):
    if got.dtype.name == "bfloat16":
        got = got.view(np.int16)
    assert got.dtype == want.dtype, key
    assert got.shape == want.shape, key
    assert got.flags.c_contiguous, key
    assert got.tobytes() == want.tobytes(), key


def test_state_dict_bitwise(expected):
    sd = load_pth(FIXTURES / "pth_state.pth")
    assert isinstance(sd, collections.OrderedDict)
    want = {k.split("/", 1)[1]: v for k, v in expected.items()
            if k.startswith("state/")}
    assert list(sd) == list(want)
    for key, value in want.items():
        assert_bitwise(sd[key], value, key)
    # the layouts the file exercises really were read through strides
    assert sd["transposed"].shape == (5, 6)
    assert sd["view_strided"].shape == (3, 2)
    np.testing.assert_array_equal(sd["view_offset"].ravel(),
                                  np.arange(7, 19, dtype=np.float32) * 0.25)
    assert sd["bf16"].dtype.name == "bfloat16"
    assert sd["bn.num_batches_tracked"].shape == ()
    # one pickled tensor under two keys (pickle's memo), as torch.load gives
    assert sd["alias"] is sd["conv.bias"]


def test_wrapped_parameters(expected):
    obj = load_pth(FIXTURES / "pth_wrapped.pth")
    assert set(obj) == {"net", "epoch"} and obj["epoch"] == 7
    for key in ("conv.weight", "conv.bias"):
        assert_bitwise(obj["net"][key], expected[f"wrapped/{key}"], key)


def test_forbidden_global_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the payload would `touch pth_payload_ran`
    src = FIXTURES / "pth_malicious.pth"
    with pytest.raises(InputError) as err:
        load_pth(src)
    assert str(err.value) == (f"{src}: refuses to unpickle os.system (only "
                              "state dicts are read: tensors, dicts, numbers, "
                              "strings)")
    assert not (tmp_path / "pth_payload_ran").exists()
    assert list(tmp_path.iterdir()) == []


def test_legacy_format_read(expected, tmp_path):
    """The pre-1.6 format (torchvision's vgg19-dcbb9e9d.pth is one) gives
    the same state dict as the zip file; a truncated one is one line."""
    sd = load_pth(FIXTURES / "pth_legacy.pth")
    want = {k.split("/", 1)[1]: v for k, v in expected.items()
            if k.startswith("state/")}
    assert list(sd) == list(want)
    for key, value in want.items():
        assert_bitwise(sd[key], value, key)
    data = (FIXTURES / "pth_legacy.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:-10])
    with pytest.raises(InputError, match="cut short"):
        load_pth(cut)


def test_truncated_and_non_zip(tmp_path):
    data = (FIXTURES / "pth_state.pth").read_bytes()
    half = tmp_path / "half.pth"
    half.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated zip archive"):
        load_pth(half)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match="not a PyTorch .pth file"):
        load_pth(text)
    with pytest.raises(InputError, match="cannot read"):
        load_pth(tmp_path / "absent.pth")


def _rewrite(src, dst, change):
    """Copy a zip archive, letting ``change(name, data)`` return new bytes
    (or None to drop the record)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def test_damaged_storages(tmp_path):
    src = FIXTURES / "pth_state.pth"
    missing = _rewrite(src, tmp_path / "missing.pth",
                       lambda n, d: None if n.endswith("/data/0") else d)
    with pytest.raises(InputError, match=r"storage record \w+/data/0 is "
                       "missing"):
        load_pth(missing)
    short = _rewrite(src, tmp_path / "short.pth",
                     lambda n, d: d[:5] if n.endswith("/data/0") else d)
    with pytest.raises(InputError, match=r"storage record \w+/data/0 is too "
                       r"short \(5 bytes, 432 expected"):
        load_pth(short)
    cut = _rewrite(src, tmp_path / "cut.pth",
                   lambda n, d: d[:len(d) // 2] if n.endswith("data.pkl")
                   else d)
    with pytest.raises(InputError, match="cannot unpickle"):
        load_pth(cut)
    for error in (missing, short, cut):
        try:
            load_pth(error)
        except InputError as exc:
            assert "\n" not in str(exc)


def test_big_endian_storage(tmp_path):
    """A byteorder record saying 'big' (written on s390x) is honoured."""
    def swap(name, data):
        if name.endswith("/data/0"):  # conv.weight: float32
            return np.frombuffer(data, "<f4").astype(">f4").tobytes()
        if name.endswith("/byteorder"):
            return b"big"
        return data
    src = FIXTURES / "pth_wrapped.pth"
    with zipfile.ZipFile(src) as z:
        assert any(n.endswith("/byteorder") for n in z.namelist())
    want = load_pth(src)["net"]["conv.weight"]
    got = load_pth(_rewrite(src, tmp_path / "be.pth", swap))["net"]
    np.testing.assert_array_equal(got["conv.weight"], want)
    assert got["conv.weight"].dtype == np.dtype("=f4")


@pytest.mark.parametrize("name,count", [("reg_0800.pth", 78),
                                        ("fus_0200.pth", 24)])
def test_shared_weights(umf, name, count):
    path = umf / "weights" / name
    sd = load_pth(path)  # reg_0800 holds CUDA tensors (location 'cuda:0')
    assert len(sd) == count
    assert all(v.dtype in (np.float32, np.int64) for v in sd.values())


def test_strided_layouts_and_bounds(tmp_path):
    """Layouts written by tests/pth_writer.py: an offset, transposed view is
    read; a view past its storage's end and a stride-0 tensor that would
    copy its 1-element storage to 4 GiB are refused (one line)."""
    from pth_writer import Strided, write_pth

    base = np.arange(20, dtype=np.float32)
    src = write_pth(tmp_path / "ok.pth", {
        "t": Strided(base, (3, 4), (1, 5), offset=2)})
    # t[i, j] = storage[offset + i * 1 + j * 5]
    want = base[2 + np.arange(3)[:, None] + 5 * np.arange(4)[None, :]]
    np.testing.assert_array_equal(load_pth(src)["t"], want)
    past = write_pth(tmp_path / "past.pth", {
        "t": Strided(base, (4, 5), (5, 1), offset=1)})
    with pytest.raises(InputError, match="reaches past the end of storage"):
        load_pth(past)
    big = write_pth(tmp_path / "big.pth", {
        "t": Strided(base[:1], (2 ** 30,), (0,))})
    with pytest.raises(InputError, match="repeats its 1-element storage"):
        load_pth(big)
