"""Registration metrics as UMF-CMGR's ``Evaluation/metrics.py`` computes them.

Upstream compares a (deformed or registered) infrared image with the aligned
ground truth, both read with ``cv2.imread(path, IMREAD_GRAYSCALE)`` and scaled
``u8 / 255.`` (float64, then cast to float32), and calls every metric as
``metric(img_gt, img_in)``.  The arithmetic is float32 throughout, and it
matters for LNCC: its local variances are differences of large window sums
(``I2_sum - 2 u_I I_sum + u_I^2 n``), so the float32 cancellation error is of
the size of the ``1e-5`` in its denominator.  On RoadScene's 221 deformed
pairs float32 gives LNCC 0.46757 and float64 0.46768; this module repeats the
float32 operations in upstream's order, and its window sums add the 17 x 17
shifted images one by one in row-major window order, as PyTorch's CPU
convolution with a ones kernel does (measured: the means agree with the
PyTorch code to 1e-9, every image to 3e-7 relative).

Added here (not upstream): MI in bits (this project's fusion-metric
definition, one image pair) and the end-point error of an estimated flow.
NumPy only.
"""

import numpy as np

from .. import metrics as fusion_metrics

# Every metric's name, and whether larger is better.
HIGHER_IS_BETTER = {"MSE": False, "NCC": True, "LNCC": True, "MI": True,
                    "EPE": False}
IMAGE_METRICS = ("MSE", "NCC", "LNCC", "MI")


def to_float(u8):
    """Upstream's scaling: ``u8 / 255.`` in float64, then float32 (not
    ``u8 * (1 / 255)``, which rounds differently)."""
    return (np.asarray(u8, np.uint8) / 255.0).astype(np.float32)


def _f32(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return to_float(x)
    return x.astype(np.float32, copy=False)


def _check(gt, image):
    gt, image = _f32(gt), _f32(image)
    if gt.ndim != 2 or gt.shape != image.shape:
        raise ValueError(f"two 2-D images of one size expected, got "
                         f"{gt.shape} and {image.shape}")
    return gt, image


def mse(gt, image):
    """``mean((gt - image)^2)`` in float32."""
    gt, image = _check(gt, image)
    return float(np.mean((gt - image) ** 2, dtype=np.float32))


def ncc(gt, image):
    """Global normalised cross-correlation (Pearson r), as upstream's
    ``NCC.similarity_loss(tgt=gt, warped=image)``: population variances, and
    the asymmetric guards ``sqrt((var_gt + 1e-5) (var_image + 1e-6))``."""
    gt, image = _check(gt, image)
    x, y = gt.ravel(), image.ravel()
    dx = x - np.mean(x, dtype=np.float32)
    dy = y - np.mean(y, dtype=np.float32)
    var1 = np.mean(dx * dx, dtype=np.float32)
    var2 = np.mean(dy * dy, dtype=np.float32)
    cov = np.mean(dx * dy, dtype=np.float32)
    return float(cov / np.sqrt((var1 + np.float32(1e-5))
                               * (var2 + np.float32(1e-6))))


def window_sums(planes, window):
    """Sums over ``window x window`` neighbourhoods with zero padding of
    ``window // 2`` (``F.conv2d`` with a ones kernel, padding ``window // 2``),
    in the planes' dtype, adding the shifted planes one by one (window row
    by window row) as PyTorch's CPU convolution accumulates them.

    ``planes``: [..., H, W]."""
    if window < 1 or window % 2 != 1:
        raise ValueError(f"an odd window size is expected, got {window}")
    planes = np.asarray(planes)
    r = window // 2
    h, w = planes.shape[-2:]
    pad = [(0, 0)] * (planes.ndim - 2) + [(r, r), (r, r)]
    padded = np.pad(planes, pad)
    out = np.zeros_like(planes)
    for i in range(window):
        for j in range(window):
            out += padded[..., i:i + h, j:j + w]
    return out


def lncc(gt, image, window=17):
    """Local NCC as upstream's ``LNCC.forward(I=gt, J=image, win=[17])``:
    mean over pixels of ``cross^2 / (var_I var_J + 1e-5)`` with the window
    sums and moments in float32 and upstream's operation order.  Windows
    reaching over the border count the zero padding (``n`` stays
    ``window^2``)."""
    i, j = _check(gt, image)
    sums = window_sums(np.stack([i, j, i * i, j * j, i * j]), window)
    i_sum, j_sum, i2_sum, j2_sum, ij_sum = sums
    n = np.float32(window * window)  # upstream: np.prod(win), an integer
    u_i = i_sum / n
    u_j = j_sum / n
    cross = ij_sum - u_j * i_sum - u_i * j_sum + u_i * u_j * n
    i_var = i2_sum - 2 * u_i * i_sum + u_i * u_i * n
    j_var = j2_sum - 2 * u_j * j_sum + u_j * u_j * n
    cc = cross * cross / (i_var * j_var + np.float32(1e-5))
    return float(np.mean(cc, dtype=np.float32))


def mutual_information(gt, image):
    """MI(gt, image) in bits from 256-bin histograms of the 8-bit images:
    this project's fusion MI (``stdfusion_tf.metrics``), one pair."""
    return fusion_metrics.mutual_information_pair(gt, image)


def end_point_error(flow, true_flow):
    """Mean Euclidean distance (pixels) between two displacement fields
    [2, H, W] (channel 0 rows/dy, channel 1 columns/dx), in float64."""
    flow = np.asarray(flow, np.float64)
    true_flow = np.asarray(true_flow, np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2 or flow.shape != true_flow.shape:
        raise ValueError(f"two [2, H, W] flows of one size expected, got "
                         f"{flow.shape} and {true_flow.shape}")
    return float(np.mean(np.sqrt(np.sum((flow - true_flow) ** 2, axis=0))))


def evaluate(gt, image, metrics=IMAGE_METRICS):
    """{metric: value} of one (ground truth, image) pair of 8-bit images."""
    gt, image = np.asarray(gt), np.asarray(image)
    if gt.dtype != np.uint8 or image.dtype != np.uint8:
        raise ValueError("8-bit images expected")
    funcs = {"MSE": mse, "NCC": ncc, "LNCC": lncc, "MI": mutual_information}
    unknown = set(metrics) - set(funcs)
    if unknown:
        raise ValueError(f"unknown metric(s): {', '.join(sorted(unknown))}")
    _check(gt, image)
    return {m: float(funcs[m](gt, image)) for m in metrics}
