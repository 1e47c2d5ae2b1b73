"""Image-fusion metrics as the paper group's MATLAB evaluation code computes them.

Fused image ``F``, infrared ``A``, visible ``B``: 8-bit gray arrays (a
3-channel image is first converted like MATLAB's ``rgb2gray``).  The
definitions follow ``analysis_Reference.m`` of
Linfeng-Tang/Evaluation-for-Image-Fusion, including its quirks (noted where
they are).  NumPy/SciPy only, vectorised: no TensorFlow here.

Table I of the paper uses EN, MI, VIF and SF (SF on images scaled to [0, 1]).
"""

import numpy as np
from scipy import ndimage, signal

# Every metric's name, and whether larger is better.
HIGHER_IS_BETTER = {
    "EN": True, "MI": True, "VIF": True, "SF": True, "SF255": True,
    "SD": True, "AG": True, "CC": True, "SCD": True, "Qabf": True,
    "PSNR": True, "MSE": False,
}
ALL_METRICS = tuple(HIGHER_IS_BETTER)
TABLE_I = ("EN", "MI", "VIF", "SF")

# MATLAB rgb2gray's luma coefficients (its inverse-NTSC rounding).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def rgb2gray(image):
    """MATLAB ``rgb2gray`` on uint8: weighted sum, rounded to uint8.
    2-D input is returned as is."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    rgb = image[..., :3].astype(np.float64)
    gray = rgb @ np.array(RGB2GRAY)
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)


def _u8(image):
    image = rgb2gray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"8-bit image expected, got {image.dtype}")
    return image


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def entropy(f):
    """EN: Shannon entropy (bits) of the 256-bin histogram."""
    return _entropy(np.bincount(_u8(f).ravel(), minlength=256))


def _joint_entropy(x, y):
    # The MATLAB code indexes its 256x256 joint histogram with the uint8
    # value + 1, which saturates at 255: levels 254 and 255 share a bin on
    # both axes (the marginal entropies are not affected).
    x = np.minimum(x.ravel(), 254).astype(np.int64)
    y = np.minimum(y.ravel(), 254).astype(np.int64)
    return _entropy(np.bincount(x * 256 + y, minlength=256 * 256))


def mutual_information_pair(a, f):
    """MI(A, F) = H(A) + H(F) - H(F, A) (bits) of one image pair, with the
    MATLAB code's 256-bin histograms (and its joint-histogram quirk)."""
    a, f = _u8(a), _u8(f)
    return entropy(a) + entropy(f) - _joint_entropy(f, a)


def mutual_information(f, a, b):
    """MI: [H(A) + H(F) - H(F,A)] + [H(B) + H(F) - H(F,B)] (bits)."""
    return mutual_information_pair(a, f) + mutual_information_pair(b, f)


def spatial_frequency(f, scale=1.0 / 255.0):
    """SF = sqrt(RF^2 + CF^2); RF/CF: RMS of the differences between
    vertically/horizontally adjacent pixels.  ``scale=1/255`` gives the
    paper's Table I values (images in [0, 1]); ``scale=1`` the 0..255 ones."""
    f = _u8(f).astype(np.float64) * scale
    rf2 = np.mean(np.diff(f, axis=0) ** 2)
    cf2 = np.mean(np.diff(f, axis=1) ** 2)
    return float(np.sqrt(rf2 + cf2))


def standard_deviation(f):
    """SD: population standard deviation of F (0..255)."""
    return float(np.std(_u8(f).astype(np.float64)))


def average_gradient(f):
    """AG: MATLAB ``gradient`` (central differences, one-sided at the
    borders), sum of sqrt((gx^2 + gy^2) / 2) over (rows - 1)(cols - 1)."""
    f = _u8(f).astype(np.float64)
    gy, gx = np.gradient(f)
    rows, cols = f.shape
    return float(np.sum(np.sqrt((gx ** 2 + gy ** 2) / 2))
                 / ((rows - 1) * (cols - 1)))


def _corr2(x, y):
    """MATLAB corr2 (NaN when either image is constant, as there)."""
    x = x - x.mean()
    y = y - y.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))


def correlation_coefficient(f, a, b):
    """CC: mean of corr2(A, F) and corr2(B, F)."""
    f, a, b = (_u8(x).astype(np.float64) for x in (f, a, b))
    return (_corr2(a, f) + _corr2(b, f)) / 2


def scd(f, a, b):
    """SCD: corr2(F - B, A) + corr2(F - A, B)."""
    f, a, b = (_u8(x).astype(np.float64) for x in (f, a, b))
    return _corr2(f - b, a) + _corr2(f - a, b)


def mse_psnr(f, a, b):
    """(MSE, PSNR) as the MATLAB code writes them: MSE of the images
    scaled to [0, 1], averaged over the two sources; PSNR =
    20 log10(255 / sqrt(MSE)) -- a 255 peak on a [0, 1] MSE, as written."""
    f, a, b = (_u8(x).astype(np.float64) / 255.0 for x in (f, a, b))
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    psnr = 20 * np.log10(255.0 / np.sqrt(mse)) if mse > 0 else np.inf
    return float(mse), float(psnr)


# ----------------------------------------------------------------- Qabf --

_H_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)
_H_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)


