"""numba kernels for per-lead wave delineation (P, QRS, T) around known R fiducials.

Each kernel handles one lead and all its beats; the caller (``waves.py``) loops
over leads and decides presence, fusion and flags. The kernels always return
*candidate* boundaries; whether a wave is really there is decided from the
features they also return (amplitudes, noise), so that the thresholds live in
Python where a researcher can read and change them.

Indices in the output: 0 P_on, 1 P_peak, 2 P_off, 3 QRS_on, 4 R, 5 QRS_off,
6 T_on, 7 T_peak, 8 T_off (-1 = not found).
Features: 0 P amplitude (signed, vs isoelectric), 1 T amplitude (signed),
2 QRS peak-to-peak, 3 isoelectric level, 4 high-frequency noise RMS in the P window,
5 R amplitude (signed, vs isoelectric).
"""

from __future__ import annotations

import numpy as np
from numba import njit

N_MARKS = 9
N_FEATS = 6


@njit(cache=True)
def smooth(y, w):
    """Centred moving average of width w (odd), edges shrink."""
    n = y.shape[0]
    out = np.empty(n)
    c = np.empty(n + 1)
    c[0] = 0.0
    for i in range(n):
        c[i + 1] = c[i] + y[i]
    h = w // 2
    for i in range(n):
        a = i - h
        z = i + h + 1
        if a < 0:
            a = 0
        if z > n:
            z = n
        out[i] = (c[z] - c[a]) / (z - a)
    return out


@njit(cache=True)
def deriv(y):
    n = y.shape[0]
    d = np.zeros(n)
    for i in range(1, n - 1):
        d[i] = 0.5 * (y[i + 1] - y[i - 1])
    return d


@njit(cache=True)
def _trapezium_end(v, xm, xr):
    """Vázquez-Seisdedos trapezium: the sample in [xm, xr] (either direction) that
    maximises 0.5 |v[xm] - v[xi]| |2 xr - xi - xm|; the wave end where the signal
    flattens after its steepest slope."""
    best = xm
    ba = -1.0
    step = 1 if xr >= xm else -1
    i = xm
    while True:
        a = 0.5 * abs(v[xm] - v[i]) * abs(2 * xr - i - xm)
        if a > ba:
            ba = a
            best = i
        if i == xr:
            break
        i += step
    return best


@njit(cache=True)
def _argmax_abs_extremum(v, a, z, sign):
    """Index of the local extremum of v in (a, z) with the largest |v| (sign=0), or
    the largest positive (sign=1) / negative (sign=-1) one; -1 when there is none."""
    best = -1
    bv = 0.0
    for i in range(a + 1, z):
        is_max = v[i] >= v[i - 1] and v[i] > v[i + 1]
        is_min = v[i] <= v[i - 1] and v[i] < v[i + 1]
        if not (is_max or is_min):
            continue
        if sign > 0 and not is_max:
            continue
        if sign < 0 and not is_min:
            continue
        s = abs(v[i])
        if s > bv:
            bv = s
            best = i
    return best


@njit(cache=True)
def _opposite_lobe(v, k, a, z, frac):
    """Index (into v) of an opposite-polarity extremum of at least ``frac`` times |v[k]|
    within v[a:z+1] (a biphasic wave's other lobe), or -1."""
    best = -1
    bv = frac * abs(v[k])
    sg = 1.0 if v[k] > 0 else -1.0
    for i in range(max(a, 1), min(z, v.shape[0] - 2) + 1):
        u = -sg * v[i]
        if u > bv and u >= -sg * v[i - 1] and u >= -sg * v[i + 1]:
            bv = u
            best = i
    return best


