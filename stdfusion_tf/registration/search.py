"""Global stage: a similarity search, then a robust fit of the global model.

1. Starts (:func:`starts`): the plain resize turned by +-7 degrees and
   rescaled over x0.35 .. x2.8 (and, for frames of different aspect
   ratios, centred similarities over the same scales), each placed by an
   FFT translation search at ``WORK`` px (:func:`shift_search`).  Coarse
   search (visible image reduced to ``COARSE`` px on its long side) adds
   its best candidates:
   for every scale (infrared pixels per visible pixel, a geometric grid
   around the plain resize, x1/3 .. x3) and rotation (+-15 degrees) the
   infrared image is warped into a canvas larger than the visible frame
   (the visible image may show only part of the infrared field, or the
   infrared only part of the visible), its doubled-angle features computed
   there, and the translation found by FFT cross-correlation with the
   visible features, normalised by the energy of both under the overlap.
2. Every start gets one refinement round at ``WORK`` px, the best two
   (by the number of agreeing patches, :func:`consensus`) all of them:
   patch shifts between the visible features and the warped infrared
   features give point pairs; a RANSAC fit of the global model (``MODELS``)
   updates the matrix; the search window shrinks each round.  The
   candidate with the most agreeing patches (then the best full-frame
   similarity) wins.
3. When not even the winner is promising, the last starts
   (:func:`turned_starts`: turned and rescaled at once) are searched the
   same way, on their own, and the better of the two results kept.
4. When the result is not agreed with clearly enough, the caller may
   search the other way round (:func:`reverse`): the visible image into
   the infrared frame, for an infrared field much narrower than the
   visible one.
"""

import cv2
import numpy as np
import scipy.fft as sfft

from . import features, geometry, matching

COARSE = 96
WORK = 320
ANGLES = np.arange(-15.0, 15.0 + 1e-9, 7.5)
SCALE_RANGE = (1.0 / 3.0, 3.0)
SCALE_STEP = 2.0 ** (1.0 / 4.0)
HIGHPASS = 4.0  # coarse pixels
SIGMA = 1.0  # feature blur at the working size

