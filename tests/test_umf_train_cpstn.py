"""umf.train_cpstn: CPSTN (CycleGAN) training equal to upstream's PyTorch
steps, resumable, distributed, bad input refused."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import (ROOT, assert_one_line_error, kill_once_written, run_cli,
                      write_gray)
from stdfusion_tf.umf import cpstn_data, cpstn_training, task_state, vgg, \
    weights

FIXTURE = ROOT / "tests" / "fixtures" / "cpstn_train.npz"
NETS = cpstn_training.NETS


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _flat(state):
    return np.concatenate([np.ravel(state[k]) for k in sorted(state)])


def _trainer(fixture, precision, strategy=None):
    """ngf = ndf = 4, batch 2 of 32 x 32, the fixture's initial weights."""
    from stdfusion_tf.umf.layers import from_torch_layout

    state = vgg.random_state_dict(0, vgg.RELU["relu5_1"])
    assert np.float64(np.abs(state["features.28.weight"]).sum()) == \
        float(fixture["vgg_check"])  # the same random VGG19
    dummy = (np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32),
                                                          np.uint8))
    trainer = cpstn_training.CPSTNTrainer(
        dummy, state, batch_size=2, ngf=4, ndf=4, crop_size=32,
        precision=precision, strategy=strategy)
    for key, var in trainer.model.torch_variables().items():
        var.assign(from_torch_layout(fixture[f"init/{key}"]))
    a = np.transpose(fixture["A"], (0, 1, 3, 4, 2)).astype(trainer.dtype)
    b = np.transpose(fixture["B"], (0, 1, 3, 4, 2)).astype(trainer.dtype)
    trainer.steps_per_epoch = 3
    trainer.batch_arrays = lambda epoch, step: (a[step], b[step])
    return trainer


TERM_NAMES = {"total": "G", **{k: k for k in cpstn_training.LOSS_TERMS[1:]}}


def test_three_steps_equal_pytorch_float64(fixture):
    """3 optimize_parameters steps (generator step, pools, discriminator
    step) from the same initial weights on the fixture's batches (2 unpaired
    pairs of 32 x 32, ngf = ndf = 4, random VGG19): every loss term within
    1e-5 relative at every step, the four networks' weights within 1e-5
    relative L2 after 3 steps (fixture: tests/fixtures/make_cpstn_train.py,
    upstream's CycleGANModel).  In float64 on both sides: in float32 the
    recipe is ill-conditioned (PyTorch's own float32 and float64 runs part by
    ~3e-3 after 3 steps; the fixture script says why)."""
    from stdfusion_tf.umf.layers import to_torch_layout

    trainer = _trainer(fixture, "float64")
    ours = [trainer.train_step(b) for b in trainer.dataset(0)]
    assert len(ours) == 3
    worst = 0.0
    for step, terms in enumerate(ours):
        for k, name in TERM_NAMES.items():
            want = float(fixture[f"loss/{name}"][step])
            rel = abs(terms[k] - want) / abs(want)
            worst = max(worst, rel)
            assert rel <= 1e-5, (step, k, terms[k], want)
    final = {k: to_torch_layout(np.asarray(v)) for k, v in
             trainer.model.torch_variables().items()}
    init = {k[5:]: fixture[k].astype(np.float64) for k in fixture
            if k.startswith("init/")}
    theirs = {k: init[k] + fixture["update/" + k].astype(np.float64)
              for k in init}
    assert set(final) == set(theirs)
    a, b, start = _flat(final), _flat(theirs), _flat(init)
    weight_rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    update_rel = np.linalg.norm(a - b) / np.linalg.norm(b - start)
    print(f"3 steps vs PyTorch (float64): loss terms worst rel {worst:.2e}, "
          f"weights rel L2 {weight_rel:.2e}, update rel L2 {update_rel:.2e}; "
          f"PyTorch float32 vs float64: {fixture['f32_vs_f64']}")
    assert weight_rel <= 1e-5
    assert update_rel <= 1e-6  # the updates themselves agree too
    assert np.linalg.norm(b - start) > 1e-3  # and the weights did move
    assert trainer.global_step == 3
    assert int(trainer.optimizer_D.iterations.numpy()) == 3