@njit(cache=True)
def delineate_lead(y, r, fs, p, qon, qoff):
    """Delineate one lead.

    Parameters
    ----------
    y : float64 (n,)   band-limited lead (baseline removed, 40 Hz low-pass)
    r : int64 (nb,)    global R fiducials, sorted
    fs : float
    p : float64 (k,)   tunable constants (see ``waves.PARAMS`` for names)

    Returns
    -------
    marks int64 (nb, 9), feats float64 (nb, 6)
    """
    n = y.shape[0]
    nb = r.shape[0]
    marks = -np.ones((nb, N_MARKS), np.int64)
    feats = np.zeros((nb, N_FEATS))
    if nb == 0 or n < 8:
        return marks, feats
    theta_sig = p[0]
    xi_on = p[1]
    xi_off = p[2]
    w_s = max(3, int(p[3] * fs) | 1)
    ys = smooth(y, w_s)
    d = deriv(y)
    dsm = deriv(ys)
    # median RR for the first and last beat
    if nb > 1:
        rr_med = float(np.median(np.diff(r)))
    else:
        rr_med = 0.8 * fs
    # -- QRS boundaries first (the P and T windows depend on them) --
    for b in range(nb):
        rb = r[b]
        rr_prev = r[b] - r[b - 1] if b > 0 else rr_med
        rr_next = r[b + 1] - r[b] if b < nb - 1 else rr_med
        lo = max(1, rb - int(min(0.15 * fs, 0.45 * rr_prev)))
        hi = min(n - 2, rb + int(min(0.18 * fs, 0.45 * rr_next)))
        c_lo = max(lo, rb - int(0.08 * fs))
        c_hi = min(hi, rb + int(0.08 * fs))
        if c_hi <= c_lo:
            continue
        m = 0.0
        for i in range(c_lo, c_hi + 1):
            if abs(d[i]) > m:
                m = abs(d[i])
        if m <= 0.0:
            continue
        # earliest significant slope before R, then its local slope peak
        i1 = -1
        for i in range(max(lo, rb - int(0.12 * fs)), rb + 1):
            if abs(d[i]) > theta_sig * m:
                i1 = i
                break
        if i1 < 0:
            i1 = rb
        pk = i1
        while pk + 1 <= hi and abs(d[pk + 1]) >= abs(d[pk]) and abs(d[pk + 1]) > 0:
            pk += 1
            if (d[pk] > 0) != (d[i1] > 0):
                break
        thr = xi_on * abs(d[pk])
        on = pk
        while on - 1 >= lo and abs(d[on]) > thr:
            on -= 1
        # latest significant slope after R, then its local slope peak
        i2 = -1
        for i in range(min(hi, rb + int(0.14 * fs)), rb - 1, -1):
            if abs(d[i]) > theta_sig * m:
                i2 = i
                break
        if i2 < 0:
            i2 = rb
        pk2 = i2
        while pk2 - 1 >= lo and abs(d[pk2 - 1]) >= abs(d[pk2]) and abs(d[pk2 - 1]) > 0:
            pk2 -= 1
            if (d[pk2] > 0) != (d[i2] > 0):
                break
        thr2 = xi_off * abs(d[pk2])
        off = pk2
        while off + 1 <= hi and abs(d[off]) > thr2:
            off += 1
        if qon[b] >= 0 and qoff[b] > qon[b]:
            on = qon[b]
            off = qoff[b]
        if off <= on:
            continue
        marks[b, 3] = on
        marks[b, 5] = off
        # isoelectric level: mean of the PR segment just before the onset
        a = max(0, on - int(0.03 * fs))
        z = max(a + 1, on - int(0.008 * fs))
        iso = 0.0
        for i in range(a, z):
            iso += y[i]
        iso /= (z - a)
        feats[b, 3] = iso
        # R: the largest positive deflection (the R wave, even a small r of an rS
        # complex, as annotators mark it); the deepest negative one for a QS complex
        best_p = on
        bvp = -1e300
        best_n = on
        bvn = 1e300
        mn = 1e300
        mx = -1e300
        for i in range(on, off + 1):
            v = y[i] - iso
            if v > bvp:
                bvp = v
                best_p = i
            if v < bvn:
                bvn = v
                best_n = i
            if y[i] < mn:
                mn = y[i]
            if y[i] > mx:
                mx = y[i]
        best = best_p if bvp >= p[12] * (mx - mn) else best_n
        if best == best_p:
            # rSR' and notched complexes: annotators mark the first R wave of comparable size
            for i in range(on + 1, best_p):
                v = y[i] - iso
                if v >= p[15] * bvp and v >= y[i - 1] - iso and v > y[i + 1] - iso:
                    best = i
                    break
        marks[b, 4] = best
        feats[b, 2] = mx - mn
        feats[b, 5] = y[best] - iso
    # -- T waves --
    for b in range(nb):
        on = marks[b, 3]
        off = marks[b, 5]
        if on < 0:
            continue
        rb = r[b]
        rr_next = r[b + 1] - r[b] if b < nb - 1 else rr_med
        ta = max(off + int(p[4] * fs), rb + int(0.1 * fs))
        tz = rb + int(min(p[5] * rr_next, p[6] * fs))
        if b < nb - 1 and marks[b + 1, 3] > 0:
            tz = min(tz, marks[b + 1, 3] - int(0.1 * fs))
        tz = min(tz, n - 2)
        if tz - ta < int(0.06 * fs):
            continue
        iso0 = feats[b, 3]
        iso1 = feats[b + 1, 3] if (b < nb - 1 and marks[b + 1, 3] > 0) else iso0
        x0 = on
        x1 = marks[b + 1, 3] if (b < nb - 1 and marks[b + 1, 3] > 0) else on + rr_next
        slope = (iso1 - iso0) / max(1, x1 - x0)
        v = np.empty(tz - ta + 1)
        for i in range(ta, tz + 1):
            v[i - ta] = ys[i] - (iso0 + slope * (i - x0))
        k = _argmax_abs_extremum(v, 0, v.shape[0] - 1, 0)
        if k < 0:
            continue
        tp = ta + k
        amp = v[k]
        marks[b, 7] = tp
        feats[b, 1] = amp
        # a biphasic T: the end follows the later lobe
        k2 = _opposite_lobe(v, k, k + 1, min(v.shape[0] - 1, k + int(0.12 * fs)), p[14])
        t_off_pk = ta + k2 if k2 >= 0 else tp
        sgn = 1.0 if v[t_off_pk - ta] > 0 else -1.0
        # T end: steepest return to baseline after the peak, then trapezium
        lim = min(tz, t_off_pk + int(0.15 * fs))
        xm = t_off_pk
        bs = 0.0
        for i in range(t_off_pk, lim + 1):
            s = -sgn * dsm[i]
            if s > bs:
                bs = s
                xm = i
        # the span grows with the T wave's width (peak to steepest slope) for broad T waves
        xr = min(tz, xm + max(int(p[7] * fs), int(p[16] * (xm - t_off_pk))))
        if xr > xm:
            marks[b, 8] = _trapezium_end(ys, xm, xr)
        else:
            marks[b, 8] = xm
        sgn = 1.0 if amp > 0 else -1.0
        if marks[b, 8] >= n - 3:
            marks[b, 8] = -1   # the record ends inside this T wave: no end to report
        # T onset: steepest rise before the peak, trapezium backwards
        lim0 = max(ta - int(0.04 * fs), tp - int(0.15 * fs), off + 1)
        xm = tp
        bs = 0.0
        for i in range(tp, lim0 - 1, -1):
            s = sgn * dsm[i]
            if s > bs:
                bs = s
                xm = i
        xr = max(off + 1, xm - int(0.12 * fs))
        if xr < xm:
            marks[b, 6] = _trapezium_end(ys, xm, xr)
        else:
            marks[b, 6] = xm
    # -- P waves --
    for b in range(nb):
        on = marks[b, 3]
        if on < 0:
            continue
        rr_prev = r[b] - r[b - 1] if b > 0 else rr_med
        pa = on - int(p[8] * fs)
        if b > 0 and marks[b - 1, 8] > 0:
            pa = max(pa, marks[b - 1, 8] + int(0.02 * fs))
        elif b > 0:
            pa = max(pa, r[b - 1] + int(0.5 * rr_prev))
        pa = max(pa, 1)
        pz = on - int(p[9] * fs)
        if pz - pa < int(0.04 * fs):
            continue
        iso = feats[b, 3]
        # residual high-frequency noise in the window (for the presence test)
        ns = 0.0
        for i in range(pa, pz + 1):
            e = y[i] - ys[i]
            ns += e * e
        feats[b, 4] = np.sqrt(ns / (pz - pa + 1))
        v = np.empty(pz - pa + 1)
        for i in range(pa, pz + 1):
            v[i - pa] = ys[i] - iso
        k = _argmax_abs_extremum(v, 0, v.shape[0] - 1, 0)
        if k < 0:
            continue
        pp = pa + k
        amp = v[k]
        marks[b, 1] = pp
        feats[b, 0] = amp
        # a biphasic P: the offset follows the later lobe, the onset the earlier one
        span = int(0.06 * fs)
        k_off = _opposite_lobe(v, k, k + 1, min(v.shape[0] - 1, k + span), p[13])
        k_on = _opposite_lobe(v, k, max(0, k - span), k - 1, p[13])
        p_off_pk = pa + k_off if k_off >= 0 else pp
        p_on_pk = pa + k_on if k_on >= 0 else pp
        sgn = 1.0 if v[p_off_pk - pa] > 0 else -1.0
        lim = min(on - 1, p_off_pk + int(0.08 * fs))
        xm = p_off_pk
        bs = 0.0
        for i in range(p_off_pk, lim + 1):
            s = -sgn * dsm[i]
            if s > bs:
                bs = s
                xm = i
        xr = min(on - 1, xm + int(p[10] * fs))
        marks[b, 2] = _trapezium_end(ys, xm, xr) if xr > xm else xm
        sgn = 1.0 if v[p_on_pk - pa] > 0 else -1.0
        lim0 = max(pa - int(0.04 * fs), p_on_pk - int(0.08 * fs), 1)
        xm = p_on_pk
        bs = 0.0
        for i in range(p_on_pk, lim0 - 1, -1):
            s = sgn * dsm[i]
            if s > bs:
                bs = s
                xm = i
        xr = max(1, xm - int(p[11] * fs))
        marks[b, 0] = _trapezium_end(ys, xm, xr) if xr < xm else xm
    return marks, feats


