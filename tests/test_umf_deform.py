"""Seeded misaligned benchmarks: umf.make_misaligned, umf.deform."""

import json
import pathlib

import numpy as np
import pytest
from scipy import ndimage

from conftest import assert_one_line_error, run_cli, write_gray
from stdfusion_tf.errors import InputError
from stdfusion_tf.umf import deform as D

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "umf_deform.npz"


def _scene(shape, seed=0):
    """A smooth image with a few sharp edges (8-bit)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    x = 120 + 900 * ndimage.gaussian_filter(rng.normal(size=shape), 4)
    x += 50 * ((xx // 23 + yy // 17) % 2)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def test_matches_upstream_kornia():
    """Same random numbers -> upstream's images (PyTorch + kornia 0.9, see
    fixtures/make_umf_deform.py) and upstream's displacement."""
    z = np.load(FIXTURE)
    image = (z["image"] / 255.0).astype(np.float32)
    t_x, t_y = z["translation"]
    h, w = image.shape
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    moved = D.sample(image, ii - t_y, jj - t_x)
    assert np.abs(moved - z["moved_1"]).max() < 1e-5
    for alpha in (1, 20):
        e = D.elastic_field(z["noise"], alpha=alpha)
        up_e = z[f"elastic_{alpha}"].transpose(2, 0, 1)  # [H, W, xy]
        assert np.abs(e - up_e).max() < 1e-6 * alpha
        warped = D.deform_image(image, (t_y, t_x), e)
        assert np.abs(warped - z[f"warped_{alpha}"]).max() < 2e-5
        # upstream's saved disp (normalised x/y) in pixels, rows first
        up_d = (z[f"disp_{alpha}"].transpose(2, 0, 1)[::-1]
                * np.array([h / 2, w / 2])[:, None, None])
        d = D.displacement((t_y, t_x), e)
        lin_y = np.linspace(-1, 1, h)[:, None]
        lin_x = np.linspace(-1, 1, w)[None, :]
        clamped = ((np.abs(lin_y + e[1]) > 1) | (np.abs(lin_x + e[0]) > 1))
        assert np.abs(d - up_d)[:, ~clamped].max() < 1e-4
        # where upstream clamped the sampling grid, its disp is not where it
        # sampled; ours is (near the border)
        if alpha == 20:
            assert clamped.sum() > 0
        rows = d[0] + ii + t_y  # the elastic step's sampling row
        assert rows.min() >= -0.5 - 1e-9 and rows.max() <= h - 0.5 + 1e-9


def test_same_seed_same_bytes_and_per_image_independence(tmp_path):
    for stem, seed in (("x", 0), ("y", 1)):
        write_gray(tmp_path / "ir" / f"{stem}.png", _scene((40, 50), seed))
    write_gray(tmp_path / "one" / "y.png", _scene((40, 50), 1))
    D.make_folder(tmp_path / "ir", tmp_path / "a", seed=7)
    D.make_folder(tmp_path / "ir", tmp_path / "b", seed=7)
    D.make_folder(tmp_path / "ir", tmp_path / "c", seed=8)
    D.make_folder(tmp_path / "one", tmp_path / "d", seed=7)
    files = ["x.png", "y.png", "flow/x.npy", "flow/y.npy", "misaligned.json"]
    def read(folder, f):
        return (tmp_path / folder / f).read_bytes()

    for f in files:
        assert read("a", f) == read("b", f)
        if f != "misaligned.json":
            assert read("a", f) != read("c", f)
    for f in ("y.png", "flow/y.npy"):  # whatever else is in the folder
        assert read("a", f) == read("d", f)
    d = np.load(tmp_path / "a" / "flow" / "x.npy")
    assert d.dtype == np.float32 and d.shape == (2, 40, 50)
    record = json.loads((tmp_path / "a" / "misaligned.json").read_text())
    assert record["seed"] == 7 and set(record["images"]) == {"x", "y"}


@pytest.mark.parametrize("resample", ["once", "twice"])
def test_image_is_the_original_resampled_at_p_plus_d(resample):
    u8 = _scene((96, 128))
    deformed, d, _ = D.make_misaligned(u8, D.generator(3, "s"), alpha=4,
                                    resample=resample)
    ii, jj = np.mgrid[0:96, 0:128]
    once = D.to_uint8(D.sample((u8 / 255.0).astype(np.float32),
                               ii + d[0].astype(np.float64),
                               jj + d[1].astype(np.float64)))
    diff = np.abs(deformed.astype(int) - once)
    if resample == "once":  # float32 d: a rounding flip at most
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.999
    else:  # upstream's second interpolation smooths a little
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 12
    assert np.abs(d).max() > 2  # really deformed


