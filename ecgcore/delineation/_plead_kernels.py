"""numba kernel of the weak-lead P-offset rule on the median beat.

``p_template_abs`` is the compiled form of :func:`ecgcore.delineation.waves._p_template_abs`
(which documents the rule and stays as its readable reference): per record it is a few
dozen tiny array operations, whose numpy call overhead (about 0.15 ms a record) was a
tenth of the whole delineation. Sums use numpy's pairwise order and slices follow
Python's rules, so the result is bit-identical to the numpy version (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wave_kernels import _median_small   # np.median of buf[:k], sorting it in place


# numpy sums a contiguous run of at most 128 values with eight interleaved accumulators
# (longer runs are split in halves first); the wrapper in waves keeps runs within that
PAIRWISE_MAX = 128


@njit(cache=True, nogil=True)
def _pairwise(a, i0, n):
    """Sum of a[i0:i0+n], n <= 128, in numpy's pairwise order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i0 + i]
        return res
    r0, r1, r2, r3 = a[i0], a[i0 + 1], a[i0 + 2], a[i0 + 3]
    r4, r5, r6, r7 = a[i0 + 4], a[i0 + 5], a[i0 + 6], a[i0 + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[i0 + i]
        r1 += a[i0 + i + 1]
        r2 += a[i0 + i + 2]
        r3 += a[i0 + i + 3]
        r4 += a[i0 + i + 4]
        r5 += a[i0 + i + 5]
        r6 += a[i0 + i + 6]
        r7 += a[i0 + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i0 + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _row_sum(a, i0, n):
    # np.add.reduce over a row: the first element starts the sum, the rest is pairwise
    # (n - 1 <= PAIRWISE_MAX)
    if n <= 0:
        return 0.0
    return a[i0] + _pairwise(a, i0 + 1, n - 1)


@njit(cache=True, nogil=True)
def _slice_end(i, n):
    # one bound of a Python slice on a length n: negative indices wrap, then clip to 0..n
    if i < 0:
        i += n
        return i if i > 0 else 0
    return i if i < n else n


@njit(cache=True, nogil=True)
def _clip_slice(start, stop, n):
    """Python's slice bounds for [start:stop] on a length n (negative indices wrap)."""
    start = _slice_end(start, n)
    stop = _slice_end(stop, n)
    return start, (stop if stop > start else start)


@njit(cache=True, nogil=True)
def _median(v, k):
    """np.median of v[:k] (k > 0, no NaN) without touching v: an insertion sort of a
    float64 copy (exact for these integer sample indices and amplitudes; np.sort would
    cost seconds of compilation for a dozen values)."""
    buf = np.empty(k)
    for i in range(k):
        buf[i] = v[i]
    return _median_small(buf, k)


@njit(cache=True, nogil=True)
def p_template_abs(tmpl, on, off, q, fs, level_s, thr, weak_rel):
    """(d, weak) per row of ``tmpl``; see ``waves._p_template_abs``."""
    lu, w = tmpl.shape
    # (np.empty and loops rather than np.full and np.round: their numba implementations
    # cost seconds of compilation; np.int64 counters keep one signature per callee)
    d = np.empty(lu)
    weak = np.empty(lu)
    for i in range(lu):
        d[i] = np.nan
        weak[i] = np.nan
    rows = np.empty(lu, np.int64)
    von = np.empty(lu, np.int64)
    voff = np.empty(lu, np.int64)
    vq = np.empty(lu, np.int64)
    nr = np.int64(0)
    nq = np.int64(0)
    for i in range(lu):
        if on[i] >= 0 and off[i] >= 0:
            rows[nr] = i
            von[nr] = on[i]
            voff[nr] = off[i]
            nr += 1
        if q[i] >= 0:
            vq[nq] = q[i]
            nq += 1
    if nr < 3 or nq == 0:
        return d, weak
    mon = int(_median(von, nr))
    moff = int(_median(voff, nr))
    mq = int(_median(vq, nq))
    a0 = int(0.03 * fs)
    a1 = max(1, int(0.01 * fs))
    n_pr = max(1, int(level_s * fs))
    end = min(moff + int(0.02 * fs), w - 1)
    # below about 67 Hz the 30-10 ms TP window holds no sample: no TP level, no rule
    if a0 - a1 < 1 or mon - a0 < 0 or mq - n_pr < 0 or end <= mon:
        return d, weak
    lo = mon - a0
    xs, xe = _clip_slice(lo, max(end + 1, mq), w)           # x = tmpl[:, lo:max(end + 1, mq)]
    xw = xe - xs
    ts, te = _clip_slice(np.int64(0), a0 - a1, xw)
    ps, pe = _clip_slice(mq - n_pr - lo, mq - lo, xw)
    ss, se = _clip_slice(a0, end + 1 - lo, xw)
    nseg = se - ss
    ds, de = _clip_slice(np.int64(0), moff - mon + 1, nseg)
    if de - ds == 0:
        raise ValueError("empty P window")                  # numpy's argmax would raise too
    t = np.empty(nr, np.int64)
    amp = np.empty(nr)
    ok = np.zeros(nr, np.bool_)
    for k in range(nr):
        row = tmpl[rows[k]]
        tp = _row_sum(row, xs + ts, te - ts) / (a0 - a1)
        pr = _row_sum(row, xs + ps, pe - ps) / n_pr
        # P extremum: first maximum of |x - tp|; a NaN is numpy's argmax and max at once
        pk, best = ds, -1.0
        isnan = False
        for i in range(ds, de):
            v = abs(row[xs + ss + i] - tp)
            if v != v:
                pk, best, isnan = i, v, True
                break
            if i == ds or v > best:
                pk, best = i, v
        amp[k] = best
        tt = end - mon
        for i in range(pk, nseg):
            if abs(row[xs + ss + i] - pr) < thr:
                tt = i
                break
        t[k] = tt
        ok[k] = (not isnan) and np.isfinite(best) and np.isfinite(pr)
    n_ok = np.int64(0)
    for k in range(nr):
        if ok[k]:
            t[n_ok] = t[k]
            amp[n_ok] = amp[k]
            rows[n_ok] = rows[k]
            n_ok += 1
    if n_ok < 3:
        return d, weak
    mt = _median(t, n_ok)
    ma = _median(amp, n_ok)
    for k in range(n_ok):
        d[rows[k]] = t[k] - mt
        weak[rows[k]] = 1.0 if amp[k] < weak_rel * ma else 0.0
    return d, weak


@njit(cache=True, nogil=True)
def p_lead_stage(out, e8, e9, spread, own, absw, weak_on):
    """In place on ``out`` (L, nb, 9): the per-lead P stage of ``waves._p_lead_stage_reference``.

    Per beat, over the leads with a P onset and offset: the medians of both (rounded
    half to even); onsets moved to median + ``spread`` x (onset - median) through the
    onset mix (mean with the candidate, rounded, kept at or before the P peak and
    >= 0); weak leads' offsets (``e9`` > 0.5) to median + ``own`` x (offset - median) +
    ``absw`` x ``e8``; every such offset kept at or after the P peak and before the QRS
    onset.
    """
    L, nb = out.shape[0], out.shape[1]
    buf = np.empty(L)
    for b in range(nb):
        k = np.int64(0)
        for l in range(L):
            if out[l, b, 0] >= 0 and out[l, b, 2] >= 0:
                buf[k] = out[l, b, 0]
                k += 1
        if k == 0:
            continue
        mon = np.int64(np.rint(_median_small(buf, k)))
        k = np.int64(0)
        for l in range(L):
            if out[l, b, 0] >= 0 and out[l, b, 2] >= 0:
                buf[k] = out[l, b, 2]
                k += 1
        moff = np.int64(np.rint(_median_small(buf, k)))
        for l in range(L):
            on = out[l, b, 0]
            off = out[l, b, 2]
            if on < 0 or off < 0:
                continue
            nw = off
            if weak_on and e9[l, b] > 0.5:
                nw = np.int64(np.rint(moff + own * (off - moff) + absw * e8[l, b]))
            if spread != 1.0:
                c = np.int64(np.rint(2.0 * (mon + spread * (on - mon)))) - on
                if c >= 0:
                    v = np.int64(np.rint(0.5 * (on + c)))
                    if out[l, b, 1] >= 0 and v > out[l, b, 1]:
                        v = out[l, b, 1]
                    if v < 0:
                        v = 0
                    out[l, b, 0] = v
            c2 = 2 * nw - off
            if c2 >= 0:
                v = (off + c2) // 2
                if out[l, b, 3] >= 0 and v > out[l, b, 3] - 1:
                    v = out[l, b, 3] - 1
                if out[l, b, 1] >= 0 and v < out[l, b, 1]:
                    v = out[l, b, 1]
                out[l, b, 2] = v
