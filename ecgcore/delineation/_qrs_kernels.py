"""numba kernels for filtering and QRS detection.

Imported only by :mod:`ecgcore.delineation`, never at ``import ecgcore`` time.
Every kernel assumes C-contiguous float64 input without NaN (the Python wrappers in
``qrs.py`` and ``waves.py`` take care of that), except :func:`scan_rows`, which finds
the NaN, and :func:`detect`, which reports them instead of detecting. No kernel uses
fastmath, and the fused/vectorised loops keep each value's operations in the original
order, so results are bit-identical to the straightforward one-pass-per-step versions.

Compile time (numba compiles every kernel on first use in a fresh environment): a
constant argument in a call between kernels (``f(x, 0)``, ``f(x, True)``) is typed as
a *literal* and compiles a separate specialisation of the callee (and of everything it
calls) per constant, so such arguments are passed as ``np.int64(...)`` /
``np.bool_(...)``; numpy helpers that pull in large generic implementations (sorting,
``np.median``, ``np.full``, broadcasting assignments) are replaced by small loops with
the same results. Each kernel then compiles once per input type.

A kernel that calls other kernels links their code in and optimises and compiles all
of it again, so :func:`detect` and :func:`detect_clean` share one compiled entry point,
:func:`detect_kernel` (one dispatch per block: a detection takes only tens of
microseconds per lead, where Python glue between kernels would show).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _section_state(sos, s, x0):
    """Initial state (z1, z2) of section ``s`` in the steady state of input ``x0``, so a
    DC offset gives no transient (for unit DC gain: x0*(1-b0), x0*(b2-a2))."""
    b0 = sos[s, 0]
    b1 = sos[s, 1]
    b2 = sos[s, 2]
    a1 = sos[s, 4]
    a2 = sos[s, 5]
    den = 1.0 + a1 + a2
    dc = (b0 + b1 + b2) / den if abs(den) > 1e-12 else 0.0
    return x0 * dc - b0 * x0, b2 * x0 - a2 * x0 * dc


@njit(cache=True)
def sos_forward(x, sos, out):
    """Causal second-order-section filter of one row (direct form II transposed).

    All sections advance together, sample by sample: the recurrences of different
    sections are independent within a sample, so their latencies overlap (a section
    at a time would wait on one recurrence chain per pass). Every value is computed
    with the same operations in the same order as section-by-section filtering, so
    the result is bit-identical to it.
    """
    n = x.shape[0]
    ns = sos.shape[0]
    if n == 0:
        return
    if ns == 2:
        # the QRS low-pass (4th order): state in registers
        b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
        b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
        v = x[0]
        p1, p2 = _section_state(sos, np.int64(0), v)
        y = b00 * v + p1
        p1 = b01 * v - a01 * y + p2
        p2 = b02 * v - a02 * y
        v = y
        q1, q2 = _section_state(sos, np.int64(1), v)
        y = b10 * v + q1
        q1 = b11 * v - a11 * y + q2
        q2 = b12 * v - a12 * y
        out[0] = y
        for i in range(1, n):
            v = x[i]
            y = b00 * v + p1
            p1 = b01 * v - a01 * y + p2
            p2 = b02 * v - a02 * y
            v = y
            y = b10 * v + q1
            q1 = b11 * v - a11 * y + q2
            q2 = b12 * v - a12 * y
            out[i] = y
        return
    z1 = np.empty(ns)
    z2 = np.empty(ns)
    v = x[0]
    for s in range(ns):
        z1[s], z2[s] = _section_state(sos, s, v)
        y = sos[s, 0] * v + z1[s]
        z1[s] = sos[s, 1] * v - sos[s, 4] * y + z2[s]
        z2[s] = sos[s, 2] * v - sos[s, 5] * y
        v = y
    out[0] = v
    for i in range(1, n):
        v = x[i]
        for s in range(ns):
            y = sos[s, 0] * v + z1[s]
            z1[s] = sos[s, 1] * v - sos[s, 4] * y + z2[s]
            z2[s] = sos[s, 2] * v - sos[s, 5] * y
            v = y
        out[i] = v


@njit(cache=True)
def _sos_cols_step(buf, i, sos, z1, z2):
    """Advance every section by one sample for all columns of row ``i`` of ``buf``
    (in place). The inner loop runs across leads, so the leads' independent
    recurrences vectorise."""
    L = buf.shape[1]
    for s in range(sos.shape[0]):
        b0 = sos[s, 0]
        b1 = sos[s, 1]
        b2 = sos[s, 2]
        a1 = sos[s, 4]
        a2 = sos[s, 5]
        for l in range(L):
            xi = buf[i, l]
            yi = b0 * xi + z1[s, l]
            z1[s, l] = b1 * xi - a1 * yi + z2[s, l]
            z2[s, l] = b2 * xi - a2 * yi
            buf[i, l] = yi


@njit(cache=True)
def _sos2_tile(buf, sos, j0, j1, step, p1, p2, q1, q2):
    """Two cascaded sections over rows ``range(j0, j1, step)`` of ``buf``, every column,
    in place; state (p1, p2) of section 0 and (q1, q2) of section 1, per column,
    updated. One inner loop across leads (vectorised) with both sections in it;
    coefficients in registers."""
    L = buf.shape[1]
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    for j in range(j0, j1, step):
        for l in range(L):
            v = buf[j, l]
            y = b00 * v + p1[l]
            p1[l] = b01 * v - a01 * y + p2[l]
            p2[l] = b02 * v - a02 * y
            v = y
            y = b10 * v + q1[l]
            q1[l] = b11 * v - a11 * y + q2[l]
            q2[l] = b12 * v - a12 * y
            buf[j, l] = y


@njit(cache=True)
def _sos_cols_first(buf, i, sos, z1, z2):
    """Initial states from row ``i`` (each section's own input there), then the step."""
    L = buf.shape[1]
    for s in range(sos.shape[0]):
        for l in range(L):
            v = buf[i, l]
            z1[s, l], z2[s, l] = _section_state(sos, s, v)
            y = sos[s, 0] * v + z1[s, l]
            z1[s, l] = sos[s, 1] * v - sos[s, 4] * y + z2[s, l]
            z2[s, l] = sos[s, 2] * v - sos[s, 5] * y
            buf[i, l] = y


@njit(cache=True)
def sos_cols(buf, sos, backward):
    """SOS filter of every column of ``buf`` (m, L), in place, forward in time or
    backward, all sections advancing together (bit-identical to one section at a
    time). The initial state is the steady state of the first sample."""
    m, L = buf.shape
    if m == 0:
        return
    ns = sos.shape[0]
    z1 = np.empty((ns, L))
    z2 = np.empty((ns, L))
    # the first row sets the state, then the other rows in time order (the helpers are
    # called directly: each kernel between costs another compilation of those below)
    if backward:
        _sos_cols_first(buf, m - 1, sos, z1, z2)
        j0, j1, step = m - 2, np.int64(-1), np.int64(-1)
    else:
        _sos_cols_first(buf, np.int64(0), sos, z1, z2)
        j0, j1, step = np.int64(1), m, np.int64(1)
    if ns == 2:
        _sos2_tile(buf, sos, j0, j1, step, z1[0].copy(), z2[0].copy(), z1[1].copy(), z2[1].copy())
    else:
        for j in range(j0, j1, step):
            _sos_cols_step(buf, j, sos, z1, z2)


@njit(cache=True)
def sos_filtfilt_rows(x, sos, padlen):
    """Zero-phase (forward-backward) filtering of each row with odd-reflection padding.

    Same result as ``scipy.signal.sosfiltfilt(sos, x, padtype="odd", padlen=padlen)``.
    Works on a (samples, leads) buffer so that all leads are filtered in one vectorised
    pass, all sections in the same pass. (Tiling the transpositions into the passes,
    or reading the padded input inside the forward pass, measured slower.)
    """
    return _filtfilt(x, sos, padlen, np.bool_(False))


@njit(cache=True)
def sos_filtfilt_cols(xt, sos, padlen):
    """:func:`sos_filtfilt_rows` of ``xt.T`` for a C-contiguous (samples, leads) array
    ``xt`` (a Fortran-ordered record read in memory order): the same (leads, samples)
    result, bit for bit, without a transposing copy of the input (the padded buffer is
    filled row by row, as it is laid out)."""
    return _filtfilt(xt, sos, padlen, np.bool_(True))


@njit(cache=True)
def _filtfilt(x, sos, padlen, cols):
    """The filter of :func:`sos_filtfilt_rows` (``x`` (leads, samples)) and
    :func:`sos_filtfilt_cols` (``cols``: ``x`` (samples, leads)); returns (leads, samples)."""
    if cols:
        n, n_rows = x.shape
    else:
        n_rows, n = x.shape
    out = np.empty((n_rows, n))
    if n == 0 or n_rows == 0:
        return out
    p = min(padlen, n - 1)
    if p < 0:
        p = 0
    m = n + 2 * p
    buf = np.empty((m, n_rows))
    if cols:
        for i in range(p):
            for r in range(n_rows):
                buf[i, r] = 2.0 * x[0, r] - x[p - i, r]
                buf[n + p + i, r] = 2.0 * x[n - 1, r] - x[n - 2 - i, r]
        for i in range(n):
            for r in range(n_rows):
                buf[p + i, r] = x[i, r]
    else:
        for i in range(p):
            for r in range(n_rows):
                buf[i, r] = 2.0 * x[r, 0] - x[r, p - i]
                buf[n + p + i, r] = 2.0 * x[r, n - 1] - x[r, n - 2 - i]
        for i in range(n):
            for r in range(n_rows):
                buf[p + i, r] = x[r, i]
    sos_cols(buf, sos, np.bool_(False))
    sos_cols(buf, sos, np.bool_(True))
    # back to (leads, samples), four samples per lead at a time (a quarter fewer
    # cycles than one: each row of ``out`` gets a short run of consecutive writes)
    i = 0
    while i + 4 <= n:
        for r in range(n_rows):
            out[r, i] = buf[p + i, r]
            out[r, i + 1] = buf[p + i + 1, r]
            out[r, i + 2] = buf[p + i + 2, r]
            out[r, i + 3] = buf[p + i + 3, r]
        i += 4
    while i < n:
        for r in range(n_rows):
            out[r, i] = buf[p + i, r]
        i += 1
    return out


@njit(cache=True)
def _isort(b):
    """Sort ``b`` in place, ascending (insertion sort; no NaN). Used for short or
    nearly sorted arrays (block maxima, beat indices), where it is as fast as
    ``np.sort`` and far cheaper to compile."""
    for i in range(1, b.shape[0]):
        v = b[i]
        j = i
        while j > 0 and b[j - 1] > v:
            b[j] = b[j - 1]
            j -= 1
        b[j] = v


@njit(cache=True)
def _median_of(a):
    b = a.copy()
    _isort(b)
    k = b.shape[0]
    if k == 0:
        return 0.0
    if k % 2 == 1:
        return b[k // 2]
    return 0.5 * (b[k // 2 - 1] + b[k // 2])


@njit(cache=True)
def _block_max_nonneg(e, a, z):
    """max(0, max e[a:z]) for values >= 0 (squares). Compared as int64 bit patterns,
    which order non-negative doubles exactly like their values: integer max reductions
    vectorise, floating-point ones do not without fastmath."""
    ev = e.view(np.int64)
    mx = np.int64(0)
    for i in range(a, z):
        v = ev[i]
        mx = v if v > mx else mx
    return mx


@njit(cache=True)
def _integrate(fused, fs, used):
    """Centred 100-ms moving-window mean of ``fused`` divided by the lead count."""
    n = fused.shape[0]
    w = max(1, int(round(0.1 * fs)))
    h = w // 2
    out = np.zeros(n)
    if used == 0:
        return out
    c = np.empty(n + 1)
    c[0] = 0.0
    acc = 0.0
    for i in range(n):
        acc = acc + fused[i]
        c[i + 1] = acc
    den = float(w * used)
    # window inside the record for h <= i <= n - w + h: no clamping in that (vectorised) loop
    lo = min(h, n)
    hi = max(lo, n - w + h + 1)
    for i in range(lo):
        a = i - h
        z = i - h + w
        if a < 0:
            a = 0
        if z > n:
            z = n
        out[i] = (c[z] - c[a]) / den
    for i in range(lo, hi):
        out[i] = (c[i - h + w] - c[i - h]) / den
    for i in range(hi, n):
        a = i - h
        z = i - h + w
        if a < 0:
            a = 0
        if z > n:
            z = n
        out[i] = (c[z] - c[a]) / den
    return out


@njit(cache=True)
def qrs_feature(x, fs, sos, usable):
    """Fused multi-lead QRS energy of ``x`` (leads, samples): see :func:`_qrs_feature`."""
    return _qrs_feature(x, fs, sos, usable, np.bool_(False))


@njit(cache=True)
def _qrs_feature(x, fs, sos, usable, cols):
    """Fused multi-lead QRS energy: per lead, low-pass, symmetric difference, square,
    normalise by the median of the 1-s block maxima, clip, sum over leads, then a
    centred 100-ms moving-window integration.

    The symmetric difference over 2*k samples (k = 8 ms) is a band-pass centred near
    30 Hz that ignores baseline wander; the low-pass removes powerline and EMG.

    One lead: filtered along its row (both sections per sample). Several leads: a
    (samples, leads) buffer, every pass vectorised across leads; the sum over leads
    keeps the lead order, so both layouts give the same bits. With ``cols``, ``x`` is
    (samples, leads) (a Fortran-ordered record read in memory order), same result.
    """
    if cols:
        n, n_leads = x.shape
    else:
        n_leads, n = x.shape
    k = max(1, int(round(0.008 * fs)))
    block = max(1, int(fs))
    n_blocks = max(1, n // block)
    fused = np.zeros(n)
    idx = np.empty(n_leads, np.int64)
    L = 0
    for l in range(n_leads):
        if usable[l]:
            idx[L] = l
            L += 1
    if L == 0 or n == 0:
        return _integrate(fused, fs, np.int64(0))
    bmax = np.empty(n_blocks)
    used = np.int64(0)      # not a literal 0: _integrate compiles once
    if L == 1:
        lp = np.empty(n)
        e = np.zeros(n)
        if cols:
            src = np.empty(n)
            for i in range(n):
                src[i] = x[i, idx[0]]
        else:
            src = x[idx[0]]
        sos_forward(src, sos, lp)
        for i in range(k, n - k):
            d = lp[i + k] - lp[i - k]
            e[i] = d * d
        bv = bmax.view(np.int64)
        for b in range(n_blocks):
            a = b * block
            bv[b] = _block_max_nonneg(e, a, n if b == n_blocks - 1 else a + block)
        scale = _median_of(bmax)
        if scale > 1e-20:
            used = np.int64(1)
            inv = 1.0 / scale
            for i in range(n):
                v = e[i] * inv
                # an electrode pop or a saturated step must not drown the other leads
                fused[i] += v if v < 4.0 else 4.0
        return _integrate(fused, fs, used)
    # several leads: (samples, leads) layout, the transposition folded into the copy
    buf = np.empty((n, L))
    if cols:
        for i in range(n):
            for j in range(L):
                buf[i, j] = x[i, idx[j]]
    else:
        for i in range(n):
            for j in range(L):
                buf[i, j] = x[idx[j], i]
    sos_cols(buf, sos, np.bool_(False))
    # symmetric difference, square and 1-s block maxima in one pass, in place: e[i]
    # overwrites buf[i - k], the last use of that row (one large temporary less).
    # The maximum is element-wise across leads, so it vectorises like the rest.
    bm = np.zeros((n_blocks, L))
    k1 = min(k, n)
    k2 = max(k1, n - k)
    for b in range(n_blocks):
        a = max(b * block, k1)
        z = min(n if b == n_blocks - 1 else b * block + block, k2)
        for i in range(a, z):
            for j in range(L):
                d = buf[i + k, j] - buf[i - k, j]
                v = d * d
                buf[i - k, j] = v
                m = bm[b, j]
                bm[b, j] = v if v > m else m
    inv = np.zeros(L)
    live = np.empty(L, np.int64)
    for j in range(L):
        for b in range(n_blocks):
            bmax[b] = bm[b, j]
        scale = _median_of(bmax)
        if scale > 1e-20:
            inv[j] = 1.0 / scale
            live[used] = j
            used += 1
    # sum over leads in lead order (same bits as lead-by-lead accumulation); four
    # samples at a time so that four addition chains overlap. e is zero outside
    # [k1, k2), where fused stays 0.
    i = k1
    while i + 4 <= k2:
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        r = i - k
        for q in range(used):
            j = live[q]
            c = inv[j]
            v0 = buf[r, j] * c
            v1 = buf[r + 1, j] * c
            v2 = buf[r + 2, j] * c
            v3 = buf[r + 3, j] * c
            s0 += v0 if v0 < 4.0 else 4.0
            s1 += v1 if v1 < 4.0 else 4.0
            s2 += v2 if v2 < 4.0 else 4.0
            s3 += v3 if v3 < 4.0 else 4.0
        fused[i] = s0
        fused[i + 1] = s1
        fused[i + 2] = s2
        fused[i + 3] = s3
        i += 4
    while i < k2:
        acc = 0.0
        for q in range(used):
            j = live[q]
            v = buf[i - k, j] * inv[j]
            acc += v if v < 4.0 else 4.0
        fused[i] = acc
        i += 1
    return _integrate(fused, fs, used)


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
    # branch-free (vectorised) local-maximum test first; the loop below then only
    # branches on the few maxima
    ismax = np.zeros(n, np.uint8)
    for i in range(1, n - 1):
        v = f[i]
        ismax[i] = (v > f[i - 1]) & (v >= f[i + 1]) & (v > 0.0)
    for i in range(1, n - 1):
        if ismax[i]:
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
    bv = bm.view(np.int64)
    for b in range(n_blocks):
        a = b * block
        # max(0, max f): f >= 0 here; a negative value (sign bit set) is a negative
        # int64 and loses against 0 exactly as it would as a float
        bv[b] = _block_max_nonneg(f, a, n if b == n_blocks - 1 else a + block)
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
    _isort(out)        # a search-back beat is the only one out of order
    return out


@njit(cache=True)
def refine_r(x, usable, peaks, fs, half_s, cols):
    """Move each feature peak to the R fiducial: the sample of largest summed,
    per-lead-normalised absolute deviation from the window mean, within +-half_s.
    ``x`` is (leads, samples), or (samples, leads) with ``cols``."""
    if cols:
        n, n_leads = x.shape
    else:
        n_leads, n = x.shape
    h = max(1, int(half_s * fs))
    out = np.empty(peaks.shape[0], np.int64)
    score = np.empty(2 * h + 1)
    seg = np.empty(2 * h + 1)
    for b in range(peaks.shape[0]):
        a = max(0, peaks[b] - h)
        z = min(n, peaks[b] + h + 1)
        m = z - a
        for i in range(m):
            score[i] = 0.0
        for l in range(n_leads):
            if not usable[l]:
                continue
            # the lead's window as src[o:o + m]: its row, or (``cols``) a contiguous copy
            # of its column, so the loops below read a unit-stride array either way
            if cols:
                for i in range(m):
                    seg[i] = x[a + i, l]
                src = seg
                o = 0
            else:
                src = x[l]
                o = a
            # mean, minimum and maximum in one pass: fl(v - mean) is monotone in v, so
            # the largest |v - mean| is reached at the minimum or the maximum
            mean = 0.0
            lo = src[o]
            hi = lo
            for i in range(o, o + m):
                v = src[i]
                mean += v
                lo = v if v < lo else lo
                hi = v if v > hi else hi
            mean /= m
            d1 = abs(hi - mean)
            d2 = abs(lo - mean)
            mx = d1 if d1 > d2 else d2
            if mx <= 0.0:
                continue
            for i in range(m):
                score[i] += abs(src[o + i] - mean) / mx
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


_EXP = np.int64(0x7FF0000000000000)
_MAG = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True)
def _finite_range(v):
    """Minimum and maximum of the finite values of a 1-D array (inf, -inf when none);
    the slow path of the scans, for rows that hold NaN or inf."""
    a = np.inf
    z = -np.inf
    for i in range(v.shape[0]):
        w = v[i]
        if np.isfinite(w):
            a = w if w < a else a
            z = w if w > z else z
    return a, z


@njit(cache=True)
def scan_rows(x):
    """Per row: number of non-finite samples, minimum and maximum of the finite ones
    (inf / -inf for a row without any).

    Works on the bit patterns (integer operations vectorise, floating-point min/max
    reductions do not without fastmath): a double is NaN or inf when its exponent bits
    are all set, and ``b ^ ((b >> 63) & 0x7fff...)`` maps doubles to int64 in the same
    order (it flips the magnitude bits of negative numbers), so integer min/max give
    the float min/max exactly. ``x`` must be C-contiguous."""
    L, n = x.shape
    nbad = np.zeros(L, np.int64)
    lo = np.empty(L)
    hi = np.empty(L)
    for l in range(L):
        lo[l] = np.inf
        hi[l] = -np.inf
    if n == 0:
        return nbad, lo, hi
    xv = x.view(np.int64)
    out2 = np.empty(2, np.int64)
    of = out2.view(np.float64)
    for l in range(L):
        c = 0
        kmin = np.int64(0x7FFFFFFFFFFFFFFF)
        kmax = -kmin - 1
        for i in range(n):
            b = xv[l, i]
            c += (b & _EXP) == _EXP
            key = b ^ ((b >> 63) & _MAG)
            kmin = key if key < kmin else kmin
            kmax = key if key > kmax else kmax
        if c == 0:
            out2[0] = kmin ^ ((kmin >> 63) & _MAG)
            out2[1] = kmax ^ ((kmax >> 63) & _MAG)
            lo[l] = of[0]
            hi[l] = of[1]
            continue
        # some non-finite samples: count them, range over the rest
        nbad[l] = c
        lo[l], hi[l] = _finite_range(x[l])
    return nbad, lo, hi


@njit(cache=True)
def scan_cols(xt):
    """:func:`scan_rows` of ``xt.T`` for a C-contiguous (samples, leads) array, i.e. a
    Fortran-ordered (leads, samples) record read in memory order (no transposing copy);
    same bit-pattern keys, so the same counts and ranges."""
    n, L = xt.shape
    nbad = np.zeros(L, np.int64)
    lo = np.empty(L)
    hi = np.empty(L)
    for l in range(L):
        lo[l] = np.inf
        hi[l] = -np.inf
    if n == 0:
        return nbad, lo, hi
    xv = xt.view(np.int64)
    kmin = np.empty(L, np.int64)
    kmax = np.empty(L, np.int64)
    for l in range(L):
        kmin[l] = np.int64(0x7FFFFFFFFFFFFFFF)
        kmax[l] = np.int64(-0x7FFFFFFFFFFFFFFF - 1)
    for i in range(n):
        for l in range(L):
            b = xv[i, l]
            nbad[l] += (b & _EXP) == _EXP
            key = b ^ ((b >> 63) & _MAG)
            kmin[l] = key if key < kmin[l] else kmin[l]
            kmax[l] = key if key > kmax[l] else kmax[l]
    out2 = np.empty(2, np.int64)
    of = out2.view(np.float64)
    for l in range(L):
        if nbad[l] == 0:
            out2[0] = kmin[l] ^ ((kmin[l] >> 63) & _MAG)
            out2[1] = kmax[l] ^ ((kmax[l] >> 63) & _MAG)
            lo[l] = of[0]
            hi[l] = of[1]
            continue
        lo[l], hi[l] = _finite_range(xt[:, l])
    return nbad, lo, hi


def detect(x, usable_in, fs, sos, refractory_s, half_s):
    """The whole detector for one block in one kernel call: range check of the leads,
    fused feature, peak picking, R refinement, duplicates removed.

    ``x`` (float64, C-contiguous) must be free of NaN/inf: when it is not, returns
    (empty, number of non-finite samples) and the caller cleans it first. Otherwise
    (R indices, 0). A lead is used when ``usable_in`` and its range exceeds 1e-6.
    """
    return detect_kernel(x, usable_in, fs, sos, refractory_s, half_s, True, False)


def detect_clean(x, usable, fs, sos, refractory_s, half_s):
    """:func:`detect` for input already scanned: ``x`` free of NaN/inf and ``usable``
    already False for flat leads (as ``qrs._clean_rows`` returns them). R indices."""
    return detect_kernel(x, usable, fs, sos, refractory_s, half_s, False, False)[0]


def detect_clean_cols(xt, usable, fs, sos, refractory_s, half_s):
    """:func:`detect_clean` of ``xt.T`` for a C-contiguous (samples, leads) array ``xt``
    (a Fortran-ordered record read in memory order, no transposing copy): the same R
    indices."""
    return detect_kernel(xt, usable, fs, sos, refractory_s, half_s, False, True)[0]


@njit(cache=True)
def detect_kernel(x, usable_in, fs, sos, refractory_s, half_s, scan, cols):
    """:func:`detect` (``scan`` True) and :func:`detect_clean` (False) in one kernel: a
    single compiled entry point for both (a kernel that calls other kernels compiles
    them again inside itself, so one such caller instead of two halves the work), and
    one dispatch per block (a detection takes tens of microseconds per lead). ``x`` is
    (leads, samples), or (samples, leads) with ``cols`` (:func:`detect_clean_cols`)."""
    if cols:
        n, L = x.shape
    else:
        L, n = x.shape
    empty = np.zeros(0, np.int64)
    usable = usable_in.copy()
    if scan:
        # only the row layout is scanned here (:func:`detect`); ``cols`` input comes
        # scanned (:func:`detect_clean_cols`), so scan_cols is not compiled in again
        nbad, lo, hi = scan_rows(x)
        tot = 0
        for l in range(L):
            tot += nbad[l]
        if tot > 0:
            return empty, tot
        for l in range(L):
            if n > 0 and not (hi[l] - lo[l] > 1e-6):
                usable[l] = False
    anyu = False
    for l in range(L):
        anyu = anyu or usable[l]
    if n < int(0.5 * fs) or not anyu:
        return empty, 0
    feat = _qrs_feature(x, fs, sos, usable, cols)
    peaks = pick_beats(feat, fs, refractory_s)
    if peaks.shape[0] == 0:
        return peaks, 0
    return refine_unique(x, usable, peaks, fs, half_s, int(refractory_s * fs * 0.8), cols), 0


@njit(cache=True)
def refine_unique(x, usable, peaks, fs, half_s, gap, cols):
    """:func:`refine_r`, sorted, repeats dropped: two feature peaks can refine onto one
    sample or nearby samples of one complex, so exact repeats are dropped, then the
    first of any pair closer than ``gap`` samples is kept (compared with the previous
    distinct index). R indices."""
    r = refine_r(x, usable, peaks, fs, half_s, cols)
    _isort(r)          # refinement moves a peak by at most half_s: nearly sorted
    out = np.empty(r.shape[0], np.int64)
    m = 0
    prev = -1
    for i in range(r.shape[0]):
        v = r[i]
        if i > 0 and v == r[i - 1]:
            continue
        if m == 0 or v - prev >= gap:
            out[m] = v
            m += 1
        prev = v
    return out[:m].copy()


@njit(cache=True)
def median_windows(y, leads, starts, w):
    """Sample-wise median over beats of the windows ``y[l, s:s+w]``, for each lead in
    ``leads`` and each start in ``starts`` (all windows inside the record); (len(leads), w).

    The beats' order at one sample is the starting order at the next: consecutive
    samples of a beat are close, so that order is nearly sorted and the insertion sort
    does about one step per beat instead of a quarter of the beat count. The median of
    the same values is the same number however they were sorted (even counts: the
    mean of the two middle values, as numpy).
    """
    nl = leads.shape[0]
    nm = starts.shape[0]
    out = np.empty((nl, w))
    if nm == 0:
        for li in range(nl):
            for i in range(w):
                out[li, i] = np.nan
        return out
    perm = np.empty(nm, np.int64)
    buf = np.empty(nm)
    for li in range(nl):
        l = leads[li]
        for k in range(nm):
            perm[k] = k
        for i in range(w):
            for k in range(nm):
                q = perm[k]
                v = y[l, starts[q] + i]
                j = k
                while j > 0 and buf[j - 1] > v:
                    buf[j] = buf[j - 1]
                    perm[j] = perm[j - 1]
                    j -= 1
                buf[j] = v
                perm[j] = q
            if nm % 2 == 1:
                out[li, i] = buf[nm // 2]
            else:
                out[li, i] = 0.5 * (buf[nm // 2 - 1] + buf[nm // 2])
    return out
