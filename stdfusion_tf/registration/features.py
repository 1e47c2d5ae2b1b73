"""Cross-modal structure features: the doubled-angle gradient orientation.

Infrared and visible images of one scene share edges, not intensities, and
an edge is often of opposite contrast in the two (a warm pedestrian is
bright in infrared and dark in the visible image).  The gradient angle
``a`` of such an edge differs by 180 degrees between them, so the feature
is the *doubled* angle, as a complex number of modulus below one:

    c = (gx + i gy)^2 / (|g|^2 + eps^2) = |g|^2 / (|g|^2 + eps^2) e^{2ia}

(a normalised gradient field squared).  ``Re(c_v conj(c_i)) = w_v w_i
cos(2 (a_v - a_i))`` is +1 for parallel edges of either polarity, -1 for
perpendicular ones and ~0 where either image is flat.  ``eps^2`` is the mean
squared gradient of the image, so the weights do not depend on the
contrast or brightness of either camera, and weak (noise) gradients count
little.
"""

import cv2
import numpy as np

EPS_FACTOR = 1.0
# A noisy image (a dark visible frame at night, amplified) is smoothed
# before its features are taken: where the noise is above NOISY of the
# image's intensity spread, by a Gaussian of NOISE_BLUR * (noise / spread)
# px, at most MAX_NOISE_BLUR.  Every image of RoadScene, TNO42,
# RoadScene_raw and UMF-CMGR's benchmark is under 0.047; a RoadScene visible
# image darkened to 15 % with noise of 3 % of full scale is at 0.08-0.12.
NOISY = 0.06
NOISE_BLUR = 30.0
MAX_NOISE_BLUR = 4.0


def orientation(image, sigma=1.0):
    """Complex64 [H, W] doubled-angle feature of a float image."""
    x = np.asarray(image, np.float32)
    if sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3,
                   borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3,
                   borderType=cv2.BORDER_REFLECT)
    g2 = gx * gx + gy * gy
    eps2 = EPS_FACTOR * float(g2.mean()) + 1e-12
    out = np.empty(x.shape, np.complex64)
    inv = 1.0 / (g2 + eps2)
    out.real = (gx * gx - gy * gy) * inv
    out.imag = 2.0 * gx * gy * inv
    return out


def noise_ratio(image):
    """The noise of an image relative to its intensity spread: Immerkaer's
    estimate of the noise sigma (the mean absolute response to a
    Laplacian-difference mask, which cancels smooth structure) over the
    1-99 percentile range.  Sharp texture counts as noise too (TNO42's
    richest scenes reach 0.03-0.05); the spread makes a dark image's noise
    count as much as its little contrast."""
    x = np.asarray(image, np.float32)
    if min(x.shape) < 3:
        return 0.0
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(x, -1, mask)[1:-1, 1:-1]
    sigma = np.sqrt(np.pi / 2.0) * float(np.abs(r).mean()) / 6.0
    lo, hi = np.percentile(x, (1, 99))
    return sigma / max(float(hi - lo), 1e-6)


def denoised(image):
    """``image`` smoothed for matching where it is noisy (see ``NOISY``),
    else ``image`` itself; returns (image, blur sigma px)."""
    ratio = noise_ratio(image)
    if ratio <= NOISY:
        return image, 0.0
    sigma = min(MAX_NOISE_BLUR, NOISE_BLUR * ratio)
    return cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), sigma,
                            borderType=cv2.BORDER_REFLECT), sigma


def highpass(f, sigma):
    """``f`` minus its Gaussian local mean: removes the dominant orientation
    of a region (a street scene is full of horizontal lines), which would
    otherwise correlate with any position of any image of the same kind."""
    if sigma <= 0:
        return f
    out = np.empty_like(f)
    out.real = f.real - cv2.GaussianBlur(f.real, (0, 0), sigma)
    out.imag = f.imag - cv2.GaussianBlur(f.imag, (0, 0), sigma)
    return out


def structure_energy(image, sigma=1.0):
    """How much usable structure an image has: the mean squared gradient
    relative to the squared intensity range (0 for a constant image)."""
    x = np.asarray(image, np.float32)
    if sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return float(np.mean(gx * gx + gy * gy))


def score(fv, fi, mask=None):
    """Normalised similarity of two feature maps of one size (in [-1, 1]):
    ``sum Re(fv conj fi) / sqrt(sum |fv|^2 sum |fi|^2)`` over ``mask``."""
    if mask is not None:
        fv, fi = fv[mask], fi[mask]
    num = float(np.sum(fv.real * fi.real + fv.imag * fi.imag))
    den = float(np.sqrt(np.sum(np.abs(fv) ** 2) * np.sum(np.abs(fi) ** 2)))
    return num / den if den > 0 else 0.0