# The global model: visible pixel -> infrared pixel.
# * similarity: rotation, one scale, shift.  Two cameras with
#   square pixels, side by side, are related by a similarity up to small
#   perspective and parallax terms, which the dense stage takes up.  It is
#   also the better-posed fit: where the matched structure is a band (a
#   horizon, a road) an affine's scale across the band is free and the
#   fit follows noise there -- on TNO42 at the easy level the affine left
#   14 of 42 pairs worse than no registration, by up to 24 px.
# * affine: also shear and a separate scale per axis (images resized
#   anisotropically before they reached us).
# * projective: affine, then a homography in the last round when it
#   scores better (cameras whose optical axes are far from parallel,
#   looking at a plane).
# * auto (default): the similarity, then, where it is not confident, an
#   affine refined from it, kept only when many patches agree with it
#   (``UPGRADE_AGREE``: fraction, count) and clearly more than with the
#   similarity (``UPGRADE``: count_affine >= a count_similarity + b).
#   Images resized to a common size from different aspect ratios are
#   related by an affine, and there the similarity finds nothing (on 20
#   RoadScene_raw pairs with the visible crop resized to 640x512, 19 fell
#   back); the affine then agrees with 40-76 % of the patches.  Where an
#   affine only follows a band of structure (TNO42 at the easy level) it
#   gains patches too, but fewer: 28 % on the pair it moved by 25 px.
MODELS = ("auto", "similarity", "affine", "projective")
UPGRADE = (1.25, 4)
UPGRADE_AGREE = (0.4, 24)
# ``auto``: the first candidates (the plain resize, as it is and shifted)
# that the similarity does not make promising also get an affine at once
AFFINE_AT_ONCE = 2


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
        scale = geometry.scale_of(m)
        level = int(np.clip(np.floor(np.log2(max(scale, 1e-6))), 0,
                            len(self.levels) - 1))
        lv = self.levels[level]
        # full-res pixel -> level pixel (pyrDown halves the pixel areas)
        to_level = geometry.resize_matrix(lv.shape, self.shape)
        return geometry.warp_matrix(lv, to_level @ m, out_shape, border)

    def inside(self, m, out_shape, margin=2.0):
        """Mask (float32 0/1) of output pixels whose source lies inside the
        image, ``margin`` full-resolution pixels from its edge."""
        h, w = out_shape
        hi, wi = self.shape
        inner = (geometry.translation(-margin, -margin) @ m)
        size = (max(1, int(np.ceil(hi - 2 * margin))),
                max(1, int(np.ceil(wi - 2 * margin))))
        ones = np.ones(size, np.float32)
        # nearest: a pixel is in or out (no ramp at the edge)
        flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        if np.allclose(inner[2], [0.0, 0.0, 1.0]):
            return cv2.warpAffine(ones, inner[:2], (w, h), flags=flags,
                                  borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
        return cv2.warpPerspective(ones, inner, (w, h), flags=flags,
                                   borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0)


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


def coarse_candidates(ir_pyr, vi, scales=None, angles=ANGLES, keep=4,
                      return_params=False):
    """[(score, matrix visible px -> infrared px)] best first."""
    vc, to_vi = reduced(vi, COARSE)
    hc, wc = vc.shape
    fv = features.highpass(features.orientation(vc, 1.0), HIGHPASS)
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
            fi = features.highpass(features.orientation(warped, 1.0) * mask,
                                   HIGHPASS) * mask
            corr = sfft.ifft2(f_fv * sfft.fft2(fi)).real
            ov = sfft.irfft2(f_ev * sfft.rfft2(mask), s=(ch, cw))
            c = cv2.integral(fi.real ** 2 + fi.imag ** 2, sdepth=cv2.CV_64F)
            nu, nv = ch - hc + 1, cw - wc + 1
            box = (c[hc:hc + nu, wc:wc + nv] - c[:nu, wc:wc + nv]
                   - c[hc:hc + nu, :nv] + c[:nu, :nv])
            tau = 0.5 * ev_total
            # normalised by the visible energy of the whole frame (not just
            # of the overlap): a small overlap cannot score high by chance
            sc_map = corr[:nu, :nv] / np.sqrt(
                (np.maximum(ov[:nu, :nv], 0) + ev_total) * (box + tau))
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
    if return_params:
        return out
    return [(b, m) for b, _, _, m in out]


# starts: the plain resize turned a little, and rescaled over x1/3 .. x3
START_ANGLES = (0.0, -7.0, 7.0)
START_SCALES = tuple(2.0 ** (k / 4.0) for k in range(-6, 7) if k != 0)
# and, when nothing else was promising, turned and rescaled at once
# (degrees, scale): for a turn beyond the first round's reach with a scale
# change (the coarse search at COARSE px, which also covers these, tells
# the modalities apart poorly).  At the extreme level (+-15 degrees,
# x0.7-1.4) these found 3 of the 7 RoadScene pairs (of 28) that the search
# missed, e.g. 10 degrees with x1.32; the 18 of every angle in (-14, -7,
# 7, 14) with every scale in 2^(k/4), k = -2..2, found the same 3 at three
# times the cost
TURNED_STARTS = tuple((a, 2.0 ** (k / 4.0)) for a, k in (
    (-14.0, 0), (14.0, 0), (-7.0, -1), (-7.0, 1), (7.0, -1), (7.0, 1)))
# frames whose aspect ratios differ by more than this (log ratio) also get
# isotropic starts
ASPECT_TOLERANCE = 0.05


def starts(ir_shape, vi_shape):
    """Starting matrices (visible pixel -> infrared pixel) about the plain
    resize: turned by ``START_ANGLES`` at its own scale, rescaled by
    ``START_SCALES`` (about the frame centres).  Each is placed by a
    translation search (:func:`shift_search`) before refinement.

    When the two frames differ in aspect ratio (by more than
    ``ASPECT_TOLERANCE``), the plain resize stretches one axis against the
    other, which no pair of cameras with square pixels does: centred
    similarities (one scale for both axes, the geometric mean of the
    resize's two, and ``START_SCALES`` about it) are then tried before the
    rescaled plain resizes.  (:func:`turned_starts`: those tried last.)"""
    base = geometry.resize_matrix(ir_shape, vi_shape)
    cv = ((vi_shape[1] - 1) / 2.0, (vi_shape[0] - 1) / 2.0)
    out = [base @ geometry.similarity(1.0, a, cv, cv) for a in START_ANGLES]
    rescaled = [base @ geometry.similarity(s, 0.0, cv, cv)
                for s in START_SCALES]
    if abs(np.log(base[0, 0] / base[1, 1])) > ASPECT_TOLERANCE:
        ci = ((ir_shape[1] - 1) / 2.0, (ir_shape[0] - 1) / 2.0)
        s0 = float(np.sqrt(base[0, 0] * base[1, 1]))
        out += [geometry.similarity(s0 * s, 0.0, cv, ci)
                for s in (1.0,) + START_SCALES]
    return out + rescaled


def turned_starts(ir_shape, vi_shape):
    """Further starts, tried only when nothing else was promising: the
    plain resize turned and rescaled at once (``TURNED_STARTS``), about the
    frame centre."""
    base = geometry.resize_matrix(ir_shape, vi_shape)
    cv = ((vi_shape[1] - 1) / 2.0, (vi_shape[0] - 1) / 2.0)
    return [base @ geometry.similarity(s, a, cv, cv)
            for a, s in TURNED_STARTS]


def frame_score(ir_pyr, fv, m_work, shape, sigma=None):
    """Similarity of the visible features ``fv`` (working frame) and the
    infrared warped by ``m_work`` (working pixel -> infrared pixel), over the
    pixels that see the infrared image, and that overlap's fraction."""
    warped = ir_pyr.warp(m_work, shape)
    mask = ir_pyr.inside(m_work, shape) > 0
    fi = features.orientation(warped, SIGMA if sigma is None else sigma)
    frac = float(mask.mean())
    if frac < 0.05:
        return -1.0, frac
    # the visible energy of the whole frame, so that covering a small part
    # of it well does not beat covering all of it
    num = float(np.sum((fv.real * fi.real + fv.imag * fi.imag)[mask]))
    ei = float(np.sum((fi.real ** 2 + fi.imag ** 2)[mask]))
    ev = float(np.sum(fv.real ** 2 + fv.imag ** 2))
    return num / np.sqrt(ev * ei + 1e-12), frac


ROUNDS = ((0.16, 0.05, 6.0), (0.10, 0.025, 3.0), (0.10, 0.0125, 2.0))
FINE_ROUND = (0.08, 0.006, 1.5)  # at up to 640 px
# the first round again with smaller patches when its large ones give too
# few clear matches: in a dark, sparse visible image (a night pair) a large
# patch mixes structures the infrared image does not share
SPARSE_ROUND = (0.10, 0.05, 6.0)
SPARSE_BELOW = 12  # clear matches


def fitted_model(m, model):
    """The model a matrix found with ``model`` is refined further with:
    ``auto`` gives a similarity or an affine, whichever ``m`` is."""
    if model != "auto":
        return model
    a = np.asarray(m, np.float64)[:2, :2]
    c0, c1 = a[:, 0], a[:, 1]
    n0, n1 = np.linalg.norm(c0), np.linalg.norm(c1)
    similar = (abs(n0 - n1) <= 1e-3 * max(n0, n1)
               and abs(c0 @ c1) <= 1e-3 * n0 * n1)
    return "similarity" if similar else "affine"


def refine_round(ir_pyr, vw, fv, m, r, model="similarity", setting=None):
    """One round of patch matching + RANSAC fit of ``model`` (``MODELS``)
    from ``m`` (working visible pixel -> infrared pixel); returns the new
    matrix or None.
    ``setting``: (patch, search, RANSAC threshold) instead of
    ``ROUNDS[r]`` (fractions of the long side; threshold in pixels)."""
    hw, ww = vw.shape
    side = max(hw, ww)
    psize, srch, thresh = setting or ROUNDS[r]
    patch = max(12, int(round(psize * side)) // 2 * 2)
    search = max(3, int(round(srch * side)))
    stride = max(4, patch // 2)
    warped = ir_pyr.warp(m, (hw, ww))
    fi = features.orientation(warped, SIGMA)
    fi *= ir_pyr.inside(m, (hw, ww))
    ys, xs, dy, dx, q, _ = matching.match(fv, fi, patch, search, stride)
    good = q > 0.3
    if r == 0 and setting is None and good.sum() < SPARSE_BELOW:
        return refine_round(ir_pyr, vw, fv, m, r, model, SPARSE_ROUND)
    if good.sum() < 6:
        return None
    src = np.stack([xs[good], ys[good]], 1)
    dst_x, dst_y = geometry.apply_matrix(m, xs[good] + dx[good],
                                         ys[good] + dy[good])
    dst = np.stack([dst_x, dst_y], 1)
    # RANSAC threshold in infrared pixels at the working scale
    scale = geometry.scale_of(m)
    # the sparse first round fits a similarity (4 degrees of freedom): its
    # small patches also match by chance, and a full affine would follow
    fit = cv2.estimateAffinePartial2D \
        if model == "similarity" or setting is SPARSE_ROUND \
        else cv2.estimateAffine2D
    a, inl = fit(src, dst, method=cv2.RANSAC,
                 ransacReprojThreshold=thresh * scale, maxIters=500,
                 confidence=0.995)
    if a is None or inl is None or inl.sum() < 6:
        return None
    m_a = np.vstack([a, [0.0, 0.0, 1.0]])
    if model == "projective" and r >= len(ROUNDS) - 1 and inl.sum() >= 12:
        hmat, _ = cv2.findHomography(src, dst, cv2.RANSAC, thresh * scale)
        if hmat is not None and abs(hmat[2, 2]) > 1e-9:
            hmat = hmat / hmat[2, 2]
            s_a = frame_score(ir_pyr, fv, m_a, (hw, ww))[0]
            s_h = frame_score(ir_pyr, fv, hmat, (hw, ww))[0]
            if s_h > s_a + 0.002:
                return hmat
    return m_a


def shift_search(ir_pyr, fv, m, pad=0.3):
    """The translation that best aligns the infrared warped by ``m``
    (working visible pixel -> infrared pixel) with the visible features
    ``fv``, by one FFT correlation over a canvas ``pad`` of the frame larger
    on every side (high-passed features, normalised by the energies under
    the overlap).  Returns ``m`` moved by that shift."""
    hw, ww = fv.shape
    py, px = int(pad * hw), int(pad * ww)
    ch, cw = _fft_size(hw + 2 * py), _fft_size(ww + 2 * px)
    mc = m @ geometry.translation(-px, -py)
    warped = ir_pyr.warp(mc, (ch, cw))
    mask = ir_pyr.inside(mc, (ch, cw))
    hp = 4.0 * max(hw, ww) / COARSE
    fi = features.highpass(features.orientation(warped, SIGMA) * mask,
                           hp) * mask
    fvh = features.highpass(fv, hp)
    fv_pad = np.zeros((ch, cw), np.complex64)
    fv_pad[:hw, :ww] = fvh
    corr = sfft.ifft2(np.conj(sfft.fft2(fv_pad)) * sfft.fft2(fi)).real
    ev = np.zeros((ch, cw), np.float32)
    ev[:hw, :ww] = fvh.real ** 2 + fvh.imag ** 2
    ev_total = float(ev.sum())
    ov = sfft.irfft2(np.conj(sfft.rfft2(ev)) * sfft.rfft2(mask), s=(ch, cw))
    c = cv2.integral(fi.real ** 2 + fi.imag ** 2, sdepth=cv2.CV_64F)
    nu, nv = ch - hw + 1, cw - ww + 1
    box = (c[hw:hw + nu, ww:ww + nv] - c[:nu, ww:ww + nv]
           - c[hw:hw + nu, :nv] + c[:nu, :nv])
    tau = 0.25 * ev_total
    score = corr[:nu, :nv] / np.sqrt(
        (np.maximum(ov[:nu, :nv], 0) + tau) * (box + tau))
    uy, ux = divmod(int(score.argmax()), nv)
    return mc @ geometry.translation(ux, uy)


# a start whose first round this many structured patches agree with
# (fraction, count) is refined at once; if its refined result is agreed
# with by CONFIDENT (fraction, count), the search ends there: the remaining
# starts and the coarse search are not tried
PROMISING = (0.2, 12)
CONFIDENT = (0.45, 24)


def agreed(frac, count, bar):
    """Whether a :func:`consensus` (fraction, count) reaches ``bar``
    (fraction, count); never for ``bar`` None."""
    return bar is not None and frac >= bar[0] and count >= bar[1]


def refine(ir_pyr, vw, fv, starts, keep=2, unshifted=3, shifted=None,
           more=None, confident=CONFIDENT, model="auto", last=()):
    """Refine several starts (working visible pixel -> infrared pixel):
    one round for each, then the ``keep`` best go through the remaining
    rounds.  Candidates are ranked by the number of patches that agree with
    them (:func:`consensus`), then by the full-frame similarity: a count
    does not favour a small overlap the way a normalised score can, nor
    penalise a right one that covers part of the frame.  A promising start
    (``PROMISING`` after its first round) is refined at once, and a
    ``confident`` refined result ends the search.  ``more``: a callable
    giving further (already placed) starts, tried only when no start was
    confident.  ``last``: starts searched the same way, on their own, only
    when the best result is not even ``PROMISING``.  Returns (score, matrix,
    agreeing fraction, agreeing count) of the best."""
    if shifted is None:
        shifted = len(starts) - unshifted
    first_fit = "similarity" if model == "auto" else model
    scored = []
    final = []

    def rounds(m, fit, first=1):
        for r in range(first, len(ROUNDS)):
            m_new = refine_round(ir_pyr, vw, fv, m, r, fit)
            if m_new is None:
                break
            m = m_new
        return m

    def full(m):
        m = rounds(m, first_fit)
        frac, count = consensus(ir_pyr, vw, fv, m)
        if model == "auto" and not agreed(frac, count, confident):
            m_aff = rounds(m, "affine", 0)
            frac_a, count_a = consensus(ir_pyr, vw, fv, m_aff)
            if (agreed(frac_a, count_a, UPGRADE_AGREE)
                    and count_a >= UPGRADE[0] * count + UPGRADE[1]):
                m, frac, count = m_aff, frac_a, count_a
        score = frame_score(ir_pyr, fv, m, vw.shape)[0]
        final.append((count, score, frac, m))
        return agreed(frac, count, confident)

    def affine_at_once(m):
        """``auto``: an affine refined from ``m`` in all rounds, kept only
        when it is agreed with as ``UPGRADE_AGREE`` asks; True when it is
        confident (the search ends)."""
        m_aff = rounds(m, "affine", 0)
        frac, count = consensus(ir_pyr, vw, fv, m_aff)
        if not agreed(frac, count, UPGRADE_AGREE):
            return False
        final.append((count, frame_score(ir_pyr, fv, m_aff, vw.shape)[0],
                      frac, m_aff))
        return agreed(frac, count, confident)

    n_tried = [0]

    def tried(cands):
        for m in cands:
            m1 = refine_round(ir_pyr, vw, fv, m, 0, first_fit)
            cand = m if m1 is None else m1
            frac, count = consensus(ir_pyr, vw, fv, cand)
            score = frame_score(ir_pyr, fv, cand, vw.shape)[0]
            n_tried[0] += 1
            if agreed(frac, count, PROMISING):
                scored.append((count, score, frac, cand, True))
                if full(cand):
                    return True
            else:
                scored.append((count, score, frac, cand, False))
                # images resized from another aspect ratio: the similarity
                # does not fit even at the plain resize, an affine does --
                # try it there at once rather than after every start
                if (model == "auto" and n_tried[0] <= AFFINE_AT_ONCE
                        and affine_at_once(m)):
                    return True
        return False

    done = False
    for i, m0 in enumerate(starts):
        # the first ``unshifted`` starts are also tried where they are, the
        # next ``shifted`` ones after a translation search, the rest (the
        # coarse search's candidates, already placed) as they are
        if i < unshifted:
            tries = (m0, lambda m0=m0: shift_search(ir_pyr, fv, m0))
        elif i < unshifted + shifted:
            tries = (lambda m0=m0: shift_search(ir_pyr, fv, m0),)
        else:
            tries = (m0,)
        if tried(t() if callable(t) else t for t in tries):
            done = True
            break
    if not done and more is not None:
        tried(more())
    if not done:
        scored.sort(key=lambda t: (-t[0], -t[1]))
        final.append(scored[0][:4])
        # the best first-round candidates not refined yet, up to ``keep``
        # refined in all
        refined = sum(c[4] for c in scored)
        for c in [c for c in scored if not c[4]][:max(0, keep - refined)]:
            full(c[3])
    count, score, frac, m = max(final, key=lambda t: t[:2])
    if last and not agreed(frac, count, PROMISING):
        # nothing found: the last starts, on their own (they do not take
        # the refinement of the others' best candidates away); they are
        # for turned cameras, so ``auto`` refines only the similarity, and
        # only the best of them (the cost falls on pairs that fall back)
        s2, m2, frac2, count2 = refine(
            ir_pyr, vw, fv, list(last), keep=1, unshifted=0,
            shifted=len(last), confident=confident,
            model="similarity" if model == "auto" else model)
        if (count2, s2) > (count, score):
            return s2, m2, frac2, count2
    return score, m, frac, count


def consensus(ir_pyr, vw, fv, m):
    """(fraction, number) of the structured patches (inside the infrared
    image) that agree with ``m``: their correlation peak is clear (> 0.3)
    and within 1.5 working pixels of zero shift.  A right registration of a real pair agrees in many
    patches; a wrong one that happens to score well in a few does not."""
    hw, ww = vw.shape
    side = max(hw, ww)
    patch = max(12, int(round(0.10 * side)) // 2 * 2)
    search = max(3, int(round(0.02 * side)))
    warped = ir_pyr.warp(m, (hw, ww))
    mask = ir_pyr.inside(m, (hw, ww))
    fi = features.orientation(warped, SIGMA) * mask
    ys, xs, dy, dx, q, energy = matching.match(fv, fi, patch, search,
                                               patch // 2)
    if len(q) == 0:
        return 0.0, 0
    iy = np.clip(ys.astype(int), 0, hw - 1)
    ix = np.clip(xs.astype(int), 0, ww - 1)
    structured = (energy > 0.5 * np.median(energy)) & (mask[iy, ix] > 0)
    agree = structured & (q > 0.3) & (np.hypot(dy, dx) < 1.5)
    return float(agree.sum() / max(1, structured.sum())), int(agree.sum())


# the reverse search (:func:`reverse`) is used only where the infrared
# image covers at most this fraction of the visible frame
NARROW_COVER = 0.5
# the infrared frame's working size (long side) in the reverse search: the
# visible image enlarged into it is blurred, and at 160 px the reverse
# search found 4 of 5 zoomed RoadScene pairs (the infrared field 3x
# narrower; to within 13 px of the enlarged frame, 4 visible px), at 240
# and 320 px 3
REVERSE_WORK = 160
# its result is checked at this size (never enlarged), where chance
# agreement is rarer.  Of the patches of the infrared frame, at most 8.7 %
# agreed with the reverse search's result on the 136 pairs of unrelated
# scenes (of 151: RoadScene infrared against another pair's visible image,
# clean and at night) where it returned a narrow one (at 160 px up to
# 23.3 %), and at least 10.2 % with each of the 28 right results (within
# 15 px) on pairs with a narrower infrared field (RoadScene_raw cropped,
# zoomed RoadScene pairs); of the 16 wrong ones there, one reached 11.0 %,
# the others at most 8.6 %.  REVERSE_AGREE: (fraction, count) needed
REVERSE_VERIFY = 240
REVERSE_AGREE = (0.12, 8)


def footprint(m, ir_shape, vi_shape, step=8):
    """The fraction of the visible frame whose pixels ``m`` (visible pixel
    -> infrared pixel) sends inside the infrared image."""
    h, w = vi_shape
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    x, y = geometry.apply_matrix(m, xx, yy)
    hi, wi = ir_shape
    return float(np.mean((x >= 0) & (x <= wi - 1) & (y >= 0)
                         & (y <= hi - 1)))


def reverse(ir, vi, model="auto", work=REVERSE_WORK):
    """The global search the other way round: the visible image warped
    into the infrared frame.  For an infrared camera with a much narrower
    field than the visible one (a long infrared lens beside a wide visible
    one) the infrared image covers a small part of the visible frame: at
    ``WORK`` px that part holds too few patches for the first rounds, while
    in the infrared frame the visible image covers everything, as a wide
    infrared field does in the forward search.  The infrared frame is
    worked at ``work`` px; only the starts that enlarge the visible image
    by 2^(1/2) or more are tried.

    Returns None when the result is not narrow (``NARROW_COVER``: a wider
    infrared field is the forward search's case), else a dict: ``matrix``
    (visible pixel -> infrared pixel), ``agree`` and ``base`` (the
    (fraction, count) of :func:`consensus` in the infrared frame at
    ``work`` px, for the result and for the plain resize) and ``verify``
    (the result's at ``REVERSE_VERIFY`` px)."""
    pyr_v = Pyramid(vi)
    iw, to_ir = reduced(ir, work)
    fi = features.orientation(iw, SIGMA)
    # only the starts that show the visible image enlarged enough for a
    # narrow infrared field (the others are the forward search's)
    resize = geometry.resize_matrix(vi.shape, ir.shape)
    s0 = geometry.scale_of(resize)
    begin = [m0 for m0 in starts(vi.shape, ir.shape)
             if geometry.scale_of(m0) <= np.sqrt(NARROW_COVER) * s0
             * (1 + 1e-6)]
    _, m_w, frac, count = refine(
        pyr_v, iw, fi, [m0 @ to_ir for m0 in begin], unshifted=0,
        shifted=len(begin),
        model="similarity" if model == "auto" else model)
    full = m_w @ np.linalg.inv(to_ir)  # infrared pixel -> visible pixel
    m = np.linalg.inv(full)
    m /= m[2, 2]
    if footprint(m, ir.shape, vi.shape) > NARROW_COVER:
        return None
    base = consensus(pyr_v, iw, fi, resize @ to_ir)
    iv, to_iv = reduced(ir, REVERSE_VERIFY)
    verify = consensus(pyr_v, iv, features.orientation(iv, SIGMA),
                       full @ to_iv)
    return {"matrix": m, "agree": (frac, count), "base": base,
            "verify": verify}
