"""umf.train_reg: MRRN training equal to upstream's PyTorch steps, resumable,
distributed, bad input refused."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import (ROOT, assert_one_line_error, kill_once_written,
                      run_cli, write_gray)
from stdfusion_tf.umf import reg_training, vgg, weights

FIXTURE = ROOT / "tests" / "fixtures" / "mrrn_train.npz"


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _flat(state):
    return np.concatenate([np.ravel(state[k]) for k in sorted(state)])


# ------------------------------------------------- equal to PyTorch --

def test_three_adam_steps_equal_pytorch(umf, fixture):
    """From reg_0800.pth, on the fixture's 3 fixed batches (2 x 32 x 32),
    with the same random VGG19: loss terms 1e-5 relative at every step,
    weights 1e-5 relative L2 after 3 steps (fixture made by
    tests/fixtures/make_mrrn_train.py with upstream's code)."""
    from stdfusion_tf.umf.layers import to_torch_layout

    state = vgg.random_state_dict(0, vgg.RELU["relu4_1"])
    assert np.float64(np.abs(state["features.19.weight"]).sum()) == \
        float(fixture["vgg_check"])  # the same random VGG19
    dummy = [np.zeros((32, 32), np.uint8)]
    trainer = reg_training.MRRNTrainer((dummy, dummy), state, batch_size=2,
                                       crop_size=32)
    trainer.init_from(umf / "weights" / "reg_0800.pth")
    init = {k: np.asarray(v) for k, v in
            trainer.model.torch_variables().items()}
    tgt = fixture["tgt"].astype(np.float32)[..., None]
    src = fixture["src"].astype(np.float32)[..., None]
    weight = np.full((2,), 0.5, np.float32)
    trainer.steps_per_epoch = 3
    trainer.batch_arrays = lambda epoch, step: (tgt[step], src[step], weight)
    ours = [trainer.train_step(b) for b in trainer.dataset(0)]
    assert len(ours) == 3
    worst = 0.0
    for step, terms in enumerate(ours):
        for k in reg_training.LOSS_TERMS:
            want = float(fixture[f"loss/{k}"][step])
            rel = abs(terms[k] - want) / abs(want)
            worst = max(worst, rel)
            assert rel <= 1e-5, (step, k, terms[k], want)
    final = {k: to_torch_layout(np.asarray(v)) for k, v in
             trainer.model.torch_variables().items()}
    theirs = {k[2:]: v for k, v in fixture.items() if k.startswith("w/")}
    assert set(final) == set(theirs)
    a, b = _flat(final), _flat(theirs)
    start = _flat({k: to_torch_layout(v) for k, v in init.items()})
    weight_rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    update_rel = np.linalg.norm(a - b) / np.linalg.norm(b - start)
    print(f"3 steps vs PyTorch: loss terms worst rel {worst:.2e}, weights "
          f"rel L2 {weight_rel:.2e}, update rel L2 {update_rel:.2e}")
    assert weight_rel <= 1e-5
    assert update_rel <= 1e-3  # the updates themselves agree too
    assert np.linalg.norm(b - start) > 1e-3  # and the weights did move


def test_shared_crop_is_regdatas(fixture):
    """One RandomResizedCrop box on the (ir, it) pair as upstream's RegData
    does it (LA PIL image: Pillow premultiplies by the pseudo-infrared)."""
    ir, it = reg_training.resized_crop(fixture["crop_ir"], fixture["crop_it"],
                                       tuple(fixture["crop_box"]), 32)
    assert np.array_equal(np.stack([ir, it]), fixture["crop_out"])


def test_crop_params_as_torchvision():
    rng = np.random.default_rng(0)
    for _ in range(200):
        i, j, h, w = reg_training.crop_params(rng, 300, 400)
        assert 0 <= i <= 300 - h and 0 <= j <= 400 - w
        assert 0.08 * 0.8 <= h * w / 120000 <= 1.0
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # scale (1, 1) on a square image: the whole image
    assert reg_training.crop_params(rng, 64, 64, scale=(1, 1),
                                    ratio=(1, 1)) == (0, 0, 64, 64)


def test_partial_batch_padding_is_exact():
    """The last, partial batch (upstream's drop_last=False) is padded with
    weight-0 samples: same loss as the unpadded batch."""
    rng = np.random.default_rng(1)
    model = vgg.build(vgg.RELU["relu4_1"],
                      vgg.random_state_dict(0, vgg.RELU["relu4_1"]))
    x = rng.uniform(size=(5, 4, 32, 32, 1)).astype(np.float32)
    flow = rng.normal(size=(4, 32, 32, 2)).astype(np.float32)
    full = reg_training.reg_loss(model, *x[:4, :3], flow[:3],
                                 np.full(3, 1 / 3, np.float32))
    padded = reg_training.reg_loss(model, *x[:4], flow,
                                   np.array([1 / 3] * 3 + [0], np.float32))
    for k in full:
        assert float(padded[k]) == pytest.approx(float(full[k]), rel=1e-6)
    five = [np.zeros((40, 40), np.uint8)] * 5
    trainer = reg_training.MRRNTrainer((five, five), batch_size=2,
                                       crop_size=32)
    assert trainer.steps_per_epoch == 3
    _, _, w = trainer.batch_arrays(0, 2)
    assert w.tolist() == [1.0, 0.0]


# ------------------------------------------------------ command line --

def _pairs(root, n=3, size=(72, 76)):
    rng = np.random.default_rng(5)
    for i in range(n):
        base = rng.integers(20, 235, (size[0] // 4, size[1] // 4))
        img = np.kron(base, np.ones((4, 4)))
        write_gray(root / "ir" / f"{i:02d}.png", img)
        write_gray(root / "it" / f"{i:02d}.jpg",
                   np.clip(img * 0.8 + 30, 0, 255))
    return root / "ir", root / "it"


def _train(root, *extra):
    ir, it = root / "ir", root / "it"
    return run_cli("-m", "umf.train_reg", "--ir", ir, "--it", it, "--ckpt",
                   root / "ckpt", "--batchsize", 2, "--crop_size", 64,
                   "--vgg19", "random", "--seed", 3, *extra, cwd=root)


@pytest.mark.slow  # the suite's slowest (minutes); the engine's resume is
# also covered by test_umf_train_cpstn's kill/resume test
def test_kill_resume_and_checkpoint_registers(tmp_path):
    """3 epochs of 2 steps; the interrupted run is SIGKILLed once its first
    training state exists and re-run on the same --ckpt; the final weights
    equal the uninterrupted run's, and load in umf.test_reg."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    _pairs(straight)
    ir, it = _pairs(broken)
    proc = _train(straight, "--nEpochs", 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOMLY INITIALISED" in proc.stderr
    assert "3 pairs, 2 steps of 2 per epoch" in proc.stdout
    log = (straight / "ckpt" / "log" / "log.txt").read_text().splitlines()
    assert [line.split(", time")[0] for line in log] == [
        f"Epoch:[{e}/3], step:[2/2]" for e in (1, 2, 3)]

    state = broken / "ckpt" / reg_training.STATE_FILE
    assert kill_once_written(
        ["-m", "umf.train_reg", "--ir", ir, "--it", it, "--ckpt",
         broken / "ckpt", "--batchsize", "2", "--crop_size", "64",
         "--vgg19", "random", "--seed", "3", "--nEpochs", "3"], state,
        broken)
    proc = _train(broken, "--nEpochs", 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines()
                if l.startswith("resuming from"))
    assert line.startswith(f"resuming from {state} at step ")
    print(line)
    assert int(line.split()[-1]) < 6, line  # killed before the end
    a = weights.load_network(straight / "ckpt" / "cp_0003.weights.h5",
                             "mrrn")[1].torch_variables()
    b = weights.load_network(broken / "ckpt" / "cp_0003.weights.h5",
                             "mrrn")[1].torch_variables()
    worst = max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max())
                for k in a)
    assert worst <= 1e-6, worst
    # re-running a finished run resumes at its end and trains nothing
    proc = _train(straight, "--nEpochs", 3)
    assert proc.returncode == 0 and "at step 6" in proc.stdout

    out = tmp_path / "reg"
    proc = run_cli("-m", "umf.test_reg", "--ir_dir", ir, "--target_dir", it,
                   "--checkpoint", straight / "ckpt" / "cp_0003.weights.h5",
                   "--output_dir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.png")) == [
        "00.png", "01.png", "02.png"]


def test_mirrored_two_cpus_equals_one_device(tmp_path):
    code = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from stdfusion_tf.umf import reg_training
rng = np.random.default_rng(0)
pairs = ([rng.integers(0, 256, (70, 70), dtype=np.uint8) for _ in range(4)],
         [rng.integers(1, 256, (70, 70), dtype=np.uint8) for _ in range(4)])
single = reg_training.MRRNTrainer(pairs, batch_size=4, crop_size=64)
init = {k: np.asarray(v) for k, v in single.model.torch_variables().items()}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
mirrored = reg_training.MRRNTrainer(pairs, batch_size=4, crop_size=64,
                                    strategy=strategy)
for k, v in mirrored.model.torch_variables().items():
    v.assign(init[k])
a = single.train_step(next(iter(single.dataset(0))))
b = mirrored.train_step(next(iter(mirrored.dataset(0))))
loss = max(abs(a[k] - b[k]) / abs(a[k]) for k in a if a[k])
wa = {k: np.asarray(v) for k, v in single.model.torch_variables().items()}
wb = {k: np.asarray(v) for k, v in mirrored.model.torch_variables().items()}
flat = lambda w: np.concatenate([w[k].ravel() for k in sorted(w)])
w = np.linalg.norm(flat(wa) - flat(wb)) / np.linalg.norm(flat(wa) - flat(init))
print(f"RESULT {loss:.3e} {w:.3e}")
"""
    proc = subprocess.run([sys.executable, "-c", code],
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss, update = map(float, proc.stdout.split("RESULT")[1].split())
    print(f"mirrored (2 CPUs) vs one device after a step: loss rel "
          f"{loss:.2e}, update rel L2 {update:.2e}")
    assert loss <= 1e-5 and update <= 1e-5


def test_bad_input_one_line_nothing_written(tmp_path):
    ir, it = _pairs(tmp_path)
    os.rename(it / "02.jpg", it / "05.jpg")  # unpaired names
    proc = _train(tmp_path, "--nEpochs", 1)
    assert_one_line_error(proc, "unpaired", "02")
    os.rename(it / "05.jpg", it / "02.jpg")
    proc = _train(tmp_path, "--nEpochs", 1, "--crop_size", 256)
    assert_one_line_error(proc, "smaller than the 256x256 training crop")
    missing = tmp_path / "models" / "vgg19-dcbb9e9d.pth"
    proc = run_cli("-m", "umf.train_reg", "--ir", ir, "--it", it, "--ckpt",
                   tmp_path / "ckpt", "--vgg19", missing, "--crop_size", 64,
                   cwd=tmp_path)
    assert_one_line_error(proc, str(missing), vgg.URL)
    assert not (tmp_path / "ckpt").exists()


def test_vgg19_file_loads_through_pth(tmp_path):
    """A torchvision-layout VGG19 state dict (features + classifier) in a
    .pth file loads into the Keras VGG19 (conv layout converted), and its
    relu4_1 is that of the same weights built directly."""
    from pth_writer import write_pth

    state = vgg.random_state_dict(4)
    state["classifier.0.weight"] = np.zeros((2, 3), np.float32)  # ignored
    path = write_pth(tmp_path / "vgg19-mine.pth", state)
    model, what = vgg.load(str(path))
    assert what == str(path)
    direct = vgg.build(vgg.RELU["relu4_1"], state)
    x = np.random.default_rng(0).uniform(size=(1, 24, 24, 3)).astype(
        np.float32)
    a, b = model(x)[0], direct(x)[0]
    assert a.shape == (1, 3, 3, 512)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    w = model.torch_variables()["features.19.weight"]
    assert np.array_equal(np.asarray(w), state["features.19.weight"]
                          .transpose(2, 3, 1, 0))
