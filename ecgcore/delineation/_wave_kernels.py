"""numba kernels for per-lead wave delineation (P, QRS, T) around known R fiducials.

The per-lead kernel handles one lead and all its beats (``delineate_leads`` runs it
over the leads in one call); it always returns *candidate* boundaries, and whether a
wave is really there is decided from the features it also returns (amplitudes,
noise). The presence decisions, multi-lead consistency and fusion of ``waves._decide``
run here too (``decide_presence``, ``decide_p``, ``decide_rest``), but their
thresholds are arguments taken from the dicts in ``waves.py``, where a researcher can
read and change them; ``waves._decide_numpy`` is the same logic in numpy (the
reference the kernels are tested against, bit for bit).

Indices in the output: 0 P_on, 1 P_peak, 2 P_off, 3 QRS_on, 4 R, 5 QRS_off,
6 T_on, 7 T_peak, 8 T_off (-1 = not found).
Features: 0 P amplitude (signed, vs isoelectric), 1 T amplitude (signed),
2 QRS peak-to-peak, 3 isoelectric level, 4 high-frequency noise RMS in the P window,
5 R amplitude (signed, vs isoelectric).

Compile time: numba compiles every kernel on first use in a fresh environment, and a
constant argument in a call between kernels (``f(x, 1)``, ``f(x, True)``) is typed as a
*literal*, which compiles a separate specialisation of the callee and of everything it
calls per constant; such arguments are passed as ``np.int64(...)`` / ``np.bool_(...)``.
Numpy helpers that pull in large generic implementations (``np.median``, ``np.sort``,
``np.round``, ``np.iinfo``, broadcasting array assignments) are replaced by small
loops or the insertion-sort median below, with the same results. A kernel that calls
other kernels links their code in and optimises and compiles all of it again, so the
entry points that only chain whole kernels (:func:`delineate_block`,
:func:`template_delineate`) are plain Python: each large kernel is compiled once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N_MARKS = 9
N_FEATS = 6
_I64_MAX = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True)
def _smooth_from_cumsum(c, out, h):
    """out[i] = mean of the samples within h of i (edges shrink), from the cumulative
    sum ``c`` (c[0] = 0). The edges are separate loops so the middle one has no
    branches; its divisor is the same number (2h + 1) as a float."""
    n = out.shape[0]
    e0 = min(h, n)
    for i in range(e0):
        z = min(i + h + 1, n)
        out[i] = (c[z] - c[0]) / z
    wf = float(2 * h + 1)
    for i in range(e0, n - h - 1 + 1):
        out[i] = (c[i + h + 1] - c[i - h]) / wf
    for i in range(max(e0, n - h), n):
        a = max(i - h, 0)
        out[i] = (c[n] - c[a]) / (n - a)


@njit(cache=True)
def smooth(y, w):
    """Centred moving average of width w (odd), edges shrink."""
    n = y.shape[0]
    out = np.empty(n)
    c = np.empty(n + 1)
    c[0] = 0.0
    for i in range(n):
        c[i + 1] = c[i] + y[i]
    _smooth_from_cumsum(c, out, w // 2)
    return out


@njit(cache=True)
def smooth_rows(y, usable, w):
    """:func:`smooth` of every usable row of ``y`` (L, n) (others: zeros). The running
    sums of four rows advance in the same loop: each sum is a chain of dependent
    additions, four independent chains overlap (same additions, same values)."""
    L, n = y.shape
    # every sample of a usable row is written below: only the other rows are zeroed
    # (no memset of the whole (L, n) array first)
    out = np.empty((L, n))
    rows = np.empty(L, np.int64)
    nr = 0
    for l in range(L):
        if usable[l]:
            rows[nr] = l
            nr += 1
        else:
            for i in range(n):
                out[l, i] = 0.0
    rows = rows[:nr]
    c = np.empty((4, n + 1))
    h = w // 2
    for g in range(0, rows.shape[0], 4):
        k = min(4, rows.shape[0] - g)
        if k == 4:
            y0 = y[rows[g]]
            y1 = y[rows[g + 1]]
            y2 = y[rows[g + 2]]
            y3 = y[rows[g + 3]]
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            c[0, 0] = 0.0
            c[1, 0] = 0.0
            c[2, 0] = 0.0
            c[3, 0] = 0.0
            for i in range(n):
                a0 = a0 + y0[i]
                a1 = a1 + y1[i]
                a2 = a2 + y2[i]
                a3 = a3 + y3[i]
                c[0, i + 1] = a0
                c[1, i + 1] = a1
                c[2, i + 1] = a2
                c[3, i + 1] = a3
        else:
            for j in range(k):
                yj = y[rows[g + j]]
                a = 0.0
                c[j, 0] = 0.0
                for i in range(n):
                    a = a + yj[i]
                    c[j, i + 1] = a
        for j in range(k):
            _smooth_from_cumsum(c[j], out[rows[g + j]], h)
    return out


@njit(cache=True)
def deriv(y):
    n = y.shape[0]
    d = np.zeros(n)
    for i in range(1, n - 1):
        d[i] = 0.5 * (y[i + 1] - y[i - 1])
    return d


@njit(cache=True)
def _dv(v, i):
    """``deriv(v)[i]``: central difference, zero at both ends."""
    if i <= 0 or i >= v.shape[0] - 1:
        return 0.0
    return 0.5 * (v[i + 1] - v[i - 1])


@njit(cache=True)
def _steepest(v, start, stop, step, sgn):
    """Index from ``start`` towards ``stop`` (inclusive, by ``step`` = +1 or -1) where
    ``sgn * _dv(v, i)`` is largest and positive; ``start`` when it never is."""
    xm = start
    bs = 0.0
    for i in range(start, stop + step, step):
        sv = sgn * _dv(v, i)
        if sv > bs:
            bs = sv
            xm = i
    return xm


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
        # the size test first: once the largest extremum is passed it fails at once
        s = abs(v[i])
        if s > bv:
            vi = v[i]
            is_max = vi >= v[i - 1] and vi > v[i + 1]
            is_min = vi <= v[i - 1] and vi < v[i + 1]
            if sign > 0:
                ok = is_max
            elif sign < 0:
                ok = is_min
            else:
                ok = is_max or is_min
            if ok:
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
    """Delineate one lead (:func:`delineate_leads_only` of a one-lead array; its
    moving average is :func:`smooth`'s, the same values). Returns marks int64 (nb, 9),
    feats float64 (nb, N_FEATS)."""
    n = y.shape[0]
    nb = r.shape[0]
    y2 = np.empty((1, n))
    for i in range(n):
        y2[0, i] = y[i]
    q0 = np.empty((1, nb), np.int64)
    q1 = np.empty((1, nb), np.int64)
    for b in range(nb):
        q0[0, b] = qon[b]
        q1[0, b] = qoff[b]
    u = np.ones(1, np.bool_)
    m, f = delineate_leads_only(y2, u, r, fs, p, q0, q1, np.int64(-1))
    return m[0].copy(), f[0].copy()


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
    # |y[i+1] - y[i-1]| is recomputed where needed (zero at the two ends) instead of
    # being stored for every lead and sample
    h60 = int(0.06 * fs)
    pk = np.zeros(nb)
    sv = np.zeros(n)
    for l in range(L):
        if not usable[l]:
            continue
        yl = y[l]
        for b in range(nb):
            m = 0.0
            for i in range(max(0, r[b] - h60), min(n, r[b] + h60 + 1)):
                v = abs(yl[i + 1] - yl[i - 1]) if 0 < i < n - 1 else 0.0
                if v > m:
                    m = v
            pk[b] = m
        s = _median_small(pk, nb)      # pk is refilled for the next lead
        if s <= 0.0:
            continue
        sv[0] += 0.0 / s
        for i in range(1, n - 1):
            sv[i] += abs(yl[i + 1] - yl[i - 1]) / s
        sv[n - 1] += 0.0 / s
    w = max(1, int(0.01 * fs)) | 1
    svs = smooth(sv, w)
    rr_med = _rr_median(r) if nb > 1 else 0.8 * fs
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
            yl = y[l]
            mm = 0.0
            for i in range(a0, z0 + 1):
                v = abs(yl[i + 1] - yl[i - 1])
                if v > mm:
                    mm = v
            if mm <= 0.0:
                continue
            th = beta * mm
            i = a0
            while i < z0 and abs(yl[i + 1] - yl[i - 1]) <= th:
                i += 1
            on[l, b] = i
            i = z0
            while i > a0 and abs(yl[i + 1] - yl[i - 1]) <= th:
                i -= 1
            off[l, b] = i
    return g_on, g_off, on, off


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
    """``np.median`` of buf[:k], k > 0, no NaN (insertion sort in place: k is a lead or
    beat count, small). The mean of the two middle values for even k (``0.5 * (a + b)``
    and ``(a + b) / 2`` round alike), the middle value itself for odd k."""
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
def _rr_median(r):
    """``float(np.median(np.diff(r)))`` for int64 R indices (len(r) > 1): numpy's
    ``(a + b) / 2`` of the two middle integer intervals equals ``0.5 * (a + b)`` of
    their float values (exact below 2**53)."""
    nr = r.shape[0] - 1
    buf = np.empty(nr)
    for i in range(nr):
        buf[i] = float(r[i + 1] - r[i])
    return _median_small(buf, nr)


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
            k = np.int64(0)
            for l in range(L):
                if keep[l, b] and out[l, b, c] >= 0:
                    buf[k] = out[l, b, c]
                    k += 1
            if k == 0:
                continue
            med = np.int64(np.rint(_median_small(buf, k)))   # np.round: half to even
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
    return delineate_leads_only(y, usable, r, fs, p, qon, qoff, np.int64(-1))


@njit(cache=True)
def delineate_leads_only(y, usable, r, fs, p, qon, qoff, only):
    """Delineate every usable lead of ``y`` (L, n) around the R fiducials ``r``.

    With ``only >= 0`` the P and T waves are delineated only where beat ``only`` needs
    them (its own, and the previous beat's T end that bounds its P search); the QRS of
    every beat is still delineated (its neighbours' QRS bound its T search), so the
    marks of beat ``only`` are the same as in the full call (the median-beat stage
    reads only the middle beat of its three).

    Parameters
    ----------
    y : float64 (L, n)   band-limited leads (baseline removed, 40 Hz low-pass)
    usable : bool (L,)
    r : int64 (nb,)      global R fiducials, sorted
    fs : float
    p : float64 (k,)     tunable constants (see ``waves.PARAMS`` for names)
    qon, qoff : int64 (L, nb)   QRS bounds to use where both are found (else -1)
    only : int

    Returns
    -------
    marks int64 (L, nb, 9), feats float64 (L, nb, N_FEATS); -1 / 0 for unusable leads.

    The per-lead loop body is written out here rather than in a kernel of its own:
    numba compiles a called kernel separately and then again inside its caller.
    """
    L, n = y.shape
    nb = r.shape[0]
    marks = -np.ones((L, nb, N_MARKS), np.int64)
    feats = np.zeros((L, nb, N_FEATS))
    if nb == 0 or n < 8:
        return marks, feats
    ys = smooth_rows(y, usable, max(3, int(p[3] * fs) | 1))
    theta_sig = p[0]
    xi_on = p[1]
    xi_off = p[2]
    # derivatives (``deriv``) are computed where they are read, not for the whole lead
    # median RR for the first and last beat
    if nb > 1:
        rr_med = _rr_median(r)
    else:
        rr_med = 0.8 * fs
    dv = np.zeros(n)
    # the T and P windows (relative to the baseline) are views of one buffer, not an
    # allocation per beat and lead
    vbuf = np.empty(n)
    for l in range(L):
        if not usable[l]:
            continue
        yl = y[l]
        ysl = ys[l]
        qonl = qon[l]
        qoffl = qoff[l]
        mk = marks[l]        # views: the lead's marks and features are written in place
        ft = feats[l]
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
            # the lead's derivative (``_dv``) over this beat's window, once: the searches
            # below read most samples several times (same values, 1 <= lo, hi <= n - 2).
            # Slices: loops from 0 over unit-stride views vectorise (indices that may
            # look negative to the compiler get a wraparound fix-up and gathers)
            d_w = dv[lo:hi + 1]
            y_hi = yl[lo + 1:hi + 2]
            y_lo = yl[lo - 1:hi]
            for t in range(hi + 1 - lo):
                d_w[t] = 0.5 * (y_hi[t] - y_lo[t])
            m = 0.0
            d_c = dv[c_lo:c_hi + 1]
            for t in range(c_hi + 1 - c_lo):
                if abs(d_c[t]) > m:
                    m = abs(d_c[t])
            if m <= 0.0:
                continue
            # earliest significant slope before R, then its local slope peak
            i1 = -1
            for i in range(max(lo, rb - int(0.12 * fs)), rb + 1):
                if abs(dv[i]) > theta_sig * m:
                    i1 = i
                    break
            if i1 < 0:
                i1 = rb
            pk = i1
            while pk + 1 <= hi and abs(dv[pk + 1]) >= abs(dv[pk]) and abs(dv[pk + 1]) > 0:
                pk += 1
                if (dv[pk] > 0) != (dv[i1] > 0):
                    break
            thr = xi_on * abs(dv[pk])
            on = pk
            while on - 1 >= lo and abs(dv[on]) > thr:
                on -= 1
            # latest significant slope after R, then its local slope peak
            i2 = -1
            for i in range(min(hi, rb + int(0.14 * fs)), rb - 1, -1):
                if abs(dv[i]) > theta_sig * m:
                    i2 = i
                    break
            if i2 < 0:
                i2 = rb
            pk2 = i2
            while pk2 - 1 >= lo and abs(dv[pk2 - 1]) >= abs(dv[pk2]) and abs(dv[pk2 - 1]) > 0:
                pk2 -= 1
                if (dv[pk2] > 0) != (dv[i2] > 0):
                    break
            thr2 = xi_off * abs(dv[pk2])
            off = pk2
            while off + 1 <= hi and abs(dv[off]) > thr2:
                off += 1
            if qonl[b] >= 0 and qoffl[b] > qonl[b]:
                on = qonl[b]
                off = qoffl[b]
            if off <= on:
                continue
            mk[b, 3] = on
            mk[b, 5] = off
            # isoelectric level: mean of the PR segment just before the onset
            a = max(0, on - int(0.03 * fs))
            z = max(a + 1, on - int(0.008 * fs))
            iso = 0.0
            for i in range(a, z):
                iso += yl[i]
            iso /= (z - a)
            ft[b, 3] = iso
            # R: the largest positive deflection (the R wave, even a small r of an rS
            # complex, as annotators mark it); the deepest negative one for a QS complex
            best_p = on
            bvp = -1e300
            best_n = on
            bvn = 1e300
            mn = 1e300
            mx = -1e300
            for i in range(on, off + 1):
                v = yl[i] - iso
                if v > bvp:
                    bvp = v
                    best_p = i
                if v < bvn:
                    bvn = v
                    best_n = i
                if yl[i] < mn:
                    mn = yl[i]
                if yl[i] > mx:
                    mx = yl[i]
            best = best_p if bvp >= p[12] * (mx - mn) else best_n
            if best == best_p:
                # rSR' and notched complexes: annotators mark the first R wave of comparable size
                for i in range(on + 1, best_p):
                    v = yl[i] - iso
                    if v >= p[15] * bvp and v >= yl[i - 1] - iso and v > yl[i + 1] - iso:
                        best = i
                        break
            mk[b, 4] = best
            ft[b, 2] = mx - mn
            ft[b, 5] = yl[best] - iso
        # -- T waves --
        for b in range(nb):
            on = mk[b, 3]
            off = mk[b, 5]
            if on < 0:
                continue
            # beat ``only`` needs its own T and the previous beat's T end (its P search
            # starts after it); no other beat's T is read
            if only >= 0 and (b < only - 1 or b > only):
                continue
            rb = r[b]
            rr_next = r[b + 1] - r[b] if b < nb - 1 else rr_med
            ta = max(off + int(p[4] * fs), rb + int(0.1 * fs))
            tz = rb + int(min(p[5] * rr_next, p[6] * fs))
            if b < nb - 1 and mk[b + 1, 3] > 0:
                tz = min(tz, mk[b + 1, 3] - int(0.1 * fs))
            tz = min(tz, n - 2)
            if tz - ta < int(0.06 * fs):
                continue
            iso0 = ft[b, 3]
            iso1 = ft[b + 1, 3] if (b < nb - 1 and mk[b + 1, 3] > 0) else iso0
            x0 = on
            x1 = mk[b + 1, 3] if (b < nb - 1 and mk[b + 1, 3] > 0) else on + rr_next
            slope = (iso1 - iso0) / max(1, x1 - x0)
            v = vbuf[:tz - ta + 1]
            for i in range(ta, tz + 1):
                v[i - ta] = ysl[i] - (iso0 + slope * (i - x0))
            k = _argmax_abs_extremum(v, 0, v.shape[0] - 1, 0)
            if k < 0:
                continue
            tp = ta + k
            amp = v[k]
            mk[b, 7] = tp
            ft[b, 1] = amp
            # a biphasic T: the end follows the later lobe
            k2 = _opposite_lobe(v, k, k + 1, min(v.shape[0] - 1, k + int(0.12 * fs)), p[14])
            t_off_pk = ta + k2 if k2 >= 0 else tp
            sgn = 1.0 if v[t_off_pk - ta] > 0 else -1.0
            # T end: steepest return to baseline after the peak, then trapezium
            lim = min(tz, t_off_pk + int(0.15 * fs))
            xm = _steepest(ysl, t_off_pk, lim, 1, -sgn)
            # the span grows with the T wave's width (peak to steepest slope) for broad T waves
            xr = min(tz, xm + max(int(p[7] * fs), int(p[16] * (xm - t_off_pk))))
            if xr > xm:
                mk[b, 8] = _trapezium_end(ysl, xm, xr)
            else:
                mk[b, 8] = xm
            sgn = 1.0 if amp > 0 else -1.0
            if mk[b, 8] >= n - 3:
                mk[b, 8] = -1   # the record ends inside this T wave: no end to report
            # T onset: steepest rise before the peak, trapezium backwards
            lim0 = max(ta - int(0.04 * fs), tp - int(0.15 * fs), off + 1)
            xm = _steepest(ysl, tp, lim0, -1, sgn)
            xr = max(off + 1, xm - int(0.12 * fs))
            if xr < xm:
                mk[b, 6] = _trapezium_end(ysl, xm, xr)
            else:
                mk[b, 6] = xm
        # -- P waves --
        for b in range(nb):
            on = mk[b, 3]
            if on < 0:
                continue
            if only >= 0 and b != only:
                continue
            rr_prev = r[b] - r[b - 1] if b > 0 else rr_med
            pa = on - int(p[8] * fs)
            if b > 0 and mk[b - 1, 8] > 0:
                pa = max(pa, mk[b - 1, 8] + int(0.02 * fs))
            elif b > 0:
                pa = max(pa, r[b - 1] + int(0.5 * rr_prev))
            pa = max(pa, 1)
            pz = on - int(p[9] * fs)
            if pz - pa < int(0.04 * fs):
                continue
            iso = ft[b, 3]
            # residual high-frequency noise in the window (for the presence test)
            ns = 0.0
            for i in range(pa, pz + 1):
                e = yl[i] - ysl[i]
                ns += e * e
            ft[b, 4] = np.sqrt(ns / (pz - pa + 1))
            v = vbuf[:pz - pa + 1]
            for i in range(pa, pz + 1):
                v[i - pa] = ysl[i] - iso
            k = _argmax_abs_extremum(v, 0, v.shape[0] - 1, 0)
            if k < 0:
                continue
            pp = pa + k
            amp = v[k]
            mk[b, 1] = pp
            ft[b, 0] = amp
            # a biphasic P: the offset follows the later lobe, the onset the earlier one
            span = int(0.06 * fs)
            k_off = _opposite_lobe(v, k, k + 1, min(v.shape[0] - 1, k + span), p[13])
            k_on = _opposite_lobe(v, k, max(0, k - span), k - 1, p[13])
            p_off_pk = pa + k_off if k_off >= 0 else pp
            p_on_pk = pa + k_on if k_on >= 0 else pp
            sgn = 1.0 if v[p_off_pk - pa] > 0 else -1.0
            lim = min(on - 1, p_off_pk + int(0.08 * fs))
            xm = _steepest(ysl, p_off_pk, lim, 1, -sgn)
            xr = min(on - 1, xm + int(p[10] * fs))
            mk[b, 2] = _trapezium_end(ysl, xm, xr) if xr > xm else xm
            sgn = 1.0 if v[p_on_pk - pa] > 0 else -1.0
            lim0 = max(pa - int(0.04 * fs), p_on_pk - int(0.08 * fs), 1)
            xm = _steepest(ysl, p_on_pk, lim0, -1, sgn)
            xr = max(1, xm - int(p[11] * fs))
            mk[b, 0] = _trapezium_end(ysl, xm, xr) if xr < xm else xm
    return marks, feats


@njit(cache=True)
def assign_template_marks(marks, feats, tm, tf, leads, beats, r, c, cols):
    """In place: the template beat's marks ``tm`` (L, 9) (relative to its R at ``c``)
    and P/T amplitudes ``tf`` (L, :2) given to the member ``beats`` in ``leads``."""
    for li in range(leads.shape[0]):
        l = leads[li]
        for bi in range(beats.shape[0]):
            b = beats[bi]
            for ci in range(cols.shape[0]):
                k = cols[ci]
                marks[l, b, k] = r[b] + (tm[l, k] - c) if tm[l, k] >= 0 else -1
            feats[l, b, 0] = tf[l, 0]
            feats[l, b, 1] = tf[l, 1]


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

    The masked sums of each segment (sum and sum of squares of ``v[i]`` where
    ``v[i + s]`` is unblanked, and the reverse) come from prefix sums minus the blanked
    runs, so only the cross product needs a pass over the samples.
    """
    L, n = v.shape
    nb = q_on.shape[0]
    mk = np.ones(n)
    for b in range(nb):
        if q_on[b] < 0 or q_off[b] < 0:
            continue
        for i in range(max(0, q_on[b] - pad), min(n, q_off[b] + pad + 1)):
            mk[i] = 0.0
    # blanked runs [ra, rz)
    ra = np.empty(n // 2 + 1, np.int64)
    rz = np.empty(n // 2 + 1, np.int64)
    nr = 0
    i = 0
    while i < n:
        if mk[i] == 0.0:
            a = i
            while i < n and mk[i] == 0.0:
                i += 1
            ra[nr] = a
            rz[nr] = i
            nr += 1
        else:
            i += 1
    nlag = max(0, lag_hi - lag_lo + 1)
    # pair counts, shared by all leads, computed when first needed
    cnt = -np.ones((nlag, n_cyc))
    out = -np.ones(L)
    w = np.zeros(n)
    p1 = np.zeros(n + 1)
    p2 = np.zeros(n + 1)
    for l in range(L):
        if not usable[l]:
            continue
        # blanked samples are zeroed, so the cross product needs no mask
        a1 = 0.0
        a2 = 0.0
        for i in range(n):
            x = v[l, i] * mk[i]
            w[i] = x
            a1 += x
            a2 += x * x
            p1[i + 1] = a1
            p2[i + 1] = a2
        best = -1.0
        for j in range(nlag):
            worst = 2.0
            for k in range(n_cyc):
                s = (k + 1) * (lag_lo + j)
                m = n - s
                if m < 8:
                    worst = -1.0
                    break
                c = cnt[j, k]
                if c < 0.0:
                    c = 0.0
                    for i in range(m):
                        c += mk[i] * mk[i + s]
                    cnt[j, k] = c
                if c < 8.0:
                    worst = -1.0
                    break
                # a: v[0:m] where v[s:n] is unblanked; b: v[s:n] where v[0:m] is unblanked
                sa = p1[m]
                saa = p2[m]
                sb = p1[n] - p1[s]
                sbb = p2[n] - p2[s]
                for q in range(nr):
                    lo = max(ra[q] - s, 0)
                    hi = min(rz[q] - s, m)
                    if hi > lo:
                        sa -= p1[hi] - p1[lo]
                        saa -= p2[hi] - p2[lo]
                    lo = max(ra[q] + s, s)
                    hi = min(rz[q] + s, n)
                    if hi > lo:
                        sb -= p1[hi] - p1[lo]
                        sbb -= p2[hi] - p2[lo]
                sab = 0.0
                for i in range(m):
                    sab += w[i] * w[i + s]
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
    if ia <= ib:
        return out   # below about 67 Hz the 30-8 ms PR window holds no sample
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
        # samples whose window lies inside the record: i in [s0 + e0, s0 + e1)
        e0 = min(m, max(0, h - s0))
        e1 = max(e0, min(m, n - h - s0))
        wf = float(2 * h + 1)
        for l in range(L):
            if not usable[l] or scale[l, b] <= 0.0:
                continue
            # centred moving average (as ``smooth``) of this window only; each sample's
            # sum is 0.0 + y[i - h] + ... + y[i + h] in that order, but the loop over the
            # window offset is outside the loop over samples, so the samples' sums advance
            # together (vectorised) instead of one addition chain after another
            # (slices: the inner loop then has no index arithmetic and vectorises)
            if e1 > e0:
                acc = ys[l, e0:e1]
                src = y[l, s0 + e0 - h:s0 + e1 + h]
                for j in range(2 * h + 1):
                    sj = src[j:j + (e1 - e0)]
                    for i in range(e1 - e0):
                        acc[i] += sj[i]
                for i in range(e1 - e0):
                    acc[i] = acc[i] / wf
            # the few samples whose window is cut by the record's ends, as before
            for i in range(s0, z):
                if s0 + e0 <= i < s0 + e1:
                    continue
                lo = max(0, i - h)
                up = min(n, i + h + 1)
                acc_ = 0.0
                for k in range(lo, up):
                    acc_ += y[l, k]
                ys[l, i - s0] = acc_ / (up - lo)
            p = 0.0
            for i in range(q - ia, z):
                p += ys[l, i - s0]
            p /= (z - (q - ia))
            inv = 1.0 / scale[l, b]
            for i in range(a, z):
                env[i - a] += abs(ys[l, i - s0] - p) * inv
        k = np.int64(0)
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


# ---------------------------------------------------------------------------------
# Presence decisions, multi-lead consistency and fusion (``waves._decide``) over the
# (leads, beats) arrays. These replace dozens of small numpy calls per record; each
# value is computed with the same operations in the same order as the numpy code they
# replace (``waves._decide_numpy``), so the outputs are bit-identical.


@njit(cache=True)
def _nanmedian_buf(buf, k):
    """Median of buf[:k] (sorted in place) as ``waves._nanmedian_rows``; NaN when k == 0."""
    if k == 0:
        return np.nan
    return _median_small(buf, k)


@njit(cache=True)
def _sign(v):
    if v > 0.0:
        return 1.0
    if v < 0.0:
        return -1.0
    if v == 0.0:
        return 0.0
    return np.nan


@njit(cache=True)
def decide_presence(marks, feats, extra, usable, r, t_rel, p_rel, aa_rel, p_noise, tol_lag):
    """First part of the presence decision (per lead and beat).

    Returns ``lead_qpp`` (L,) the lead's median QRS peak-to-peak (0 when none),
    ``t_ok`` (L, nb) T present, ``p_keep`` (L, nb) P present and consistent with the
    lead's other beats (same polarity, P-peak-to-QRS time within ``tol_lag``),
    ``live`` (L,) usable leads with a QRS, their count ``n_live``, ``aa`` the median
    over the best half of the live leads of the fraction of their QRS beats with a
    consistent atrial wave, and ``irr`` the RR irregularity (median |dRR| / median RR;
    NaN with fewer than 3 intervals)."""
    L, nb, _ = marks.shape
    lead_qpp = np.zeros(L)
    t_ok = np.zeros((L, nb), np.bool_)
    p_keep = np.zeros((L, nb), np.bool_)
    score = np.zeros(L)
    n_q = np.zeros(L, np.int64)
    buf = np.empty(max(nb, 1))
    lag = np.empty(nb)
    p_any = np.zeros(nb, np.bool_)
    for l in range(L):
        k = np.int64(0)
        for b in range(nb):
            if marks[l, b, 3] >= 0:
                n_q[l] += 1
                v = feats[l, b, 2]
                if not np.isnan(v):
                    buf[k] = v
                    k += 1
        q = _nanmedian_buf(buf, k) if nb else 0.0
        if not np.isfinite(q):
            q = 0.0
        lead_qpp[l] = q
        thr_t = t_rel * q
        thr_p = p_rel * q
        thr_a = aa_rel * q
        k = np.int64(0)
        pol = 0.0
        for b in range(nb):
            t_ok[l, b] = marks[l, b, 7] >= 0 and abs(feats[l, b, 1]) >= thr_t
            a = abs(extra[l, b, 1])
            cand = extra[l, b, 0] >= 0 and marks[l, b, 3] >= 0
            noise = p_noise * feats[l, b, 4]
            p_keep[l, b] = cand and a >= thr_p and a >= noise
            p_any[b] = cand and a >= thr_a and a >= noise
            if p_any[b]:
                lag[b] = marks[l, b, 3] - extra[l, b, 0]
                if not np.isnan(lag[b]):
                    buf[k] = lag[b]
                    k += 1
                s = _sign(extra[l, b, 1])
                if not np.isnan(s):
                    pol += s
        med_lag = _nanmedian_buf(buf, k)
        pol = _sign(pol)
        c = 0
        for b in range(nb):
            ok = p_any[b] and abs(lag[b] - med_lag) <= tol_lag and _sign(extra[l, b, 1]) == pol
            if ok:
                c += 1
            p_keep[l, b] = p_keep[l, b] and ok
        score[l] = c / max(n_q[l], 1) if n_q[l] > 0 else 0.0
    irr = np.nan
    nr = nb - 1
    if nr >= 3:
        a = np.empty(nr)
        for i in range(nr):
            a[i] = float(r[i + 1] - r[i])
        d = np.empty(nr - 1)
        for i in range(nr - 1):
            d[i] = abs(a[i + 1] - a[i])
        irr = _median_small(d, nr - 1) / _median_small(a, nr)
    # atrial-wave consistency of the record: median of the best half of the live leads'
    # scores (as ``np.median(np.sort(score[live])[::-1][:max(1, n_live // 2)])``)
    live = np.zeros(L, np.bool_)
    sc = np.empty(max(L, 1))
    n_live = np.int64(0)
    for l in range(L):
        live[l] = usable[l] and n_q[l] > 0
        if live[l]:
            sc[n_live] = score[l]
            n_live += 1
    aa = 0.0
    if n_live:
        # the best half: the largest max(1, n_live // 2) scores (ascending sort, the tail)
        _median_small(sc, n_live)
        m = max(1, n_live // 2)
        top = sc[n_live - m:n_live].copy()
        aa = _median_small(top, m)
    return lead_qpp, t_ok, p_keep, live, n_live, aa, irr


@njit(cache=True)
def decide_p(marks, feats, extra, usable, lead_qpp, p_keep0, t_ok, need, no_aa,
             tmpl_p_rel, p_proj_min, tol_p, fill_p, min_leads, weak_rel, tol_weak, weak_cols):
    """P waves per beat: template members take the template's decision, a beat has a P
    wave when at least ``need`` leads keep one (none with ``no_aa``); then the
    multi-lead consistency of the P boundaries (``consensus_marks``) and the weak-lead
    pull (``waves._pull_weak_leads``). Returns ``out`` (marks with absent P and T set to
    -1, unusable leads -1), ``p_keep``, ``p_amp`` and ``lead_ok`` (L, nb)."""
    L, nb, _ = marks.shape
    p_keep = np.zeros((L, nb), np.bool_)
    p_amp = np.empty((L, nb))
    beat_p = np.zeros(nb, np.bool_)
    for b in range(nb):
        member = extra[0, b, 2] > 0
        cnt = 0
        for l in range(L):
            if member:
                k = abs(extra[l, b, 4]) >= tmpl_p_rel * lead_qpp[l] and marks[l, b, 1] >= 0 \
                    and extra[l, b, 3] >= p_proj_min
                p_amp[l, b] = feats[l, b, 0]
            else:
                k = p_keep0[l, b]
                p_amp[l, b] = extra[l, b, 1]
            p_keep[l, b] = k
            if k:
                cnt += 1
        beat_p[b] = cnt >= need and not no_aa
    out = marks.copy()
    lead_ok = np.zeros((L, nb), np.bool_)
    keep_ok = np.zeros((L, nb), np.bool_)
    for l in range(L):
        for b in range(nb):
            if not beat_p[b]:
                p_keep[l, b] = False
            if not usable[l]:
                for c in range(9):
                    out[l, b, c] = -1
            else:
                if not p_keep[l, b]:
                    out[l, b, 0] = -1
                    out[l, b, 1] = -1
                    out[l, b, 2] = -1
                if not t_ok[l, b]:
                    out[l, b, 6] = -1
                    out[l, b, 7] = -1
                    out[l, b, 8] = -1
            lead_ok[l, b] = marks[l, b, 3] >= 0 and usable[l]
            keep_ok[l, b] = p_keep[l, b] and lead_ok[l, b]
    cols = np.empty(2, np.int64)
    cols[0] = 0
    cols[1] = 2
    p_keep = consensus_marks(out, marks, keep_ok, lead_ok, beat_p, cols,
                             tol_p, fill_p, min_leads)
    if weak_rel > 0:
        _pull_weak(out, p_keep, p_amp, lead_qpp, weak_rel, tol_weak, weak_cols)
    return out, p_keep, p_amp, lead_ok


@njit(cache=True)
def _pull_weak(out, keep, amp, lead_qpp, weak_rel, tol, cols):
    """``waves._pull_weak_leads`` (in place on ``out``)."""
    L, nb = keep.shape
    rel = np.empty((L, nb))
    buf = np.empty(max(L, 1))
    med_rel = np.empty(nb)
    for b in range(nb):
        k = np.int64(0)
        for l in range(L):
            if keep[l, b]:
                rel[l, b] = abs(amp[l, b]) / max(lead_qpp[l], 1e-12)
                if not np.isnan(rel[l, b]):
                    buf[k] = rel[l, b]
                    k += 1
            else:
                rel[l, b] = np.nan
        med_rel[b] = _nanmedian_buf(buf, k)
    weak = np.zeros((L, nb), np.bool_)
    anyw = False
    for b in range(nb):
        for l in range(L):
            weak[l, b] = keep[l, b] and rel[l, b] < weak_rel * med_rel[b]
            anyw = anyw or weak[l, b]
    if not anyw:
        return
    v = np.empty(L)
    for ci in range(cols.shape[0]):
        c = cols[ci]
        for b in range(nb):
            k = np.int64(0)
            for l in range(L):
                if keep[l, b] and out[l, b, c] >= 0:
                    v[l] = float(out[l, b, c])
                    buf[k] = v[l]
                    k += 1
                else:
                    v[l] = np.nan
            med = _nanmedian_buf(buf, k)
            if not np.isfinite(med):
                continue
            rm = np.int64(np.rint(med))   # np.round: half to even
            for l in range(L):
                if weak[l, b] and abs(v[l] - med) > tol:
                    out[l, b, c] = rm


@njit(cache=True)
def _robust_extreme_k(out, col, ok, earliest, tol):
    """``waves._robust_extreme`` of ``out[:, :, col]`` (int64 (nb,)). Called with
    ``np.int64`` / ``np.bool_`` / float arguments: one compiled version for all calls."""
    L, nb = ok.shape
    big = _I64_MAX
    res = -np.ones(nb, np.int64)
    for b in range(nb):
        cnt = 0
        # first and second of the sorted (earliest) or reverse-sorted (latest) column
        f1 = big if earliest else -1
        f2 = f1
        for l in range(L):
            if ok[l, b]:
                w = out[l, b, col]
                cnt += 1
            else:
                w = big if earliest else np.int64(-1)
            if l == 0:
                f1 = w
            elif l == 1:
                if (w < f1) if earliest else (w > f1):
                    f2 = f1
                    f1 = w
                else:
                    f2 = w
            elif (w < f1) if earliest else (w > f1):
                f2 = f1
                f1 = w
            elif (w < f2) if earliest else (w > f2):
                f2 = w
        if cnt == 0:
            continue
        first = f1
        if L > 1 and cnt >= 3 and abs(f1 - f2) > tol:
            first = f2
        res[b] = first
    return res


@njit(cache=True)
def decide_rest(out, marks, feats, extra, usable, r, lead_qpp, p_keep, p_amp, t_ok0, lead_ok,
                need, fs, env_mode, env_tol, tol_t, fill_t, min_leads, sh_qon, sh_qoff,
                sh_pon, sh_poff, sh_toff, irregular):
    """Rest of ``waves._decide`` after the P consistency step (``out`` in place): the
    envelope P offsets (``waves._apply_p_envelope``; env_mode 0 off, 1 set, 2 strong),
    the T consistency step, peaks inside their boundaries, global marks, beat classes,
    quality and per-lead features. Needs nb > 0 and L > 0."""
    L, nb, _ = marks.shape
    # -- envelope P offsets
    if env_mode != 0:
        buf = np.empty(L)
        rel = np.empty(L)
        for b in range(nb):
            e = np.int64(extra[0, b, 6])
            k = np.int64(0)
            for l in range(L):
                sel = p_keep[l, b] and e >= 0 and out[l, b, 2] >= 0
                rel[l] = np.nan
                if sel and env_mode == 2:
                    rel[l] = abs(p_amp[l, b]) / max(lead_qpp[l], 1e-12)
                    if not np.isnan(rel[l]):
                        buf[k] = rel[l]
                        k += 1
            med = _nanmedian_buf(buf, k) if env_mode == 2 else 0.0
            for l in range(L):
                sel = p_keep[l, b] and e >= 0 and out[l, b, 2] >= 0
                if not sel:
                    continue
                own = False
                if env_mode == 2:
                    d = out[l, b, 2] - e
                    own = rel[l] >= med and d >= 0 and d <= env_tol
                if not own:
                    out[l, b, 2] = e
    # -- T consistency
    beat_t = np.zeros(nb, np.bool_)
    keep_t = np.zeros((L, nb), np.bool_)
    for b in range(nb):
        cnt = 0
        for l in range(L):
            if t_ok0[l, b]:
                cnt += 1
            keep_t[l, b] = t_ok0[l, b] and lead_ok[l, b]
        beat_t[b] = cnt >= need
    cols = np.empty(1, np.int64)
    cols[0] = 8
    t_ok = consensus_marks(out, marks, keep_t, lead_ok, beat_t, cols, tol_t,
                           fill_t, min_leads)
    # -- peaks: filled leads take their own candidate (else the middle of the wave),
    # peaks stay inside their boundaries; P ends before this lead's QRS
    for l in range(L):
        for b in range(nb):
            for wv in range(2):          # P (0, 1, 2), then T (6, 7, 8)
                a = 6 * wv
                pk = a + 1
                z = a + 2
                oa = out[l, b, a]
                oz = out[l, b, z]
                v = out[l, b, pk]
                if v < 0 and oa >= 0 and oz >= 0:
                    v = marks[l, b, pk] if marks[l, b, pk] >= 0 else (oa + oz) // 2
                if v >= 0:
                    v = min(max(v, oa), max(oa, oz))
                else:
                    v = -1
                out[l, b, pk] = v
            if out[l, b, 2] >= 0 and out[l, b, 3] >= 0:
                out[l, b, 2] = min(out[l, b, 2], out[l, b, 3] - 1)
    # -- global marks
    g = -np.ones((nb, 9), np.int64)
    q_ok = np.zeros((L, nb), np.bool_)
    pk_ok = np.zeros((L, nb), np.bool_)
    tk_ok = np.zeros((L, nb), np.bool_)
    for l in range(L):
        for b in range(nb):
            q_ok[l, b] = out[l, b, 3] >= 0 and usable[l]
            pk_ok[l, b] = out[l, b, 0] >= 0
            tk_ok[l, b] = out[l, b, 8] >= 0
    # tolerances as floats (compared with differences of sample indices, exact)
    tol_s = float(int(0.02 * fs))
    big = 10 ** 9 * fs
    t_, f_ = np.bool_(True), np.bool_(False)
    g3 = _robust_extreme_k(out, np.int64(3), q_ok, t_, big)
    g5 = _robust_extreme_k(out, np.int64(5), q_ok, f_, big)
    g0 = _robust_extreme_k(out, np.int64(0), pk_ok, t_, tol_s)
    g2 = _robust_extreme_k(out, np.int64(2), pk_ok, f_, tol_s)
    g6 = _robust_extreme_k(out, np.int64(6), tk_ok, t_, tol_s)
    g8 = _robust_extreme_k(out, np.int64(8), tk_ok, f_, 2 * tol_s)
    for b in range(nb):
        g[b, 4] = r[b]
        g[b, 3] = max(g3[b] + sh_qon, 0) if g3[b] >= 0 else -1
        g[b, 5] = g5[b] + sh_qoff if g5[b] >= 0 else -1
        g[b, 0] = max(g0[b] + sh_pon, 0) if g0[b] >= 0 else -1
        v = g2[b]
        if env_mode != 0:
            env = np.int64(extra[0, b, 6])
            if v >= 0 and env >= 0:
                v = env + sh_poff
        if v >= 0 and g[b, 3] >= 0:
            v = min(v, g[b, 3] - 1)
        g[b, 2] = v
        g[b, 6] = g6[b]
        g[b, 8] = g8[b] + sh_toff if g8[b] >= 0 else -1
        # peaks: from the lead with the largest |amplitude| relative to its QRS size
        for fc in range(2):              # P peak (col 1, feature 0), T peak (7, 1)
            col = 1 + 6 * fc
            best = 0
            bs = -np.inf
            anyok = False
            for l in range(L):
                ok = pk_ok[l, b] if col == 1 else tk_ok[l, b]
                s = abs(feats[l, b, fc]) / max(lead_qpp[l], 1e-12) if ok else -1.0
                anyok = anyok or ok
                if np.isnan(s):
                    best = l
                    break
                if l == 0 or s > bs:
                    bs = s
                    best = l
            g[b, col] = out[best, b, col] if anyok else -1
    # -- quality and beat classes
    n_use = 0
    for l in range(L):
        if usable[l]:
            n_use += 1
    n_use = max(1, n_use)
    quality = np.empty(nb)
    cls = np.zeros(nb, np.int8)
    nr = nb - 1
    rbuf = np.empty(9)
    for b in range(nb):
        c = 0
        for l in range(L):
            if q_ok[l, b]:
                c += 1
        quality[b] = c / n_use
        qrs_ms = (g[b, 5] - g[b, 3]) * 1000.0 / fs
        if g[b, 3] >= 0 and qrs_ms > 120:
            cls[b] = 1
        if nb >= 3 and not irregular and b >= 1 and cls[b] == 0:
            # premature: RR below 0.8 of the median of the 9 intervals around it
            i = b - 1
            k = np.int64(0)
            for j in range(max(0, i - 4), min(nr, i + 5)):
                rbuf[k] = float(r[j + 1] - r[j])
                k += 1
            local = _nanmedian_buf(rbuf, k)
            if float(r[b] - r[b - 1]) < 0.8 * local:
                cls[b] = 2
        if quality[b] < 0.5:
            cls[b] = 3
        if g[b, 3] < 0:
            cls[b] = 4
    f_p = np.empty((L, nb))
    f_t = np.empty((L, nb))
    f_r = np.empty((L, nb))
    f_q = np.empty((L, nb))
    f_i = np.empty((L, nb))
    for l in range(L):
        for b in range(nb):
            f_p[l, b] = p_amp[l, b] if p_keep[l, b] else np.nan
            f_t[l, b] = feats[l, b, 1] if t_ok[l, b] else np.nan
            f_r[l, b] = feats[l, b, 5] if q_ok[l, b] else np.nan
            f_q[l, b] = feats[l, b, 2] if q_ok[l, b] else np.nan
            f_i[l, b] = feats[l, b, 3]
    return g, cls, quality, t_ok, f_p, f_t, f_r, f_q, f_i


def median_network(n):
    """Comparators (k, 2) of a Batcher odd-even merge sorting network for ``n`` inputs,
    pruned to those the two middle outputs depend on (``median_windows_net``).

    The network for the next power of two is cut to the first ``n`` wires: inputs beyond
    ``n`` act as +inf and never move, so comparators touching them can be dropped."""
    m = 1
    while m < n:
        m *= 2
    comps = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        comps.append((a, b))
            k //= 2
        p *= 2
    need = {(n - 1) // 2, n // 2}
    keep = []
    for a, b in reversed(comps):
        if a in need or b in need:
            keep.append((a, b))
            need.update((a, b))
    return np.array(keep[::-1], np.int64).reshape(-1, 2)


@njit(cache=True)
def median_windows_net(y, leads, starts, w, comps):
    """Sample-wise median over beats of the windows ``y[l, s:s+w]`` (as
    ``_qrs_kernels.median_windows``: same values, the median of a set does not depend on
    how it is found) with a sorting network applied to blocks of samples at once: the
    compare-exchange steps have no data-dependent branches, so they run on whole
    vectors of samples. ``comps`` from :func:`median_network` for ``len(starts)``.
    Returns (out, ok); ok is False when a window holds NaN (then ``out`` is not valid:
    min/max steps do not order NaN as a sort does)."""
    nl = leads.shape[0]
    nm = starts.shape[0]
    out = np.empty((nl, w))
    B = 256
    buf = np.empty((nm, B))
    lo = (nm - 1) // 2
    hi = nm // 2
    nc = comps.shape[0]
    for li in range(nl):
        l = leads[li]
        for i0 in range(0, w, B):
            m = min(B, w - i0)
            bad = False
            for k in range(nm):
                row = buf[k]
                src = y[l, starts[k] + i0:starts[k] + i0 + m]
                for t in range(m):
                    v = src[t]
                    row[t] = v
                    bad |= v != v
            if bad:
                return out, False
            for c in range(nc):
                ra = buf[comps[c, 0]]
                rb = buf[comps[c, 1]]
                for t in range(m):
                    u = ra[t]
                    v = rb[t]
                    ra[t] = min(u, v)
                    rb[t] = max(u, v)
            o = out[li, i0:i0 + m]
            if lo == hi:
                for t in range(m):
                    o[t] = buf[lo, t]
            else:
                for t in range(m):
                    o[t] = 0.5 * (buf[lo, t] + buf[hi, t])
    return out, True


@njit(cache=True)
def drop_marks_in_gaps(marks, x, offset):
    """In place: marks (L, nb, k) whose sample of their own lead in ``x`` (L, n) is NaN
    or inf become -1 (``waves._drop_marks_in_gaps``: only the marked samples are
    looked at, not the whole record)."""
    L, nb, k = marks.shape
    for l in range(L):
        for b in range(nb):
            for c in range(k):
                m = marks[l, b, c]
                if m >= 0 and not np.isfinite(x[l, m - offset]):
                    marks[l, b, c] = -1


@njit(cache=True)
def p_offset_envelope_marks(y, usable, marks, feats, fs, smooth_s, alpha):
    """:func:`p_offset_envelope` with its inputs taken from the per-lead marks: the PR
    level before the earliest usable lead's QRS onset, the P maximum searched between
    the medians over usable leads of the candidate P onsets and offsets (truncated to
    samples, as ``waves._p_offset_envelope``)."""
    L, nb, _ = marks.shape
    qon = -np.ones(nb, np.int64)
    lo = -np.ones(nb, np.int64)
    hi = -np.ones(nb, np.int64)
    buf = np.empty(max(L, 1))
    for b in range(nb):
        q = _I64_MAX
        for l in range(L):
            if usable[l] and marks[l, b, 3] >= 0 and marks[l, b, 3] < q:
                q = marks[l, b, 3]
        if q != _I64_MAX:
            qon[b] = q
        k = np.int64(0)
        for l in range(L):
            if usable[l] and marks[l, b, 0] >= 0:
                buf[k] = float(marks[l, b, 0])
                k += 1
        a = _nanmedian_buf(buf, k)
        k = np.int64(0)
        for l in range(L):
            if usable[l] and marks[l, b, 2] >= 0:
                buf[k] = float(marks[l, b, 2])
                k += 1
        z = _nanmedian_buf(buf, k)
        if np.isfinite(a) and np.isfinite(z):
            lo[b] = np.int64(a)
            hi[b] = np.int64(z)
    scale = np.empty((L, nb))
    for l in range(L):
        for b in range(nb):
            scale[l, b] = feats[l, b, 2]
    return p_offset_envelope(y, usable, scale, qon, lo, hi, fs, smooth_s, alpha)


@njit(cache=True)
def template_members(r, n, rr_tol):
    """Median-beat stage, step 1: the median RR ``rr_med`` (as ``int(np.median(rr))``),
    the template's R position ``c`` and length ``w`` (three RR), and the beats whose
    window lies inside the record and whose RR before and after are within ``rr_tol``
    of the median (the first and last beat count the median as their missing RR)."""
    nb = r.shape[0]
    rr = np.empty(nb - 1)
    for i in range(nb - 1):
        rr[i] = r[i + 1] - r[i]
    buf = rr.copy()
    rr_med = int(_median_small(buf, nb - 1))
    c = int(1.5 * rr_med)
    w = 3 * rr_med + 1
    member = np.zeros(nb, np.bool_)
    for b in range(nb):
        inside = r[b] - c >= 0 and r[b] - c + (w - 1) < n
        rp = (rr[b - 1] if b > 0 else rr_med) / rr_med
        rn = (rr[b] if b < nb - 1 else rr_med) / rr_med
        member[b] = inside and abs(rp - 1) < rr_tol and abs(rn - 1) < rr_tol
    return rr_med, c, w, member


@njit(cache=True)
def _shift_onsets(on, sh):
    """In place: found onsets (>= 0) of ``on`` (L, nb) moved by ``sh`` samples, not
    before sample 0."""
    L, nb = on.shape
    for l in range(L):
        for b in range(nb):
            if on[l, b] >= 0:
                on[l, b] = max(on[l, b] + sh, 0)


@njit(cache=True)
def _extra_init(marks, feats, n_extra):
    """The working array ``extra`` (L, nb, n_extra) of :func:`delineate_block`."""
    L, nb, _ = marks.shape
    extra = np.zeros((L, nb, n_extra))
    for l in range(L):
        for b in range(nb):
            extra[l, b, 0] = marks[l, b, 1]
            extra[l, b, 1] = feats[l, b, 0]
            extra[l, b, 5] = -1.0
            extra[l, b, 6] = -1.0
    return extra


def template_delineate(tmpl, use, n_leads, c, rr_med, fs, p, alpha, beta, pad, sh):
    """Median-beat stage, step 2: the template (usable leads ``use``, others zero) is
    delineated as three beats at ``c - rr_med``, ``c``, ``c + rr_med`` (QRS bounds from
    the multi-lead spatial velocity, onsets shifted by ``sh`` samples); returns the
    middle beat's marks (L, 9) and features (L, N_FEATS)."""
    w = tmpl.shape[1]
    full = np.zeros((n_leads, w))
    u = np.zeros(n_leads, np.bool_)
    full[use] = tmpl          # one indexed assignment, not one Python-level row copy per lead
    u[use] = True
    rt = np.array([c - rr_med, c, c + rr_med], np.int64)
    _, _, on, off = qrs_bounds_multilead(full, u, rt, fs, alpha, beta, pad)
    _shift_onsets(on, sh)
    m3, f3 = delineate_leads_only(full, u, rt, fs, p, on, off, 1)
    if p.shape[0] > 25:
        # same per-lead QRS bounds as the record's beats (used with qrs_from_template)
        qrs_bounds_amplitude(full, u, rt, m3, p[21], p[24], int(p[22] * fs), int(round(p[23] * fs)),
                             int(round(p[25] * fs)))
    return m3[:, 1].copy(), f3[:, 1].copy()


@njit(cache=True)
def _peak_to_peak(y, a, b):
    # max - min of y[a..b], both ends included
    mn = y[a]
    mx = y[a]
    for i in range(a, b + 1):
        v = y[i]
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    return mx - mn


@njit(cache=True)
def qrs_bounds_amplitude(y, usable, r, marks, rel_off, rel_on, k, sh_off, sh_on):
    """In place: per-lead QRS offsets (``marks[:, :, 5]``) moved earlier, and onsets
    (``marks[:, :, 3]``) later, where the lead's own signal is still at its level.

    The slope rule of :func:`qrs_bounds_multilead` searches inwards from the multi-lead
    bounds with a low slope threshold, so a lead whose complex ends early but keeps a
    slow terminal drift (the leads perpendicular to a wide terminal wave, e.g. lead II
    in right bundle branch block) inherits the latest lead's offset, and a lead with
    small fibrillatory or noise wiggles before its complex the earliest lead's onset.
    Per lead and beat, with ``pp`` the lead's peak-to-peak over its QRS: offset: the
    level is the mean of the lead over ``k`` samples from the offset, and the amplitude
    offset is one sample after the last sample between the R fiducial ``r`` and the
    offset further than ``rel_off * pp`` from it, plus ``sh_off`` samples; onset: the
    level is the mean over ``k`` samples up to the onset, the amplitude onset is one
    sample before the first sample between the onset and ``r`` further than
    ``rel_on * pp`` from it, minus ``sh_on`` samples. The shifts are the amplitude
    rule's bias against the annotators (LUDB development split). Bounds only move
    inwards; ``rel_* <= 0`` switches a side off. Offsets first: the onset's ``pp`` is
    taken up to the updated offset.
    """
    if rel_off <= 0.0 and rel_on <= 0.0:
        return
    L, n = y.shape
    nb = r.shape[0]
    for l in range(L):
        if not usable[l]:
            continue
        yl = y[l]
        for b in range(nb):
            on = marks[l, b, 3]
            off = marks[l, b, 5]
            rb = r[b]
            if on < 0 or off < 0 or off >= n:
                continue
            # peak-to-peak over on..off (recomputed for the onset only if off moved)
            ptp = _peak_to_peak(yl, on, off)
            if rel_off > 0.0 and on <= rb <= off:
                hi = min(n - 1, off + k)
                lev = 0.0
                for i in range(off, hi + 1):
                    lev += yl[i]
                lev /= hi - off + 1
                th = rel_off * ptp
                i = off
                while i >= rb and abs(yl[i] - lev) <= th:
                    i -= 1
                if i >= rb:
                    cand = i + 1 + sh_off
                    if cand < off:
                        marks[l, b, 5] = cand
                        off = cand
                        ptp = _peak_to_peak(yl, on, off)
            if rel_on > 0.0 and on <= rb:
                lo = max(0, on - k)
                lev = 0.0
                for i in range(lo, on + 1):
                    lev += yl[i]
                lev /= on - lo + 1
                th = rel_on * ptp
                i = on
                while i <= rb and abs(yl[i] - lev) <= th:
                    i += 1
                if i <= rb:
                    cand = i - 1 - sh_on
                    if cand > on:
                        marks[l, b, 3] = cand


@njit(cache=True)
def p_offset_amplitude(y, usable, marks, w, k, rel):
    """Per-lead P offset from the lead's own amplitude: (L, nb) sample indices, -1 where
    not computed.

    On the moving average (width ``w``) of the band-limited lead, the PR level is the
    mean over the ``k - 1`` samples ending two samples before the lead's QRS onset; the
    offset is the first sample from the P peak (``marks[:, :, 1]``) on that lies within
    ``rel`` times the P amplitude (peak minus level) of that level, else the sample
    before the QRS onset. Needs a P peak at least ``k`` samples before the QRS onset.
    """
    L, n = y.shape
    nb = marks.shape[1]
    out = -np.ones((L, nb), np.int64)
    h = w // 2
    seg = np.empty(n + 1)
    for l in range(L):
        if not usable[l]:
            continue
        yl = y[l]
        for b in range(nb):
            pk = marks[l, b, 1]
            q = marks[l, b, 3]
            if pk < 0 or q < 0 or q - k < pk or q > n:
                continue
            m = q - pk
            a = max(0, pk - h)
            z = min(n, pk + h + 1)
            acc = 0.0
            for i in range(a, z):
                acc += yl[i]
            seg[0] = acc / (z - a)
            for j in range(1, m):
                i = pk + j
                if i + h < n:
                    acc += yl[i + h]
                    z = i + h + 1
                if i - h - 1 >= 0:
                    acc -= yl[i - h - 1]
                    a = i - h
                seg[j] = acc / (z - a)
            if q - 1 > q - k:
                lev = 0.0
                for j in range(q - k - pk, q - 1 - pk):
                    lev += seg[j]
                lev /= k - 1
            else:
                lev = seg[m - 1]
            th = rel * abs(seg[0] - lev)
            c = q - 1
            for j in range(m):
                if abs(seg[j] - lev) <= th:
                    c = pk + j
                    break
            out[l, b] = c
    return out


@njit(cache=True)
def mix_p_offset(out, cand, sh):
    """In place: ``out[:, :, 2]`` (P offsets) becomes ``(offset + cand + sh) // 2`` where
    both exist, kept at or after the P peak and before the QRS onset (see
    ``waves._mix_p_offset_amplitude``)."""
    L, nb = cand.shape
    for l in range(L):
        for b in range(nb):
            off = out[l, b, 2]
            c = cand[l, b]
            if off < 0 or c < 0:
                continue
            v = (off + c + sh) // 2
            if out[l, b, 3] >= 0 and v > out[l, b, 3] - 1:
                v = out[l, b, 3] - 1
            if out[l, b, 1] >= 0 and v < out[l, b, 1]:
                v = out[l, b, 1]
            out[l, b, 2] = v


def delineate_block(y, usable, r, fs, p, alpha, beta, pad, sh, n_extra):
    """Per-lead stage of one block: multi-lead QRS bounds (onsets shifted by ``sh``
    samples), :func:`delineate_leads`, and the working array ``extra``
    (L, nb, n_extra) with the per-beat P candidates (0 peak, 1 amplitude) kept before
    the median-beat stage overwrites the member beats' marks, columns 5 and 6 set to -1
    (not computed), the others zero. Returns g_on, g_off, marks, feats, extra."""
    g_on, g_off, on, off = qrs_bounds_multilead(y, usable, r, fs, alpha, beta, pad)
    _shift_onsets(on, sh)
    marks, feats = delineate_leads_only(y, usable, r, fs, p, on, off, -1)
    if p.shape[0] > 25:
        qrs_bounds_amplitude(y, usable, r, marks, p[21], p[24], int(p[22] * fs), int(round(p[23] * fs)),
                             int(round(p[25] * fs)))
    return g_on, g_off, marks, feats, _extra_init(marks, feats, n_extra)


@njit(cache=True)
def live_beats(x, r):
    """Per R fiducial: True when at least one lead of ``x`` (L, n) is finite there."""
    nb = r.shape[0]
    out = np.zeros(nb, np.bool_)
    for b in range(nb):
        for l in range(x.shape[0]):
            if np.isfinite(x[l, r[b]]):
                out[b] = True
                break
    return out


@njit(cache=True)
def qrs_correlation(y, leads, starts, w, tq):
    """Per beat: correlation, over all ``leads`` together, of the beat's window
    ``y[l, s:s+w]`` with the template ``tq`` (len(leads), w), each lead's window and
    template centred on its own mean. Same quantity as the numpy
    ``sum(q tq) / sqrt(sum(q q) sum(tq tq))``; no (leads, beats, w) copy is made."""
    nl = leads.shape[0]
    nb = starts.shape[0]
    t = np.empty((nl, w))
    stt = 0.0
    for li in range(nl):
        m = 0.0
        for i in range(w):
            m += tq[li, i]
        m /= w
        for i in range(w):
            d = tq[li, i] - m
            t[li, i] = d
            stt += d * d
    out = np.empty(nb)
    for b in range(nb):
        s = starts[b]
        num = 0.0
        sqq = 0.0
        for li in range(nl):
            row = y[leads[li], s:s + w]
            m = 0.0
            for i in range(w):
                m += row[i]
            m /= w
            for i in range(w):
                d = row[i] - m
                num += d * t[li, i]
                sqq += d * d
        out[b] = num / (np.sqrt(sqq * stt) + 1e-30)
    return out


@njit(cache=True)
def p_onset_amplitude(y, usable, out, w, k, gap, rel, maxback):
    """Per-lead P onset from the lead's own amplitude: (L, nb) sample indices of ``y``,
    -1 where not found.

    On the moving average (width ``w``) of the band-limited lead, the TP level is the
    mean over the ``k`` samples ending ``gap`` samples before the decided P onset
    (``out[:, :, 0]``); the amplitude onset is the first sample, searching back from the
    P peak (``out[:, :, 1]``) over at most ``maxback`` samples, that lies within ``rel``
    times the P amplitude (peak minus level) of that level. The smoothed values are
    computed only over the samples visited (the record is not smoothed as a whole).
    """
    L, n = y.shape
    nb = out.shape[1]
    res = -np.ones((L, nb), np.int64)
    h = w // 2
    for l in range(L):
        if not usable[l]:
            continue
        yl = y[l]
        for b in range(nb):
            on = out[l, b, 0]
            pk = out[l, b, 1]
            if on < 0 or pk <= on or pk >= n:
                continue
            a = on - gap - k
            if a < 0:
                continue
            # level: mean of the smoothed lead over a .. a + k - 1 (running window sum)
            lo = max(0, a - h)
            hi = min(n, a + h + 1)
            s = 0.0
            for j in range(lo, hi):
                s += yl[j]
            lev = s / (hi - lo)
            for i in range(a + 1, a + k):
                if i + h < n:
                    s += yl[i + h]
                    hi = i + h + 1
                if i - h - 1 >= 0:
                    s -= yl[i - h - 1]
                    lo = i - h
                lev += s / (hi - lo)
            lev /= k
            # smoothed value at the peak, then backwards with a running sum
            lo = max(0, pk - h)
            hi = min(n, pk + h + 1)
            s = 0.0
            for j in range(lo, hi):
                s += yl[j]
            th = rel * abs(s / (hi - lo) - lev)
            stop = max(0, pk - maxback)
            i = pk
            while True:
                if abs(s / (hi - lo) - lev) <= th:
                    res[l, b] = i
                    break
                if i <= stop:
                    break
                # move the window from centre i to centre i - 1
                if i + h < n:
                    s -= yl[i + h]
                    hi = i + h
                if i - 1 - h >= 0:
                    s += yl[i - 1 - h]
                    lo = i - 1 - h
                i -= 1
    return res


@njit(cache=True)
def mix_p_onset(out, cand, sh, cap):
    """In place: ``out[:, :, 0]`` (P onsets) becomes the mean of the onset and
    ``cand + sh``, rounded to the nearest sample (ties to even: no bias), where both exist and ``cand + sh`` lies within ``cap`` samples of the onset, kept at or
    before the P peak and at or after 0 (see ``waves._mix_p_onset_amplitude``)."""
    L, nb = cand.shape
    for l in range(L):
        for b in range(nb):
            on = out[l, b, 0]
            c = cand[l, b]
            if on < 0 or c < 0 or abs(c + sh - on) > cap:
                continue
            v = np.int64(np.rint(0.5 * (on + c + sh)))
            if out[l, b, 1] >= 0 and v > out[l, b, 1]:
                v = out[l, b, 1]
            if v < 0:
                v = 0
            out[l, b, 0] = v
