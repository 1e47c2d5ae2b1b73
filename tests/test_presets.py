"""Presets (keras_hub layout): built-in names of the four releases, the
round trip of a user-trained checkpoint, bad names and folders.

The published images through a preset are checked in test_fuse_cli.py
(test_reproduces_the_authors_result_images, preset variant).  Every test
points KERAS_HOME at its own tmp_path: nothing is written to ~/.keras.
"""

import json

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from stdfusion_tf import presets
from stdfusion_tf.checkpoints import write_tf1_checkpoint
from stdfusion_tf.loading import load_model, read_weights
from stdfusion_tf.errors import InputError
from stdfusion_tf.model import STDFusionNet

PINNED = {  # preset -> (release, epoch) of conftest's released_arrays
    "stdfusionnet_jiayima_29": ("jiayi-ma", 29),
    "stdfusionnet_jiayima_28": ("jiayi-ma", 28),
    "stdfusionnet_linfengtang_28": ("Linfeng-Tang", 28),
    "stdfusionnet_linfengtang_29": ("Linfeng-Tang", 29),
}


@pytest.fixture
def cache(tmp_path, monkeypatch, upstream):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("STDFUSION_MIRROR", str(upstream))
    return tmp_path / "keras_home" / "stdfusion_tf"


def assert_bitwise(model, arrays):
    variables = model.tf1_variables()
    assert set(variables) == set(arrays)
    for name, var in variables.items():
        got = np.asarray(var.numpy())
        assert got.dtype == arrays[name].dtype == np.float32, name
        assert got.tobytes() == arrays[name].tobytes(), name


def test_builtin_names_are_the_releases(cache, released_arrays):
    """Each name: fetched (sha256), converted once into the Keras cache in
    keras_hub's layout, bitwise the released variables."""
    assert presets.names() == list(PINNED) + list(presets.PROJECT_BUILTIN)
    assert presets.DEFAULT_PRESET == "stdfusionnet_jiayima_29"
    for name, key in PINNED.items():
        model = STDFusionNet.from_preset(name)
        assert_bitwise(model, released_arrays[key][1])
        folder = cache / "presets" / name
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json", "metadata.json", "model.weights.h5"]
        config = json.loads((folder / "config.json").read_text())
        assert config["registered_name"] == "stdfusion_tf>STDFusionNet"
        assert config["class_name"] == "STDFusionNet"
        assert config["config"]["paper_activations"] is False
        assert "build_config" not in config
        meta = json.loads((folder / "metadata.json").read_text())
        import keras

        assert meta["keras_version"] == keras.version()
        assert meta["parameter_count"] == 282513
        release, epoch = key
        assert meta["source"].startswith(f"{release}/STDFusionNet@")
        assert meta["source"].endswith(f":checkpoint/Fusion.model-{epoch}")
        assert len(meta["source_sha256"]) == 2
        for file_name, digest in meta["source_sha256"].items():
            sub = "Linfeng-Tang" if release == "Linfeng-Tang" else ""
            tf1 = cache / "checkpoint" / sub / file_name
            assert presets.sha256(tf1) == digest
    # converted once: a second use reads the cache, no new files
    weights = cache / "presets" / presets.DEFAULT_PRESET / "model.weights.h5"
    stamp = weights.stat().st_mtime_ns
    STDFusionNet.from_preset("stdfusionnet_jiayima_29")
    assert weights.stat().st_mtime_ns == stamp
    # a damaged cache entry is rebuilt, not trusted
    weights.write_bytes(weights.read_bytes()[:4000])
    model = STDFusionNet.from_preset("stdfusionnet_jiayima_29")
    assert_bitwise(model, released_arrays["jiayi-ma", 29][1])


def test_project_file_builtin(cache, tmp_path, monkeypatch):
    """A built-in name backed by a .weights.h5 tracked in the project (how
    the 30-epoch retrain is published): pinned by sha256, cached once as a
    preset, bitwise; missing or changed file -> one line, nothing cached."""
    from stdfusion_tf.checkpoints import save_keras_weights

    rng = np.random.default_rng(5)
    trained = STDFusionNet()
    for var in trained.tf1_variables().values():
        var.assign(rng.standard_normal(var.shape).astype("float32"))
    path = save_keras_weights(trained, tmp_path / "w" / "mine.weights.h5")
    arrays = {k: np.asarray(v.numpy())
              for k, v in trained.tf1_variables().items()}
    name = "stdfusionnet_mine"
    # an absolute path stands in for one relative to the package
    monkeypatch.setitem(presets.PROJECT_BUILTIN, name,
                        (path, presets.sha256(path)))
    assert name in presets.names()
    assert_bitwise(STDFusionNet.from_preset(name), arrays)
    assert_bitwise(load_model(name), arrays)
    meta = json.loads((cache / "presets" / name / "metadata.json")
                      .read_text())
    assert meta["source"] == f"stdfusion-tf:{path}"
    assert meta["source_sha256"] == {"mine.weights.h5": presets.sha256(path)}

    other = "stdfusionnet_changed"
    monkeypatch.setitem(presets.PROJECT_BUILTIN, other, (path, "0" * 64))
    with pytest.raises(InputError, match="sha256 differs") as err:
        STDFusionNet.from_preset(other)
    assert "\n" not in str(err.value)
    gone = "stdfusionnet_gone"
    monkeypatch.setitem(presets.PROJECT_BUILTIN, gone,
                        (tmp_path / "nowhere.weights.h5", "0" * 64))
    with pytest.raises(InputError, match="missing: preset"):
        STDFusionNet.from_preset(gone)
    assert sorted(p.name for p in (cache / "presets").iterdir()) == [name]


