"""numba kernels for filtering and QRS detection.

Imported only by :mod:`ecgcore.delineation`, never at ``import ecgcore`` time.
Every kernel assumes clean input: C-contiguous float64, no NaN (the Python
wrappers in ``qrs.py`` and ``waves.py`` take care of that).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def sos_forward(x, sos, out):
    """Causal second-order-section filter of one row (direct form II transposed)."""
    n = x.shape[0]
    for i in range(n):
        out[i] = x[i]
    for s in range(sos.shape[0]):
        b0 = sos[s, 0]
        b1 = sos[s, 1]
        b2 = sos[s, 2]
        a1 = sos[s, 4]
        a2 = sos[s, 5]
        # start in the steady state of the first sample, so a DC offset gives no transient
        # (for a section with unit DC gain the state is x0*(1-b0), x0*(b2-a2)); general form:
        dc = (b0 + b1 + b2) / (1.0 + a1 + a2) if abs(1.0 + a1 + a2) > 1e-12 else 0.0
        x0 = out[0]
        z1 = x0 * dc - b0 * x0
        z2 = b2 * x0 - a2 * x0 * dc
        for i in range(n):
            xi = out[i]
            yi = b0 * xi + z1
            z1 = b1 * xi - a1 * yi + z2
            z2 = b2 * xi - a2 * yi
            out[i] = yi


@njit(cache=True)
def sos_cols(buf, sos, backward):
    """SOS filter of every column of ``buf`` (m, L), in place, forward in time or
    backward. The inner loop runs across leads, so the independent recurrences of the
    leads vectorise. The initial state is the steady state of the first sample."""
    m, L = buf.shape
    z1 = np.empty(L)
    z2 = np.empty(L)
    for s in range(sos.shape[0]):
        b0 = sos[s, 0]
        b1 = sos[s, 1]
        b2 = sos[s, 2]
        a1 = sos[s, 4]
        a2 = sos[s, 5]
        den = 1.0 + a1 + a2
        dc = (b0 + b1 + b2) / den if abs(den) > 1e-12 else 0.0
        i0 = m - 1 if backward else 0
        for l in range(L):
            x0 = buf[i0, l]
            z1[l] = x0 * dc - b0 * x0
            z2[l] = b2 * x0 - a2 * x0 * dc
        for k in range(m):
            i = m - 1 - k if backward else k
            for l in range(L):
                xi = buf[i, l]
                yi = b0 * xi + z1[l]
                z1[l] = b1 * xi - a1 * yi + z2[l]
                z2[l] = b2 * xi - a2 * yi
                buf[i, l] = yi


@njit(cache=True)
def sos_forward_cols(buf, sos):
    sos_cols(buf, sos, False)


@njit(cache=True)
def sos_filtfilt_rows(x, sos, padlen):
    """Zero-phase (forward-backward) filtering of each row with odd-reflection padding.

    Same result as ``scipy.signal.sosfiltfilt(sos, x, padtype="odd", padlen=padlen)``.
    Works on a (samples, leads) buffer so that all leads are filtered in one vectorised
    pass.
    """
    n_rows, n = x.shape
    out = np.empty((n_rows, n))
    p = min(padlen, n - 1)
    if p < 0:
        p = 0
    m = n + 2 * p
    buf = np.empty((m, n_rows))
    for i in range(p):
        for r in range(n_rows):
            buf[i, r] = 2.0 * x[r, 0] - x[r, p - i]
            buf[n + p + i, r] = 2.0 * x[r, n - 1] - x[r, n - 2 - i]
    for i in range(n):
        for r in range(n_rows):
            buf[p + i, r] = x[r, i]
    sos_cols(buf, sos, False)
    sos_cols(buf, sos, True)
    for i in range(n):
        for r in range(n_rows):
            out[r, i] = buf[p + i, r]
    return out


@njit(cache=True)
def _median_of(a):
    b = np.sort(a)
    k = b.shape[0]
    if k == 0:
        return 0.0
    if k % 2 == 1:
        return b[k // 2]
    return 0.5 * (b[k // 2 - 1] + b[k // 2])


@njit(cache=True)
def qrs_feature(x, fs, sos, usable):
    """Fused multi-lead QRS energy: per lead, low-pass, symmetric difference, square,
    normalise by the median of the 1-s block maxima, clip, sum over leads, then a
    centred 100-ms moving-window integration.

    The symmetric difference over 2*k samples (k = 8 ms) is a band-pass centred near
    30 Hz that ignores baseline wander; the low-pass removes powerline and EMG.
    """
    n_leads, n = x.shape
    k = max(1, int(round(0.008 * fs)))
    fused = np.zeros(n)
    lp = np.empty(n)
    e = np.zeros(n)
    block = max(1, int(fs))
    n_blocks = max(1, n // block)
    bmax = np.empty(n_blocks)
    used = 0
    # few leads: scalar filter state (registers); many leads: one vectorised pass
    few = n_leads <= 2
    buf = np.empty((n if not few else 1, n_leads))
    if not few:
        for i in range(n):
            for l in range(n_leads):
                buf[i, l] = x[l, i]
        sos_forward_cols(buf, sos)
    for l in range(n_leads):
        if not usable[l]:
            continue
        if few:
            sos_forward(x[l], sos, lp)
        else:
            for i in range(n):
                lp[i] = buf[i, l]
        for i in range(n):
            e[i] = 0.0
        for i in range(k, n - k):
            d = lp[i + k] - lp[i - k]
            e[i] = d * d
        for b in range(n_blocks):
            a = b * block
            z = n if b == n_blocks - 1 else a + block
            mx = 0.0
            for i in range(a, z):
                if e[i] > mx:
                    mx = e[i]
            bmax[b] = mx
        scale = _median_of(bmax)
        if scale <= 1e-20:
            continue
        used += 1
        inv = 1.0 / scale
        for i in range(n):
            v = e[i] * inv
            # an electrode pop or a saturated step must not drown the other leads
            fused[i] += v if v < 4.0 else 4.0
    # centred moving-window integration (cumulative sum)
    w = max(1, int(round(0.1 * fs)))
    h = w // 2
    out = np.zeros(n)
    if used == 0:
        return out
    c = np.empty(n + 1)
    c[0] = 0.0
    for i in range(n):
        c[i + 1] = c[i] + fused[i]
    for i in range(n):
        a = i - h
        z = i - h + w
        if a < 0:
            a = 0
        if z > n:
            z = n
        out[i] = (c[z] - c[a]) / (w * used)
    return out


@njit(cache=True)
def pick_beats(f, fs, refractory_s):
    """Adaptive-threshold peak picking on the fused QRS feature (Pan-Tompkins style).

    Returns the indices of accepted feature peaks. Levels: ``spk`` (signal) and ``npk``
    (noise) running estimates; threshold ``npk + 0.3 (spk - npk)``; search back at half
    threshold when no beat was found for 1.66 mean RR; a candidate within 360 ms of a
    beat and under half its height is taken for a T wave.
    """
    n = f.shape[0]
    ref = max(1, int(refractory_s * fs))
    # local maxima, thinned so that no two lie within the refractory period
    cand = np.empty(n, np.int64)
    nc = 0
    for i in range(1, n - 1):
        if f[i] > f[i - 1] and f[i] >= f[i + 1] and f[i] > 0.0:
            if nc > 0 and i - cand[nc - 1] < ref:
                if f[i] > f[cand[nc - 1]]:
                    cand[nc - 1] = i
            else:
                cand[nc] = i
                nc += 1
    beats = np.empty(nc, np.int64)
    nb = 0
    if nc == 0:
        return beats[:0]
    # initial signal level: median of 2-s block maxima (robust to one artefact)
    block = max(1, int(2 * fs))
    n_blocks = max(1, n // block)
    bm = np.empty(n_blocks)
    for b in range(n_blocks):
        a = b * block
        z = n if b == n_blocks - 1 else a + block
        mx = 0.0
        for i in range(a, z):
            if f[i] > mx:
                mx = f[i]
        bm[b] = mx
    spk = _median_of(bm)
    npk = 0.1 * spk
    rr_avg = 0.8 * fs
    last_h = spk
    j = 0
    while j < nc:
        i = cand[j]
        h = f[i]
        thr = npk + 0.3 * (spk - npk)
        # search back over a long gap before considering this candidate
        if nb > 0 and i - beats[nb - 1] > 1.66 * rr_avg:
            best = -1
            bh = 0.0
            for q in range(j - 1, -1, -1):
                c = cand[q]
                if c <= beats[nb - 1]:
                    break
                if c - beats[nb - 1] >= ref and i - c >= ref and f[c] > 0.5 * thr and f[c] > bh:
                    best = c
                    bh = f[c]
            if best >= 0:
                beats[nb] = best
                nb += 1
                spk = 0.25 * bh + 0.75 * spk
                last_h = bh
        accepted = False
        if h > thr:
            if nb > 0 and i - beats[nb - 1] < ref:
                accepted = False
            elif nb > 0 and i - beats[nb - 1] < int(0.36 * fs) and h < 0.5 * last_h:
                accepted = False  # a T wave
            else:
                accepted = True
        if accepted:
            if nb > 0:
                rr = i - beats[nb - 1]
                if rr < 2.5 * rr_avg:
                    rr_avg = 0.875 * rr_avg + 0.125 * rr
            beats[nb] = i
            nb += 1
            spk = 0.125 * h + 0.875 * spk
            last_h = h
        else:
            npk = 0.125 * h + 0.875 * npk
        j += 1
    out = beats[:nb].copy()
    out.sort()
    return out


@njit(cache=True)
def refine_r(x, usable, peaks, fs, half_s):
    """Move each feature peak to the R fiducial: the sample of largest summed,
    per-lead-normalised absolute deviation from the window mean, within +-half_s."""
    n_leads, n = x.shape
    h = max(1, int(half_s * fs))
    out = np.empty(peaks.shape[0], np.int64)
    score = np.empty(2 * h + 1)
    for b in range(peaks.shape[0]):
        a = max(0, peaks[b] - h)
        z = min(n, peaks[b] + h + 1)
        m = z - a
        for i in range(m):
            score[i] = 0.0
        for l in range(n_leads):
            if not usable[l]:
                continue
            mean = 0.0
            for i in range(a, z):
                mean += x[l, i]
            mean /= m
            mx = 0.0
            for i in range(a, z):
                d = abs(x[l, i] - mean)
                if d > mx:
                    mx = d
            if mx <= 0.0:
                continue
            for i in range(a, z):
                score[i - a] += abs(x[l, i] - mean) / mx
        best = 0
        for i in range(m):
            if score[i] > score[best]:
                best = i
        # in wide (rSR', bundle-branch) complexes take the first major deflection, not
        # the later and larger one: the first local maximum within 70 % of the largest
        top = score[best]
        for i in range(1, best):
            if score[i] >= 0.7 * top and score[i] >= score[i - 1] and score[i] >= score[i + 1]:
                best = i
                break
        out[b] = a + best
    return out
