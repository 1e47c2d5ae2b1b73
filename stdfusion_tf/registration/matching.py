"""Patch matching on doubled-angle features: local shifts with a quality.

A grid of square patches of the reference features is correlated, each with
its own window of the moving features, by one batched FFT; the shift of the
best normalised correlation (parabola-refined to a fraction of a pixel) and
that correlation are returned per patch.  The global stage turns the shifts
into point pairs for a robust affine / projective fit; the dense stage
smooths them into a field.
"""

import weakref

import cv2
import numpy as np
import scipy.fft as sfft

# threads for the batched FFTs (all cores: the patches are independent)
FFT_WORKERS = -1


def _windows(array, centres_y, centres_x, size):
    """[N, size, size] windows of ``array`` whose top-left corners are
    ``centre - size // 2`` (the caller keeps them inside)."""
    half = size // 2
    oy = np.asarray(centres_y, np.intp) - half
    ox = np.asarray(centres_x, np.intp) - half
    view = np.lib.stride_tricks.sliding_window_view(array, (size, size))
    return view[oy, ox]


def _parabola(left, centre, right):
    den = left - 2.0 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (left - right) / den, 0.0)
    return np.clip(off, -0.5, 0.5)


# The reference (the visible features) stays the same through a pair's many
# calls -- candidates of one round, the dense stage's two runs -- so its
# patches' spectra are kept, per array and patch grid, while the array
# lives.  Keyed by id(): the weak reference checks the entry belongs to the
# same object and drops it when the array is freed.  Feature maps are never
# changed in place.
_SPECTRA = {}


def _reference(ref, gy, gx, patch, search, stride, win, fft):
    """(conjugated FFT of the zero-padded reference patches [N, fft, fft],
    their energies [N]) for this grid, computed once per ``ref`` array."""
    key = id(ref)
    entry = _SPECTRA.get(key)
    if entry is None or entry[0]() is not ref:
        entry = (weakref.ref(ref, lambda _, k=key: _SPECTRA.pop(k, None)),
                 {})
        _SPECTRA[key] = entry
    grid = (patch, search, stride, fft)
    if grid not in entry[1]:
        rp = np.zeros((len(gy), win, win), np.complex64)
        rp[:, :patch, :patch] = _windows(ref, gy, gx, win)[
            :, search:search + patch, search:search + patch]
        fr = sfft.fft2(rp, s=(fft, fft), axes=(1, 2), workers=FFT_WORKERS)
        er = np.sum(rp.real ** 2 + rp.imag ** 2, axis=(1, 2))
        entry[1][grid] = (np.conj(fr, out=fr), er)
    return entry[1][grid]


def match(ref, mov, patch, search, stride, min_energy=None):
    """Shifts of ``mov`` against ``ref`` (complex feature maps of one size)
    on a grid of patch centres.

    Returns (ys, xs, dy, dx, quality, energy), float arrays over the patches:
    ``ref`` around (y, x) looks like ``mov`` around (y + dy, x + dx);
    ``quality`` is the normalised correlation at the peak (0 where the peak
    lies on the edge of the search range or the patch is flat)."""
    h, w = ref.shape
    win = patch + 2 * search
    half = win // 2
    if h < win or w < win:
        empty = np.zeros(0)
        return (empty,) * 6
    def grid(size):  # patch centres, the grid centred in the image
        count = (size - win) // stride + 1
        start = half + ((size - win) - (count - 1) * stride) // 2
        return start + stride * np.arange(count)

    ys, xs = grid(h), grid(w)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    mw = _windows(mov, gy, gx, win).astype(np.complex64, copy=False)
    # circular correlation of size ``fft`` >= win: shifts 0..2 search are
    # free of wrap-around since the reference patch is patch <= win - 2s
    fft = sfft.next_fast_len(win)
    fr_conj, er = _reference(ref, gy, gx, patch, search, stride, win, fft)
    fm = sfft.fft2(mw, s=(fft, fft), axes=(1, 2), workers=FFT_WORKERS)
    # only shifts 0..2 search are wanted: invert along the columns, keep
    # those n, then invert the rows of just them (the full 2-D inverse
    # would transform fft columns where n are used)
    n = 2 * search + 1
    fm *= fr_conj
    corr = sfft.ifft(fm, axis=2, workers=FFT_WORKERS)[:, :, :n]
    corr = sfft.ifft(corr, axis=1, workers=FFT_WORKERS)[:, :n, :].real
    # moving energy under the patch for every shift: box sums from one
    # integral image of the whole map (the windows overlap, so summing each
    # window on its own would repeat most of the work)
    e = mov.real.astype(np.float64) ** 2 + mov.imag.astype(np.float64) ** 2
    integral = cv2.integral(e, sdepth=cv2.CV_64F)  # [h + 1, w + 1]
    corners = np.lib.stride_tricks.sliding_window_view(integral, (n, n))
    oy, ox = gy - half, gx - half
    box = (corners[oy + patch, ox + patch] - corners[oy, ox + patch]
           - corners[oy + patch, ox] + corners[oy, ox]).astype(np.float32)
    norm = corr / np.sqrt(er[:, None, None] * np.maximum(box, 0) + 1e-9)
    flat = norm.reshape(len(norm), -1)
    k = flat.argmax(1)
    py, px = np.divmod(k, n)
    best = flat[np.arange(len(k)), k]
    inner = (py > 0) & (py < n - 1) & (px > 0) & (px < n - 1)
    pyc, pxc = np.clip(py, 1, n - 2), np.clip(px, 1, n - 2)
    i = np.arange(len(k))
    oy = _parabola(norm[i, pyc - 1, pxc], norm[i, pyc, pxc],
                   norm[i, pyc + 1, pxc])
    ox = _parabola(norm[i, pyc, pxc - 1], norm[i, pyc, pxc],
                   norm[i, pyc, pxc + 1])
    dy = np.where(inner, py + oy, py) - search
    dx = np.where(inner, px + ox, px) - search
    energy = er / (patch * patch)
    quality = np.where(inner, best, 0.0)
    if min_energy is not None:
        quality = np.where(energy >= min_energy, quality, 0.0)
    return (gy.astype(np.float64), gx.astype(np.float64), dy, dx, quality,
            energy)