def test_first_step_float32_equals_pytorch_float32(fixture):
    """The float32 path: the first step's loss terms (before any update)
    equal PyTorch's float32 ones within 1e-5 relative."""
    trainer = _trainer(fixture, "float32")
    terms = trainer.train_step(next(iter(trainer.dataset(0))))
    for k, name in TERM_NAMES.items():
        want = float(fixture[f"loss32/{name}"][0])
        assert abs(terms[k] - want) <= 1e-5 * abs(want), (k, terms[k], want)


def test_learning_rate_schedule_as_released(fixture):
    """Epoch e trains at factor(e) (update_learning_rate() at the start of
    every epoch, as released): constant 99 epochs, decay from epoch 100,
    rate 0 in epoch 200; --nolr_step_at_start: CycleGAN's factor(e - 1)."""
    ours = [cpstn_training.lr_factor(e) for e in range(200)]
    assert np.allclose(ours, fixture["lr_factor"], rtol=0, atol=1e-12)
    assert ours[98] == 1.0 and ours[99] < 1.0 and ours[199] == 0.0
    plain = [cpstn_training.lr_factor(e, step_at_start=False)
             for e in range(200)]
    assert plain[0] == 1.0 and plain[1:] == ours[:-1]
    assert plain[199] == pytest.approx(1 / 101)


def test_transform_as_upstream(fixture, tmp_path):
    """get_transform of one image, A (RGB) and B (gray) paths: Pillow
    bicubic resize (load 46), crop at (top 9, left 5) 32, flip, [-1, 1]."""
    path = tmp_path / "x.png"
    Image.fromarray(fixture["transform_in"]).save(path)
    left, top = fixture["transform_crop"]
    for mode, want in (("RGB", fixture["transform_rgb"]),
                       ("L", fixture["transform_gray"])):
        img = cpstn_data._resized(path, mode, 46)
        out = cpstn_data.scale_in(cpstn_data.crop_flip(img, top, left, 32,
                                                       True))
        out = out[None] if mode == "L" else np.transpose(out, (2, 0, 1))
        assert out.shape == want.shape
        assert np.array_equal(out, want), np.abs(out - want).max()


def test_image_pool_as_upstream():
    """Filling: the new image is returned and stored; full: 1/2 a stored
    image (replaced by the new one), 1/2 the new image."""

    class Draws:  # stands in for the NumPy generator
        def __init__(self, us, ks):
            self.us, self.ks = list(us), list(ks)

        def uniform(self, lo, hi):
            return self.us.pop(0)

        def integers(self, lo, hi):
            assert (lo, hi) == (0, 3)
            return self.ks.pop(0)

    imgs = [np.full((2, 2, 1), i, np.float32) for i in range(8)]
    pool = cpstn_data.ImagePool(3)
    out = pool.query(np.stack(imgs[:2]), Draws([], []))  # filling: no draws
    assert [o[0, 0, 0] for o in out] == [0, 1]
    # 2 fills the pool (no draw); 3: u 0.7 > 0.5, stored #0 returned and
    # replaced; 4: u 0.2, itself; 5: u 0.51, stored #0 (now 3) returned
    out = pool.query(np.stack(imgs[2:6]), Draws([0.7, 0.2, 0.51], [0, 0]))
    assert [o[0, 0, 0] for o in out] == [2, 0, 4, 3]
    assert [i[0, 0, 0] for i in pool.images] == [5, 1, 2]
    same = np.stack(imgs[:2])
    assert cpstn_data.ImagePool(0).query(same, None) is same
    restored = cpstn_data.ImagePool(3)
    restored.load(pool.state((2, 2, 1)))
    assert [i[0, 0, 0] for i in restored.images] == [5, 1, 2]


