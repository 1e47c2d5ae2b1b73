"""Global stage: a similarity search, then a robust affine / projective fit.

1. Coarse search (visible image reduced to ``COARSE`` px on its long side):
   for every scale (infrared pixels per visible pixel, a geometric grid
   around the plain resize, x1/3 .. x3) and rotation (+-15 degrees) the
   infrared image is warped into a canvas larger than the visible frame
   (the visible image may show only part of the infrared field, or the
   infrared only part of the visible), its doubled-angle features computed
   there, and the translation found by FFT cross-correlation with the
   visible features, normalised by the energy of both under the overlap.
2. The best few starts (and the plain resize) are refined at ``WORK`` px:
   patch shifts between the visible features and the warped infrared
   features give point pairs; a RANSAC affine fit (projective in the last
   round when it scores better) updates the matrix; the search window
   shrinks each round.  The candidate with the best full-frame similarity
   wins.
"""

import cv2
import numpy as np
import scipy.fft as sfft

from . import features, geometry, matching

COARSE = 96
WORK = 320
ANGLES = np.arange(-15.0, 15.0 + 1e-9, 7.5)
SCALE_RANGE = (1.0 / 3.0, 3.0)
SCALE_STEP = 2.0 ** (1.0 / 6.0)


class Pyramid:
    """An image and its ``pyrDown`` halvings, to resample from the level
    that matches the output's pixel size (no aliasing when shrinking)."""

    def __init__(self, image, smallest=8):
        self.levels = [np.asarray(image, np.float32)]
        while min(self.levels[-1].shape) >= 2 * smallest:
            self.levels.append(cv2.pyrDown(self.levels[-1]))
        self.shape = self.levels[0].shape

    def warp(self, m, out_shape, border=cv2.BORDER_REPLICATE):
        """``out(p) = image(m p)`` (``m`` output -> full-resolution pixel),
        read from the level whose pixel is at most the output's footprint."""
        scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
        level = int(np.clip(np.floor(np.log2(max(scale, 1e-6))), 0,
                            len(self.levels) - 1))
        lv = self.levels[level]
        # full-res pixel -> level pixel (pyrDown halves the pixel areas)
        to_level = geometry.resize_matrix(lv.shape, self.shape)
        return geometry.warp_matrix(lv, to_level @ m, out_shape, border)

    def inside(self, m, out_shape, margin=2.0):
        """Mask of output pixels whose source lies inside the image."""
        h, w = out_shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        x, y = geometry.apply_matrix(m, xx, yy)
        return ((x >= -0.5 + margin) & (x <= self.shape[1] - 0.5 - margin)
                & (y >= -0.5 + margin) & (y <= self.shape[0] - 0.5 - margin))


def reduced(image, long_side):
    """The image resized (area) so that its long side is ``long_side``
    (never enlarged), and the matrix reduced pixel -> original pixel."""
    h, w = image.shape
    k = min(1.0, long_side / max(h, w))
    hr, wr = max(1, int(round(h * k))), max(1, int(round(w * k)))
    if (hr, wr) == (h, w):
        return np.asarray(image, np.float32), np.eye(3)
    small = cv2.resize(np.asarray(image, np.float32), (wr, hr),
                       interpolation=cv2.INTER_AREA)
    return small, geometry.resize_matrix((h, w), (hr, wr))


def _fft_size(n):
    return cv2.getOptimalDFTSize(int(n))