@pytest.mark.parametrize("name", ["stdfusionnet_retrained_30ep",
                                  "stdfusionnet_bf16_30ep"])
def test_project_preset_is_the_tracked_file(cache, name):
    """The real project entries (the 30-epoch retrains, float32 and bf16):
    shipped, their sha256 the pinned one, and the preset (and test.py's
    --checkpoint path form) give bitwise its weights, not the release's."""
    rel, digest = presets.PROJECT_BUILTIN[name]
    path = presets.PACKAGE_DIR / rel  # package data
    assert path.is_file() and presets.sha256(path) == digest
    arrays = read_weights(str(path))
    assert_bitwise(STDFusionNet.from_preset(name), arrays)
    assert_bitwise(load_model(str(path)), arrays)
    released = read_weights("stdfusionnet_jiayima_29")
    assert any(not np.array_equal(arrays[k], released[k]) for k in arrays)


def test_user_checkpoint_round_trip_is_bitwise(cache, tmp_path):
    """train.py-style TF1 checkpoint (with Adam slots) -> load_model ->
    save_to_preset -> from_preset: bitwise, origin recorded."""
    rng = np.random.default_rng(3)
    trained = STDFusionNet(paper_activations=True)
    arrays = {k: rng.standard_normal(v.shape).astype("float32")
              for k, v in trained.tf1_variables().items()}
    tensors = {f"STDFusion_model/{k}": v for k, v in arrays.items()}
    tensors["STDFusion_model/reconstruction_network/block1/conv1/w/Adam"] = (
        np.ones((1, 1, 128, 128), "float32"))
    tensors["beta1_power"] = np.float32(0.9)
    prefix = write_tf1_checkpoint(tmp_path / "run" / "Fusion.model-4",
                                  tensors)
    model = load_model(tmp_path / "run", paper_activations=True)
    out = model.save_to_preset(tmp_path / "my_preset")
    assert sorted(p.name for p in (tmp_path / "my_preset").iterdir()) == [
        "config.json", "metadata.json", "model.weights.h5"]
    meta = json.loads((tmp_path / "my_preset" / "metadata.json").read_text())
    assert meta["source"] == prefix
    assert meta["source_sha256"] == {
        f"Fusion.model-4{s}": presets.sha256(prefix + s)
        for s in (".index", ".data-00000-of-00001")}
    back = STDFusionNet.from_preset(out)
    assert back.paper_activations is True  # from config.json
    assert_bitwise(back, arrays)
    # the weights file is plain Keras: load_weights reads it too
    plain = STDFusionNet(paper_activations=True)
    plain.load_weights(tmp_path / "my_preset" / "model.weights.h5")
    assert_bitwise(plain, arrays)
    # every checkpoint reader takes the preset (test.py --checkpoint,
    # train.py --init_from); kwargs override the config
    assert_bitwise(load_model(tmp_path / "my_preset"), arrays)
    assert set(read_weights(tmp_path / "my_preset")) == set(arrays)
    bf16 = STDFusionNet.from_preset(out, dtype="mixed_bfloat16")
    assert bf16.dtype_policy.name == "mixed_bfloat16"
    assert_bitwise(bf16, arrays)  # variables stay float32
    # a preset saved from a preset keeps the original origin
    again = back.save_to_preset(tmp_path / "copy")
    meta2 = json.loads((tmp_path / "copy" / "metadata.json").read_text())
    assert meta2["source"] == prefix and again.endswith("copy")


def _write_preset(tmp_path):
    model = STDFusionNet()
    return tmp_path / "p", model.save_to_preset(tmp_path / "p")