def test_gram_share_gradient_is_exact():
    """``2 L - stop(L)`` with the columns stopped gives MSE(Gram)'s exact
    value and gradient (batch 2: the cross-sample blocks included)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    fx = tf.constant(rng.normal(size=(2, 4, 5, 3)))
    fy = tf.constant(rng.normal(size=(2, 4, 5, 3)))

    def plain(f):
        rows = tf.reshape(tf.transpose(f, (0, 3, 1, 2)), (6, 20))
        return tf.matmul(rows, rows, transpose_b=True) / 120.0

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(fx)
        ours = cpstn_training.gram_mse_share(fx, fy, 2)
        want = tf.reduce_mean(tf.square(plain(fx) - plain(fy)))
    assert float(ours) == pytest.approx(float(want), rel=1e-12)
    np.testing.assert_allclose(tape.gradient(ours, fx),
                               tape.gradient(want, fx), rtol=1e-10,
                               atol=1e-14)


def test_mirrored_two_cpus_equals_one_device(fixture):
    """Batch 2 on 2 replicas (the Gram terms all-gather the features, the
    pools see the global batch) equals one device after a step (float64,
    see above): loss terms and pools within 1e-9, the update within 1e-6
    relative L2 (what is left, ~2e-8, is the biases before an instance
    norm: their gradient is 0 up to rounding, which Adam scales to ~1e-9
    lr, differently for any other summation order)."""
    code = """
import sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
import test_umf_train_cpstn as t
with np.load(sys.argv[1]) as z:
    fixture = {k: z[k] for k in z.files}
single = t._trainer(fixture, "float64")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
mirrored = t._trainer(fixture, "float64", strategy)
init = {k: np.asarray(v) for k, v in single.model.torch_variables().items()}
a = single.train_step(next(iter(single.dataset(0))))
b = mirrored.train_step(next(iter(mirrored.dataset(0))))
loss = max(abs(a[k] - b[k]) / abs(a[k]) for k in a)
wa = {k: np.asarray(v) for k, v in single.model.torch_variables().items()}
wb = {k: np.asarray(v) for k, v in mirrored.model.torch_variables().items()}
flat = lambda w: np.concatenate([w[k].ravel() for k in sorted(w)])
update = (np.linalg.norm(flat(wa) - flat(wb))
          / np.linalg.norm(flat(wa) - flat(init)))
pools = max(float(np.abs(np.stack(single.pools[k].images)
                         - np.stack(mirrored.pools[k].images)).max())
            for k in "AB")
print("RESULT", loss, update, pools)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURE), str(ROOT / "tests")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = np.array(proc.stdout.split("RESULT")[1].split(), float)
    print("mirrored (2 CPUs) vs one device after a step: loss rel, update "
          "rel L2, pools max abs:", values)
    assert np.isfinite(values).all()
    assert values[0] <= 1e-9 and values[1] <= 1e-6 and values[2] <= 1e-9


# ------------------------------------------------------ command line --

def _dataroot(root, n_a=2, n_b=3):
    rng = np.random.default_rng(4)
    for i in range(n_a):
        rgb = np.kron(rng.integers(0, 256, (10, 12, 3)), np.ones((4, 4, 1)))
        os.makedirs(root / "trainA", exist_ok=True)
        Image.fromarray(rgb.astype(np.uint8)).save(root / "trainA" /
                                                   f"{i:02d}.png")
    for i in range(n_b):
        write_gray(root / "trainB" / f"{i:02d}.jpg",
                   np.kron(rng.integers(0, 256, (9, 9)), np.ones((4, 4))))
    return root


def _args(root, ckpt="ckpt"):
    return ["--dataroot", root, "--ckpt", root / ckpt, "--ngf", 4, "--ndf",
            4, "--load_size", 36, "--crop_size", 32, "--vgg19", "random",
            "--n_epochs", 1, "--n_epochs_decay", 2, "--save_epoch_freq", 3,
            "--seed", 3]


def _train(root, *extra):
    return run_cli("-m", "umf.train_cpstn", *_args(root), *extra, cwd=root)