@njit(cache=True)
def qrs_bounds_multilead(y, usable, r, fs, alpha, beta, lead_pad_s):
    """Global QRS onset/offset from the normalised spatial velocity of all leads, then
    per-lead boundaries searched inwards from the global ones.

    Spatial velocity ``sv = sum_l |dy_l| / M_l`` (``M_l``: the lead's median peak QRS
    slope) integrates every lead, so its onset does not jump to a P or T wave as a single
    lead's slope can. Global onset: going back from the sv peak, the first sample below
    ``base + alpha (peak - base)``, ``base`` being the sv minimum in the 200 ms before
    the complex; offset symmetric. Per lead: the first (last) sample, inwards from the
    global onset (offset) widened by ``lead_pad_s``, where the lead's slope exceeds
    ``beta`` times its peak slope in this complex.

    Returns g_on, g_off (nb,), on, off (L, nb); -1 where not found.
    """
    L, n = y.shape
    nb = r.shape[0]
    g_on = -np.ones(nb, np.int64)
    g_off = -np.ones(nb, np.int64)
    on = -np.ones((L, nb), np.int64)
    off = -np.ones((L, nb), np.int64)
    if nb == 0 or n < 16:
        return g_on, g_off, on, off
    d = np.zeros((L, n))
    for l in range(L):
        if not usable[l]:
            continue
        for i in range(1, n - 1):
            d[l, i] = abs(y[l, i + 1] - y[l, i - 1])
    # lead scale: median over beats of the peak slope within +-60 ms of R
    h60 = int(0.06 * fs)
    pk = np.zeros(nb)
    sv = np.zeros(n)
    for l in range(L):
        if not usable[l]:
            continue
        for b in range(nb):
            m = 0.0
            for i in range(max(0, r[b] - h60), min(n, r[b] + h60 + 1)):
                if d[l, i] > m:
                    m = d[l, i]
            pk[b] = m
        s = np.median(pk)
        if s <= 0.0:
            continue
        for i in range(n):
            sv[i] += d[l, i] / s
    w = max(1, int(0.01 * fs)) | 1
    svs = smooth(sv, w)
    rr_med = float(np.median(np.diff(r))) if nb > 1 else 0.8 * fs
    pad = int(lead_pad_s * fs)
    for b in range(nb):
        rb = r[b]
        rr_prev = r[b] - r[b - 1] if b > 0 else rr_med
        rr_next = r[b + 1] - r[b] if b < nb - 1 else rr_med
        lo = max(1, rb - int(min(0.2 * fs, 0.5 * rr_prev)))
        hi = min(n - 2, rb + int(min(0.2 * fs, 0.5 * rr_next)))
        ip = rb
        m = -1.0
        for i in range(max(lo, rb - h60), min(hi, rb + h60) + 1):
            if svs[i] > m:
                m = svs[i]
                ip = i
        base0 = 1e300
        for i in range(lo, max(lo + 1, ip - int(0.04 * fs))):
            if svs[i] < base0:
                base0 = svs[i]
        base1 = 1e300
        for i in range(min(hi, ip + int(0.04 * fs)), hi + 1):
            if svs[i] < base1:
                base1 = svs[i]
        if base0 > m:
            base0 = 0.0
        if base1 > m:
            base1 = 0.0
        t0 = base0 + alpha * (m - base0)
        t1 = base1 + alpha * (m - base1)
        a = ip
        while a > lo and svs[a] > t0:
            a -= 1
        z = ip
        while z < hi and svs[z] > t1:
            z += 1
        g_on[b] = a
        g_off[b] = z
        for l in range(L):
            if not usable[l]:
                continue
            a0 = max(1, a - pad)
            z0 = min(n - 2, z + pad)
            mm = 0.0
            for i in range(a0, z0 + 1):
                if d[l, i] > mm:
                    mm = d[l, i]
            if mm <= 0.0:
                continue
            th = beta * mm
            i = a0
            while i < z0 and d[l, i] <= th:
                i += 1
            on[l, b] = i
            i = z0
            while i > a0 and d[l, i] <= th:
                i -= 1
            off[l, b] = i
    return g_on, g_off, on, off