def test_displacement_statistics():
    """Translations within ±1 % of the size; the elastic part's spread is
    the blurred uniform noise's (interior std sqrt(1/3) * sum(k^2), in
    normalised units, times W/2 pixels); |d| as upstream's RNG gives (20
    torch seeds at 256 x 256: mean |d| 1.79-3.40 px, max 5.97 on average,
    7.54 at most)."""
    h = w = 256
    k = D.gaussian_kernel1d()
    std_theory = np.sqrt(1 / 3) * np.sum(k * k) * w / 2  # pixels, per axis
    spread, means, maxes = [], [], []
    for seed in range(24):
        rng = D.generator(seed, "stats")
        (t_y, t_x), noise = D.draw(rng, (h, w))
        assert abs(t_x) <= 2.56 and abs(t_y) <= 2.56
        e = D.elastic_field(noise)
        spread.append(e[:, 60:-60, 60:-60].std(axis=(1, 2)) * w / 2)
        d = np.hypot(*D.displacement((t_y, t_x), e))
        means.append(d.mean())
        maxes.append(d.max())
    assert std_theory == pytest.approx(1.30, abs=0.01)  # px at 256 x 256
    assert np.mean(spread) == pytest.approx(std_theory, rel=0.12)
    assert 1.5 < np.mean(means) < 4.0
    assert 3.5 < np.mean(maxes) < 9.0


def test_inverse_undoes_the_deformation():
    u8 = _scene((80, 100))
    deformed, d, _ = D.make_misaligned(u8, D.generator(5, "inv"), alpha=10,
                                    resample="once")
    f = D.invert_displacement(d).astype(np.float64)
    ii, jj = np.mgrid[0:80, 0:100].astype(np.float64)
    rows, cols = ii + f[0], jj + f[1]
    residual = f + np.stack([D.sample(d[0], rows, cols, "border"),
                             D.sample(d[1], rows, cols, "border")])
    assert np.abs(residual).max() < 1e-4
    assert np.abs(f + d).max() > 0.05  # not simply -d
    # deformed(p + f(p)) = original(p), up to two bilinear interpolations;
    # -d(p) (the naive inverse) is far worse for a field this strong
    back = D.to_uint8(D.sample(deformed / 255.0, rows, cols))
    naive = D.to_uint8(D.sample(deformed / 255.0, ii - d[0], jj - d[1]))
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(back[inner].astype(int) - u8[inner])
    err_naive = np.abs(naive[inner].astype(int) - u8[inner])
    assert np.median(err) <= 1 and err.mean() < 3.0
    assert err_naive.mean() > 3 * err.mean()


@pytest.mark.parametrize("shape", [(7, 300), (300, 517)])
def test_any_size(shape):
    deformed, d, _ = D.make_misaligned(_scene(shape), D.generator(0, "z"))
    assert deformed.shape == shape and d.shape == (2,) + shape


def test_cli_writes_and_bad_input(tmp_path):
    write_gray(tmp_path / "ir" / "1.png", _scene((30, 40)))
    write_gray(tmp_path / "ir" / "2.png", _scene((33, 41), 1))
    out = tmp_path / "out"
    proc = run_cli("-m", "umf.make_misaligned", "--ir_dir", tmp_path / "ir",
                   "--output_dir", out, "--seed", 11)
    assert proc.returncode == 0, proc.stderr
    lib = tmp_path / "lib"
    D.make_folder(tmp_path / "ir", lib, 11)
    for f in ("1.png", "2.png", "flow/1.npy", "flow/2.npy"):
        assert (out / f).read_bytes() == (lib / f).read_bytes()

    def bad(needle, *args, ir=tmp_path / "ir", dst=tmp_path / "bad"):
        proc = run_cli("-m", "umf.make_misaligned", "--ir_dir", ir,
                       "--output_dir", dst, *args)
        assert_one_line_error(proc, needle)
        assert not dst.exists() or dst == ir

    (tmp_path / "empty").mkdir()
    bad("no images", "--seed", 1, ir=tmp_path / "empty")
    bad("--translate", "--seed", 1, "--translate", 1.5)
    bad("--seed", "--seed", -1)
    (tmp_path / "ir" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad("3.png", "--seed", 1)  # decoded before anything is written
    (tmp_path / "ir" / "3.png").unlink()
    bad("output folder is the input folder", "--seed", 1,
        dst=tmp_path / "ir")
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == [
        "1.png", "2.png"]
    with pytest.raises(InputError, match="--kernel_size"):
        D.make_folder(tmp_path / "ir", tmp_path / "bad", 1, kernel_size=100)