def _sobel(x):
    sx = signal.convolve2d(x, _H_X, mode="same")  # MATLAB conv2 'same'
    sy = signal.convolve2d(x, _H_Y, mode="same")
    g = np.sqrt(sx ** 2 + sy ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
    return g, angle


def _edge_preservation(g_src, a_src, g_f, a_f):
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    with np.errstate(divide="ignore", invalid="ignore"):
        # As the MATLAB code: gF/gA where gA > gF, gA/gF where gA < gF, and
        # gF itself (not 1) where they are equal.
        g = np.where(g_src > g_f, g_f / g_src,
                     np.where(g_src == g_f, g_f, g_src / g_f))
    a = 1 - np.abs(a_src - a_f) / (np.pi / 2)
    qg = tg / (1 + np.exp(kg * (g - dg)))
    qa = ta / (1 + np.exp(ka * (a - da)))
    return qg * qa


def qabf(f, a, b, unit_range=False):
    """Qabf (Xydeas-Petrovic edge preservation, L = 1).

    On 0..255 doubles, as ``analysis_Reference.m`` at the pinned commit
    0e87153 calls it (``im2double(img) * 255``).  Because of the
    equal-gradient quirk (G = gF where gA == gF) the value depends on the
    scale; ``unit_range=True`` gives images in [0, 1], as the repository's first
    version of ``analysis_Reference.m`` (5d6c43a, May 2022) passed them
    (up to ~1 % lower on TNO42).
    """
    f, a, b = (_u8(x).astype(np.float64) for x in (f, a, b))
    if unit_range:
        f, a, b = f / 255.0, a / 255.0, b / 255.0
    gf, af = _sobel(f)
    ga, aa = _sobel(a)
    gb, ab = _sobel(b)
    qaf = _edge_preservation(ga, aa, gf, af)
    qbf = _edge_preservation(gb, ab, gf, af)
    return float(np.sum(qaf * ga + qbf * gb) / np.sum(ga + gb))


# ------------------------------------------------------------------ VIF --

def fspecial_gaussian(n, sigma):
    """MATLAB ``fspecial('gaussian', n, sigma)``."""
    r = (n - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    return h / h.sum()


def _gaussian_1d(n, sigma):
    """1-D factor u of fspecial's kernel (h = u u^T: for these sizes no
    entry falls below the eps threshold, so h is separable)."""
    h = fspecial_gaussian(n, sigma)
    u = h.sum(axis=1)
    assert np.allclose(np.outer(u, u), h, rtol=0, atol=1e-15)
    return u


def _filter_valid(u, x):
    """MATLAB ``filter2(u u^T, x, 'valid')`` (correlation), separably."""
    n = len(u)
    c = n // 2
    y = ndimage.correlate1d(x, u, axis=0, mode="constant")
    y = ndimage.correlate1d(y, u, axis=1, mode="constant")
    return y[c:x.shape[0] - c, c:x.shape[1] - c]


def vifp_mscale(ref, dist):
    """Multi-scale pixel-domain VIF (Sheikh & Bovik), sigma_n^2 = 2."""
    ref = np.asarray(ref, np.float64)
    dist = np.asarray(dist, np.float64)
    sigma_nsq = 2.0
    eps = 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        u = _gaussian_1d(n, n / 5.0)
        if scale > 1:
            ref = _filter_valid(u, ref)[::2, ::2]
            dist = _filter_valid(u, dist)[::2, ::2]
        mu1, mu2 = _filter_valid(u, ref), _filter_valid(u, dist)
        s1 = _filter_valid(u, ref * ref) - mu1 * mu1
        s2 = _filter_valid(u, dist * dist) - mu2 * mu2
        s12 = _filter_valid(u, ref * dist) - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        low1 = s1 < eps
        g[low1] = 0
        sv[low1] = s2[low1]
        s1[low1] = 0
        low2 = s2 < eps
        g[low2] = 0
        sv[low2] = 0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return float(num / den)


def vif(f, a, b):
    """VIF: vifp_mscale(A, F) + vifp_mscale(B, F) on 0..255 doubles."""
    f, a, b = (_u8(x).astype(np.float64) for x in (f, a, b))
    return vifp_mscale(a, f) + vifp_mscale(b, f)


# ------------------------------------------------------------------ all --

def evaluate(f, a, b, metrics=TABLE_I):
    """{metric: value} for one (fused, infrared, visible) triple."""
    f, a, b = _u8(f), _u8(a), _u8(b)
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"sizes differ: fused {f.shape}, infrared "
                         f"{a.shape}, visible {b.shape}")
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s): {', '.join(sorted(unknown))}")
    return {m: float(METRICS[m](f, a, b)) for m in metrics}


# metric -> function of (fused, infrared, visible)
METRICS = {
    "EN": lambda f, a, b: entropy(f),
    "MI": mutual_information,
    "VIF": vif,
    "SF": lambda f, a, b: spatial_frequency(f),
    "SF255": lambda f, a, b: spatial_frequency(f, scale=1.0),
    "SD": lambda f, a, b: standard_deviation(f),
    "AG": lambda f, a, b: average_gradient(f),
    "CC": correlation_coefficient,
    "SCD": scd,
    "Qabf": qabf,
    "PSNR": lambda f, a, b: mse_psnr(f, a, b)[1],
    "MSE": lambda f, a, b: mse_psnr(f, a, b)[0],
}