@pytest.mark.parametrize("damage,needle", [
    ("no_config", "not a preset folder: no config.json"),
    ("bad_json", "unreadable JSON"),
    ("other_class", "not an STDFusionNet preset"),
    ("no_weights", "model.weights.h5: no such file"),
    ("truncated_weights", "truncated"),
])
def test_bad_preset_folders(tmp_path, cache, damage, needle):
    folder, _ = _write_preset(tmp_path)
    config = folder / "config.json"
    if damage == "no_config":
        config.unlink()
    elif damage == "bad_json":
        config.write_text('{"module": ')
    elif damage == "other_class":
        content = json.loads(config.read_text())
        content.update(class_name="BertBackbone",
                       registered_name="keras_hub>BertBackbone")
        config.write_text(json.dumps(content))
    elif damage == "no_weights":
        (folder / "model.weights.h5").unlink()
    else:
        weights = folder / "model.weights.h5"
        weights.write_bytes(weights.read_bytes()[:3000])
    with pytest.raises(InputError) as err:
        STDFusionNet.from_preset(folder)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_names(cache, tmp_path):
    for bad in ("stdfusionnet_jiayima_30", "jiayima_29"):
        with pytest.raises(InputError, match="unknown preset .*built-in: "
                           "stdfusionnet_jiayima_29"):
            STDFusionNet.from_preset(bad)
    with pytest.raises(InputError, match="no such preset folder"):
        STDFusionNet.from_preset(tmp_path / "nope")
    # the paper-activation variant needs a preset saved that way
    with pytest.raises(InputError, match="drop --paper_activations"):
        load_model(_write_preset(tmp_path)[1], paper_activations=True)


def test_fuse_cli_one_line_errors(cache, tmp_path, upstream):
    """test.py --checkpoint with a misspelt name or a broken folder: one
    line, exit 1, nothing written."""
    out = tmp_path / "out"
    folder, _ = _write_preset(tmp_path)
    (folder / "config.json").write_text("[]")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "model.weights.h5").write_bytes(b"")
    for checkpoint, needle in (("stdfusionnet_jiayima_92", "unknown preset"),
                               (folder, "not a JSON object"),
                               (tmp_path / "q", "no config.json")):
        proc = run_cli(ROOT / "test.py", "--checkpoint", checkpoint,
                       "--ir_dir", upstream / "Test_ir",
                       "--vi_dir", upstream / "Test_vi",
                       "--output_dir", out, cwd=tmp_path,
                       env={"KERAS_HOME": str(tmp_path / "kh")})
        assert_one_line_error(proc, needle)
        assert not out.exists()


# Offline: every HTTPS request goes to a closed local port.
OFFLINE = {"https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
           "NO_PROXY": "", "STDFUSION_UMF_MIRROR": ""}


def test_offline_fetch_is_one_line_and_leaves_nothing(tmp_path, upstream):
    """A preset that cannot be fetched: one exception without chained
    tracebacks (API), one error line (commands, STDFusionNet and UMF-CMGR
    presets), and no folder or file left in the working folder or the
    cache."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "keras_home"
    env = {**OFFLINE, "KERAS_HOME": str(home)}
    proc = run_cli("-c", "from stdfusion_tf import STDFusionNet; "
                   "STDFusionNet.from_preset('stdfusionnet_linfengtang_28')",
                   cwd=work, env=env)
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "During handling" not in proc.stderr
    assert "direct cause" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stdfusion_tf.errors.InputError: https://raw."
                           "githubusercontent.com/Linfeng-Tang/"), last
    assert "cannot fetch checkpoint/Linfeng-Tang/Fusion.model-28" in last
    proc = run_cli(ROOT / "test.py", "--checkpoint",
                   "stdfusionnet_linfengtang_28", "--ir_dir",
                   upstream / "Test_ir", "--vi_dir", upstream / "Test_vi",
                   "--output_dir", "out", cwd=work, env=env)
    assert_one_line_error(proc, "cannot fetch")
    proc = run_cli("-m", "umf.test_reg", "--ir_dir", upstream / "Test_ir",
                   "--target_dir", upstream / "Test_vi", "--checkpoint",
                   "umfcmgr_retrain_reg_0800", "--output_dir", "reg",
                   cwd=work, env=env)
    assert_one_line_error(proc, "cannot fetch checkpoint/umf/reg_0800.pth")
    assert list(work.iterdir()) == []
    # Keras writes its keras.json on import; nothing of ours is left
    assert not (home / "stdfusion_tf").exists()


def test_umf_preset_names(tmp_path, monkeypatch, umf):
    """umfcmgr_* names: fetched (from $STDFUSION_UMF_MIRROR here) into the
    Keras cache, sha256-checked; misspelt names are one-line errors."""
    from stdfusion_tf.umf import weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("STDFUSION_UMF_MIRROR", str(umf))
    path = presets.resolve_umf("umfcmgr_retrain_fus_0200")
    assert path == str(tmp_path / "kh" / "stdfusion_tf" / "checkpoint" /
                       "umf" / "fus_0200.pth")
    assert presets.sha256(path) == presets.sha256(
        umf / "weights" / "fus_0200.pth")
    kind, _ = weights.load_network("umfcmgr_retrain_fus_0200")
    assert kind == "difn"
    assert presets.resolve_umf("my.pth") == "my.pth"
    with pytest.raises(InputError, match="unknown UMF-CMGR preset"):
        presets.resolve_umf("umfcmgr_retrain_reg_0900")