@njit(cache=True)
def median_template(y, leads, starts, w):
    """Sample-wise median over beats of windows ``y[l, s:s+w]`` for each lead in ``leads``
    and each start in ``starts`` (all windows inside the record). Insertion sort: the
    beat count is small (a 10-s record has about 10)."""
    nl = leads.shape[0]
    nm = starts.shape[0]
    out = np.empty((nl, w))
    buf = np.empty(nm)
    for li in range(nl):
        l = leads[li]
        for i in range(w):
            for k in range(nm):
                v = y[l, starts[k] + i]
                j = k
                while j > 0 and buf[j - 1] > v:
                    buf[j] = buf[j - 1]
                    j -= 1
                buf[j] = v
            if nm % 2 == 1:
                out[li, i] = buf[nm // 2]
            else:
                out[li, i] = 0.5 * (buf[nm // 2 - 1] + buf[nm // 2])
    return out


@njit(cache=True)
def p_projection(y, tmpl, leads, t_on, t_off, r, c, b0):
    """Per lead and beat: least-squares scale of the template P wave (``tmpl[li,
    t_on:t_off+1]`` minus its ``b0``-sample pre-onset mean) that best fits the beat's P
    wave at the same distance from R (1 = same size and shape, ~0 = no such wave)."""
    n = y.shape[1]
    nb = r.shape[0]
    out = np.zeros((y.shape[0], nb))
    for li in range(leads.shape[0]):
        l = leads[li]
        a = t_on[li]
        z = t_off[li]
        if a < 0 or z <= a or a - b0 < 0:
            continue
        base = 0.0
        for i in range(a - b0, a):
            base += tmpl[li, i]
        base /= b0
        tt = 0.0
        for i in range(a, z + 1):
            t = tmpl[li, i] - base
            tt += t * t
        if tt <= 0.0:
            continue
        for b in range(nb):
            s0 = r[b] - c
            if s0 + a - b0 < 0 or s0 + z >= n:
                continue
            bb = 0.0
            for i in range(a - b0, a):
                bb += y[l, s0 + i]
            bb /= b0
            acc = 0.0
            for i in range(a, z + 1):
                acc += (y[l, s0 + i] - bb) * (tmpl[li, i] - base)
            out[l, b] = acc / tt
    return out


@njit(cache=True)
def _median_small(buf, k):
    """Median of buf[:k] (insertion sort in place; k is at most the lead count)."""
    for i in range(1, k):
        v = buf[i]
        j = i
        while j > 0 and buf[j - 1] > v:
            buf[j] = buf[j - 1]
            j -= 1
        buf[j] = v
    if k % 2 == 1:
        return buf[k // 2]
    return 0.5 * (buf[k // 2 - 1] + buf[k // 2])


@njit(cache=True)
def consensus_marks(out, cand, keep, lead_ok, beat_ok, cols, tol, fill, min_leads):
    """Multi-lead consistency of one wave's boundaries, in place on ``out`` (L, nb, 9).

    The twelve leads see one heart, so a lead's boundary far from the median over the
    leads where the wave was found is a local failure (a notch, noise, the neighbouring
    wave), not a different wave. Per beat with ``beat_ok`` and at least ``min_leads``
    leads in ``keep``: marks in ``cols`` more than ``tol`` samples from the median over
    those leads are replaced by the median. With ``fill``, leads in ``lead_ok`` where the
    wave was not kept get the candidate mark ``cand`` when it lies within ``tol`` of the
    median, else the median. Returns the new keep mask (L, nb).
    """
    L, nb = keep.shape
    buf = np.empty(L)
    newkeep = keep.copy()
    for b in range(nb):
        if not beat_ok[b]:
            continue
        k0 = 0
        for l in range(L):
            if keep[l, b]:
                k0 += 1
        if k0 < min_leads:
            continue
        for ci in range(cols.shape[0]):
            c = cols[ci]
            k = 0
            for l in range(L):
                if keep[l, b] and out[l, b, c] >= 0:
                    buf[k] = out[l, b, c]
                    k += 1
            if k == 0:
                continue
            med = np.int64(np.round(_median_small(buf, k)))
            for l in range(L):
                if keep[l, b]:
                    if out[l, b, c] < 0 or abs(out[l, b, c] - med) > tol:
                        out[l, b, c] = med
                elif fill and lead_ok[l, b]:
                    v = cand[l, b, c]
                    out[l, b, c] = v if (v >= 0 and abs(v - med) <= tol) else med
                    newkeep[l, b] = True
    return newkeep


@njit(cache=True)
def delineate_leads(y, usable, r, fs, p, qon, qoff):
    """:func:`delineate_lead` for every usable lead in one call (one dispatch instead of
    one per lead). Returns marks (L, nb, 9), feats (L, nb, N_FEATS); -1 / 0 for unusable
    leads."""
    L = y.shape[0]
    nb = r.shape[0]
    marks = -np.ones((L, nb, N_MARKS), np.int64)
    feats = np.zeros((L, nb, N_FEATS))
    for l in range(L):
        if usable[l]:
            m, f = delineate_lead(y[l], r, fs, p, qon[l], qoff[l])
            marks[l] = m
            feats[l] = f
    return marks, feats


@njit(cache=True, fastmath=True)
def atrial_periodicity(v, usable, q_on, q_off, pad, lag_lo, lag_hi, n_cyc):
    """Per lead: how periodic the signal outside the QRS complexes is at an atrial-flutter
    cycle length.

    ``v`` (L, n) is a high-passed, decimated lead set; samples within ``pad`` of a QRS
    (``q_on``..``q_off``, same decimated time base) are blanked, because the ventricular
    complexes repeat at the RR interval and would make any rhythm look periodic. For each
    lag ``L`` in ``lag_lo..lag_hi`` the centred correlation between ``v[i]`` and
    ``v[i + k L]`` over pairs of unblanked samples is computed for ``k = 1..n_cyc``; the
    lag's score is the smallest of these (the waveform must repeat for ``n_cyc`` cycles in
    a row, as the sawtooth of flutter does and a P wave followed by a flat TP segment
    does not), and the lead's score is the best lag's. The similarity is
    ``2 cov(a, b) / (var a + var b)`` (the correlation, scaled down when the two
    segments differ in size). Returns float64 (L,), -1 for
    unusable leads or too little data.
    """
    L, n = v.shape
    nb = q_on.shape[0]
    mk = np.ones(n)
    for b in range(nb):
        if q_on[b] < 0 or q_off[b] < 0:
            continue
        for i in range(max(0, q_on[b] - pad), min(n, q_off[b] + pad + 1)):
            mk[i] = 0.0
    # blanked samples are zeroed and every sum is weighted by the pair mask, so the
    # inner loops have no branches (numba vectorises them)
    w = np.zeros((L, n))
    w2 = np.zeros((L, n))
    for l in range(L):
        if usable[l]:
            for i in range(n):
                w[l, i] = v[l, i] * mk[i]
                w2[l, i] = w[l, i] * v[l, i]
    nlag = max(0, lag_hi - lag_lo + 1)
    cnt = np.zeros((nlag, n_cyc))
    for j in range(nlag):
        for k in range(n_cyc):
            s = (k + 1) * (lag_lo + j)
            c = 0.0
            for i in range(max(0, n - s)):
                c += mk[i] * mk[i + s]
            cnt[j, k] = c
    out = -np.ones(L)
    for l in range(L):
        if not usable[l]:
            continue
        wl = w[l]
        wl2 = w2[l]
        best = -1.0
        for j in range(nlag):
            worst = 2.0
            for k in range(n_cyc):
                s = (k + 1) * (lag_lo + j)
                m = n - s
                c = cnt[j, k]
                if m < 8 or c < 8.0:
                    worst = -1.0
                    break
                sa = 0.0
                sb = 0.0
                saa = 0.0
                sbb = 0.0
                sab = 0.0
                for i in range(m):
                    sa += wl[i] * mk[i + s]
                    sb += wl[i + s] * mk[i]
                    saa += wl2[i] * mk[i + s]
                    sbb += wl2[i + s] * mk[i]
                    sab += wl[i] * wl[i + s]
                ma = sa / c
                mb = sb / c
                va = saa - c * ma * ma
                vb = sbb - c * mb * mb
                if va <= 0.0 or vb <= 0.0:
                    worst = -1.0
                    break
                # 2 cov / (var_a + var_b): the correlation when both segments have the
                # same size, lower when they differ (flutter waves repeat with equal size;
                # a T wave and the next P wave can correlate but differ in size)
                r = 2.0 * (sab - c * ma * mb) / (va + vb)
                if r < worst:
                    worst = r
                if worst <= best:
                    break          # this lag cannot beat the best one any more
            if worst > best:
                best = worst
        out[l] = best
    return out


@njit(cache=True)
def p_offset_envelope(y, usable, scale, qon, pk_lo, pk_hi, fs, smooth_s, alpha):
    """Multi-lead P-wave offset of each beat from the spatial P envelope.

    Per beat and usable lead, the smoothed lead minus its PR-segment level (mean over
    30-8 ms before the beat's QRS onset ``qon``) is taken in absolute value and divided
    by the lead's QRS peak-to-peak ``scale[l, b]``; the sum over leads is the envelope.
    From its maximum inside ``pk_lo..pk_hi`` (the P wave found by the per-lead kernel)
    the offset is the first sample where the envelope falls below ``base + alpha (peak -
    base)``, ``base`` being its minimum between the maximum and the PR segment (the
    same fixed-fraction rule as the QRS bounds from the spatial velocity). Every lead
    contributes, so the offset does not follow one lead's noise or its isoelectric end.
    Returns int64 (nb,), -1 where not computed.
    """
    L, n = y.shape
    nb = qon.shape[0]
    out = -np.ones(nb, np.int64)
    h = max(3, int(smooth_s * fs) | 1) // 2
    ia = int(0.03 * fs)
    ib = max(1, int(0.008 * fs))
    for b in range(nb):
        q = qon[b]
        a = pk_lo[b]
        z = q - ib
        if q < 0 or a < 0 or q - ia < 0 or z - a < 3:
            continue
        hi = min(pk_hi[b], z - int(0.02 * fs))
        if hi <= a:
            continue
        s0 = min(a, q - ia)
        m = z - s0
        ys = np.zeros((L, m))
        env = np.zeros(z - a)
        for l in range(L):
            if not usable[l] or scale[l, b] <= 0.0:
                continue
            # centred moving average (as ``smooth``) of this window only
            for i in range(s0, z):
                lo = max(0, i - h)
                up = min(n, i + h + 1)
                acc = 0.0
                for k in range(lo, up):
                    acc += y[l, k]
                ys[l, i - s0] = acc / (up - lo)
            p = 0.0
            for i in range(q - ia, z):
                p += ys[l, i - s0]
            p /= (z - (q - ia))
            inv = 1.0 / scale[l, b]
            for i in range(a, z):
                env[i - a] += abs(ys[l, i - s0] - p) * inv
        k = 0
        for i in range(0, hi - a):
            if env[i] > env[k]:
                k = i
        base = env[k]
        for i in range(k, z - a):
            if env[i] < base:
                base = env[i]
        th = base + alpha * (env[k] - base)
        j = k
        while j < z - a - 1 and env[j] > th:
            j += 1
        out[b] = a + j
    return out