def coarse_candidates(ir_pyr, vi, scales=None, angles=ANGLES, keep=4):
    """[(score, matrix visible px -> infrared px)] best first."""
    vc, to_vi = reduced(vi, COARSE)
    hc, wc = vc.shape
    fv = features.orientation(vc, 1.0)
    ev = np.abs(fv) ** 2
    ev_total = float(ev.sum())
    hi, wi = ir_pyr.shape
    base = geometry.resize_matrix((hi, wi), vi.shape)
    s0 = float(np.sqrt(base[0, 0] * base[1, 1]))
    # infrared pixels per coarse visible pixel
    k = float(np.sqrt(to_vi[0, 0] * to_vi[1, 1]))
    if scales is None:
        n_lo = int(np.ceil(np.log(1 / SCALE_RANGE[0]) / np.log(SCALE_STEP)))
        n_hi = int(np.ceil(np.log(SCALE_RANGE[1]) / np.log(SCALE_STEP)))
        scales = s0 * SCALE_STEP ** np.arange(-n_lo, n_hi + 1)
    centre_c = ((wc - 1) / 2.0, (hc - 1) / 2.0)
    centre_i = ((wi - 1) / 2.0, (hi - 1) / 2.0)
    found = []
    for s in scales:
        sc = s * k
        # the infrared image's extent in coarse pixels, and a canvas that
        # holds it, the visible frame and a quarter-frame margin around
        ext_w, ext_h = wi / sc, hi / sc
        cw = _fft_size(max(wc, ext_w) + 0.5 * max(wc, ext_w) + wc // 2)
        ch = _fft_size(max(hc, ext_h) + 0.5 * max(hc, ext_h) + hc // 2)
        if cw * ch > 16 * (COARSE * 2) ** 2:
            continue  # the infrared is a speck in the visible frame
        off = ((cw - wc) / 2.0, (ch - hc) / 2.0)
        fv_pad = np.zeros((ch, cw), np.complex64)
        fv_pad[:hc, :wc] = fv
        ev_pad = np.zeros((ch, cw), np.float32)
        ev_pad[:hc, :wc] = ev
        f_fv = np.conj(sfft.fft2(fv_pad))
        f_ev = np.conj(sfft.rfft2(ev_pad))
        for angle in angles:
            # canvas pixel u -> coarse pixel u - off -> infrared pixel
            m = (geometry.similarity(sc, angle, centre_c, centre_i)
                 @ geometry.translation(-off[0], -off[1]))
            warped = ir_pyr.warp(m, (ch, cw))
            mask = ir_pyr.inside(m, (ch, cw), margin=1.0 * sc)
            fi = features.orientation(warped, 1.0) * mask
            corr = sfft.ifft2(f_fv * sfft.fft2(fi)).real
            ov = sfft.irfft2(f_ev * sfft.rfft2(mask.astype(np.float32)),
                             s=(ch, cw))
            ei = fi.real ** 2 + fi.imag ** 2
            c = np.zeros((ch + 1, cw + 1))
            c[1:, 1:] = ei.cumsum(0).cumsum(1)
            nu, nv = ch - hc + 1, cw - wc + 1
            box = (c[hc:hc + nu, wc:wc + nv] - c[:nu, wc:wc + nv]
                   - c[hc:hc + nu, :nv] + c[:nu, :nv])
            tau = 0.5 * ev_total
            sc_map = corr[:nu, :nv] / np.sqrt(
                (np.maximum(ov[:nu, :nv], 0) + tau) * (box + tau))
            j = int(sc_map.argmax())
            uy, ux = divmod(j, nv)
            best = float(sc_map[uy, ux])
            # vis coarse q <-> canvas q + u: infrared pixel m (q + u)
            mq = m @ geometry.translation(ux, uy) @ np.linalg.inv(to_vi)
            found.append((best, s, angle, mq))
    found.sort(key=lambda t: -t[0])
    out = []
    for best, s, angle, mq in found:
        # keep distinct starts: another scale or angle, or far apart
        if any(abs(np.log(s / s2)) < 0.15 and abs(angle - a2) < 7
               and np.abs(mq[:2, 2] - m2[:2, 2]).max() < 0.1 * max(hi, wi)
               for _, s2, a2, m2 in out):
            continue
        out.append((best, s, angle, mq))
        if len(out) == keep:
            break
    return [(b, m) for b, _, _, m in out]


def frame_score(ir_pyr, fv, m_work, shape, sigma=1.0):
    """Similarity of the visible features ``fv`` (working frame) and the
    infrared warped by ``m_work`` (working pixel -> infrared pixel), over the
    pixels that see the infrared image, and that overlap's fraction."""
    warped = ir_pyr.warp(m_work, shape)
    mask = ir_pyr.inside(m_work, shape)
    fi = features.orientation(warped, sigma)
    frac = float(mask.mean())
    if frac < 0.05:
        return -1.0, frac
    return features.score(fv, fi, mask), frac


ROUNDS = ((0.16, 0.05, 6.0), (0.10, 0.025, 3.0), (0.10, 0.0125, 2.0))


def refine(ir_pyr, vw, fv, m_work, projective=True):
    """Rounds of patch matching + RANSAC fits from ``m_work`` (working
    visible pixel -> infrared pixel).  Returns the refined matrix."""
    hw, ww = vw.shape
    side = max(hw, ww)
    m = m_work.copy()
    for r, (psize, srch, thresh) in enumerate(ROUNDS):
        patch = max(12, int(round(psize * side)) // 2 * 2)
        search = max(3, int(round(srch * side)))
        stride = max(4, patch // 2)
        warped = ir_pyr.warp(m, (hw, ww))
        fi = features.orientation(warped, 1.0)
        fi *= ir_pyr.inside(m, (hw, ww))
        ys, xs, dy, dx, q, _ = matching.match(fv, fi, patch, search, stride)
        good = q > 0.3
        if good.sum() < 6:
            break
        src = np.stack([xs[good], ys[good]], 1)
        dst_x, dst_y = geometry.apply_matrix(m, xs[good] + dx[good],
                                             ys[good] + dy[good])
        dst = np.stack([dst_x, dst_y], 1)
        # RANSAC threshold in infrared pixels at the working scale
        scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
        a, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC,
                                      ransacReprojThreshold=thresh * scale,
                                      maxIters=500, confidence=0.995)
        if a is None or inl is None or inl.sum() < 6:
            break
        cand = [np.vstack([a, [0.0, 0.0, 1.0]])]
        if projective and r == len(ROUNDS) - 1 and inl.sum() >= 12:
            hmat, inh = cv2.findHomography(src, dst, cv2.RANSAC,
                                           thresh * scale)
            if hmat is not None and abs(hmat[2, 2]) > 1e-9:
                cand.append(hmat / hmat[2, 2])
        if len(cand) > 1:
            s_a = frame_score(ir_pyr, fv, cand[0], (hw, ww))[0]
            s_h = frame_score(ir_pyr, fv, cand[1], (hw, ww))[0]
            m = cand[1] if s_h > s_a + 0.002 else cand[0]
        else:
            m = cand[0]
    return m