def test_kill_resume_and_generator_registers(tmp_path):
    """3 epochs of 3 steps (2 visible, 3 infrared images: max(2, 3) per
    epoch); the interrupted run is SIGKILLed once its first training state
    exists and re-run on the same --ckpt; its four networks equal the
    uninterrupted run's; G_A makes pseudo-infrared targets in
    umf.test_reg --cpstn."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    _dataroot(straight)
    _dataroot(broken)
    proc = _train(straight)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOMLY INITIALISED" in proc.stderr
    assert "2 images in A, 3 in B: 3 steps of 1 per epoch" in proc.stdout
    log = (straight / "ckpt" / "log" / "log.txt").read_text().splitlines()
    assert [line.split(", time")[0] for line in log] == [
        f"(epoch: {e}, iters: 3/3" for e in (1, 2, 3)]
    # the rate of each epoch as released: factor(e) = 1 - max(0, e + 1 -
    # 1) / 3 -> 2/3, 1/3, 0
    assert [line.split("lr: ")[1].split(")")[0] for line in log] == [
        "0.0001333", "0.0000667", "0.0000000"]

    state = broken / "ckpt" / task_state.STATE_FILE
    assert kill_once_written(["-m", "umf.train_cpstn", *_args(broken)],
                             state, broken)
    proc = _train(broken)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines()
                if l.startswith("resuming from"))
    assert line.startswith(f"resuming from {state} at step ")
    print(line)
    assert int(line.split()[-1]) < 9, line  # killed before the end
    worst = 0.0
    for n in NETS:
        kind = "cpstn_g" if n.startswith("G") else "cpstn_d"
        a = weights.load_network(straight / "ckpt" / f"3_net_{n}.weights.h5",
                                 kind)[1].torch_variables()
        b = weights.load_network(broken / "ckpt" / f"3_net_{n}.weights.h5",
                                 kind)[1].torch_variables()
        worst = max([worst] + [float(np.abs(np.asarray(a[k])
                                            - np.asarray(b[k])).max())
                               for k in a])
    assert worst <= 1e-6, worst

    # G_A (visible -> infrared) as the registration's target maker
    vi, ir = straight / "trainA", tmp_path / "ir"  # 40 x 48 RGB
    for i in range(2):
        write_gray(ir / f"0{i}.png", np.zeros((40, 48)) + 60 * i)
    proc = run_cli("-m", "umf.test_reg", "--ir_dir", ir, "--vi_dir", vi,
                   "--cpstn", straight / "ckpt" / "3_net_G_A.weights.h5",
                   "--checkpoint", ROOT.parent / "shared" / "umf-cmgr" /
                   "weights" / "reg_0800.pth", "--output_dir",
                   tmp_path / "reg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "reg").glob("*.png")) == [
        "00.png", "01.png"]


def test_bad_input_one_line_nothing_written(tmp_path):
    root = _dataroot(tmp_path)
    proc = run_cli("-m", "umf.train_cpstn", *_args(root)[:2], "--dataroot",
                   tmp_path / "nowhere", "--ckpt", tmp_path / "ckpt")
    assert_one_line_error(proc, "nowhere", "no such folder")
    os.rename(root / "trainB", root / "testB")
    proc = _train(root)
    assert_one_line_error(proc, "trainB", "no such folder")
    os.rename(root / "testB", root / "trainB")
    (root / "trainA" / "05.png").write_bytes(b"not an image")
    proc = _train(root)
    assert_one_line_error(proc, "05.png", "not an image")
    os.remove(root / "trainA" / "05.png")
    proc = _train(root, "--crop_size", 40)  # larger than --load_size 36
    assert_one_line_error(proc, "--crop_size 40", "larger")
    proc = _train(root, "--vgg19", tmp_path / "vgg19-dcbb9e9d.pth")
    assert_one_line_error(proc, "vgg19-dcbb9e9d.pth", "no such file",
                          "download.pytorch.org")
    (tmp_path / "ckpt_file").write_text("x")
    proc = run_cli("-m", "umf.train_cpstn", "--dataroot", root, "--ckpt",
                   tmp_path / "ckpt_file", "--vgg19", "random")
    assert_one_line_error(proc, "ckpt_file", "not a folder")
    assert not (tmp_path / "ckpt").exists()
    assert (tmp_path / "ckpt_file").read_text() == "x"
