"""numba kernels of the raster tracer (imported lazily by :mod:`.raster` only).

* :func:`dp_trace` -- one row per image column through an ink-probability map by
  dynamic programming (Viterbi). The transition from row ``r'`` in column
  ``c-1`` to row ``r`` in column ``c`` costs the *missing ink* along the vertical
  segment between them, so steep QRS edges (a vertical run of ink inside one
  column) are free while jumps across paper are expensive. Because that cost is
  a sum along rows, the minimum over ``r'`` is two linear sweeps (a 1-D distance
  transform), so a lead costs O(height x width) instead of O(height^2 x width).
* :func:`column_points` -- turns the path into sub-column (x, y) points using
  the vertical ink run around the path in each column: a peak keeps the run's
  tip, a steep edge becomes two points (entry and exit), a flat stretch the
  ink-weighted centre. This preserves QRS extrema that a column mean flattens.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Half widths (px) from which the flanks of merged spikes are read (see column_points).
# With a row's run counted as merged once it is wider than the stroke (below), 100-dpi
# pages (rho 0.3-0.45) merge their spikes' flanks too: 0.3 reads them there (blurred
# 100-dpi pages 13.6 -> 14.2 dB, ecg-image-kit 100-dpi pages 18.5 -> 18.8 against 0.7).
_FLANK_MIN_RHO = 0.3


# Ink from which a pixel counts as fully stroke when the path moves vertically through
# it: half-covered pixels in general (a thin, anti-aliased QRS edge at low resolution is
# never fully dark, and a tall one must not cost more than cutting across the paper
# under it), and from a quarter in the darkest pixel of its row's neighbourhood, the
# centre of a faint stroke. A 0.6-pt line at 100 dpi blurred by 0.8 px peaks at ink
# 0.3-0.5: at one half, following both flanks of a 50-row QRS cost more than crossing
# the few paper columns under it, and the complexes were cut off (blurred, rotated
# 100-dpi pages 7.7 dB; 10.5 with the quarter). Only the ridge pixel: the anti-aliased
# fringe beside a dark stroke made cheap let paths slide down beside the stroke
# (ecg-image-kit scans -0.7 dB with the quarter everywhere, unchanged with it on ridges).
_FULL_INK = 0.5
_FULL_INK_RIDGE = 0.25


@njit(cache=True, nogil=True)
def _column_shares(left, mid, right, out):  # pragma: no cover - numba
    """How fully each pixel of column ``mid`` counts as stroke for a vertical move through
    it (see ``_FULL_INK``), given the columns ``left`` and ``right`` beside it."""
    for r in range(mid.shape[0]):
        v = mid[r]
        ridge = (v >= left[r]) & (v >= right[r])
        g = v * (1.0 / _FULL_INK_RIDGE if ridge else 1.0 / _FULL_INK)
        out[r] = g if g < 1.0 else 1.0


@njit(cache=True, nogil=True)
def dp_trace(ink, base_row, base_scale, w_base, w_gap, w_step):  # pragma: no cover - numba
    """Minimum-cost path, one row per column.

    Parameters
    ----------
    ink : float32 (h, w), values in [0, 1]; 1 = certainly trace.
    base_row : float, the row of the expected baseline (0 mV) in ``ink``.
    base_scale : float, rows over which the baseline penalty reaches ``w_base``.
    w_base : float, weight of ((row - base_row) / base_scale)^2.
    w_gap : float, cost per row of vertical move through non-ink.
    w_step : float, cost per row of any vertical move.

    Returns
    -------
    path : int64 (w,), total cost : float
    """
    h, w = ink.shape
    # columns contiguous: every sweep below runs down one column
    cols = np.empty((w + 2, h), np.float32)
    for r in range(h):
        for c in range(w):
            cols[c + 1, r] = ink[r, c]
    cols[0, :] = 0.0             # the borders: no neighbour beyond them
    cols[w + 1, :] = 0.0
    ptr = np.empty((w, h), np.int32)
    prev = np.empty(h, np.float64)
    best = np.empty(h, np.float64)
    src = np.empty(h, np.int32)
    node = np.empty(h, np.float64)
    through = np.empty(h, np.float64)
    share = np.empty(h, np.float64)
    cur = np.empty(h, np.float64)
    _column_shares(cols[0], cols[1], cols[2], share)
    for r in range(h):
        d = (r - base_row) / base_scale
        node[r] = w_base * d * d
        prev[r] = node[r] + 1.0 - cols[1, r]
        ptr[0, r] = r
    for c in range(1, w):
        col = cols[c + 1]
        # the cost of each row's step between column c-1 and c: the larger stroke share
        _column_shares(cols[c], col, cols[c + 2], cur)
        for r in range(h):
            g = cur[r] if cur[r] > share[r] else share[r]
            through[r] = w_gap * (1.0 - g) + w_step
            share[r] = cur[r]
            best[r] = prev[r]
            src[r] = r
        # downward sweep: reach row r from r-1 by passing through row r of this column
        for r in range(1, h):
            cand = best[r - 1] + through[r]
            if cand < best[r]:
                best[r] = cand
                src[r] = src[r - 1]
        for r in range(h - 2, -1, -1):
            cand = best[r + 1] + through[r]
            if cand < best[r]:
                best[r] = cand
                src[r] = src[r + 1]
        for r in range(h):
            prev[r] = best[r] + node[r] + 1.0 - col[r]
            ptr[c, r] = src[r]
    path = np.empty(w, np.int64)
    r = 0
    for k in range(1, h):
        if prev[k] < prev[r]:
            r = k
    total = prev[r]
    for c in range(w - 1, -1, -1):
        path[c] = r
        r = ptr[c, r]
    return path, total


@njit(cache=True, nogil=True)
def _row_centre(ink, wt, r, c, thr, reach):  # pragma: no cover - numba
    """Ink-weighted column centre of the horizontal ink run through (r, c) in row r;
    -1 when the run is wider than ``reach`` (a row that cuts a peak's tip or a flat
    stretch, not a steep edge)."""
    w = ink.shape[1]
    a = c
    b = c
    while a > 0 and ink[r, a - 1] >= thr:
        a -= 1
        if c - a > reach:
            return -1.0
    while b < w - 1 and ink[r, b + 1] >= thr:
        b += 1
        if b - a + 1 > reach:
            return -1.0
    if b - a + 1 > reach:
        return -1.0
    # one anti-aliased pixel on each side carries the sub-pixel position of the edges
    if a > 0:
        a -= 1
    if b < w - 1:
        b += 1
    s = 0.0
    sw = 0.0
    for x in range(a, b + 1):
        s += x * wt[r, x]
        sw += wt[r, x]
    return s / sw if sw > 0 else float(c)


@njit(cache=True, nogil=True)
def _edge(ink, wt, r, x, thr, s):  # pragma: no cover - numba
    """Sub-pixel boundary (half-darkness crossing) of the ink run in row ``r`` that holds
    column ``x`` or lies within 2 px inward of it, on the run's left (``s = -1``) or
    right (``s = +1``) side; -1 when there is none (or the run reaches the border)."""
    w = ink.shape[1]
    if ink[r, x] < thr:
        k = 0
        while k < 2 and 0 <= x - s < w and ink[r, x] < thr:
            x -= s
            k += 1
        if ink[r, x] < thr:
            return -1.0
    while 0 <= x + s < w and ink[r, x + s] >= thr:
        x += s
    if not 0 <= x + s < w:
        return -1.0
    # the run ends where the ink map passes its threshold; the boundary is where the
    # darkness passes half, at most two pixels further in
    k = x
    while 0 <= k - s < w and (x - k) * s < 2 and wt[r, k] < 0.5:
        k -= s
    lo, hi = wt[r, k + s], wt[r, k]
    if lo < 0.5 <= hi:
        return k + s - s * (0.5 - lo) / (hi - lo)
    return x + 0.5 * s


@njit(cache=True, nogil=True)
def _row_flank(ink, wt, r, c, thr, rho):  # pragma: no cover - numba
    """Centre of a steep flank in a row whose run also holds another stroke (the two
    flanks of a narrow spike merged by a thick stroke): the run's left (right) boundary
    moved in by the stroke's half width measured along the row, ``rho * sqrt(1 + s^2)``
    for a boundary of slope ``s`` columns per row. A boundary that is not steep and
    straight over rows r-1..r+1 (the run's end on a flat stretch) gives no point, nor
    does a centre past the run's middle (the cap round a spike's apex).
    Returns the flank centre nearest column ``c``, or -1."""
    h = ink.shape[0]
    if r < 1 or r > h - 2:
        return -1.0
    el = _edge(ink, wt, r, c, thr, -1)
    er = _edge(ink, wt, r, c, thr, 1)
    if el < 0 or er < 0:
        return -1.0
    mid = 0.5 * (el + er)
    best = -1.0
    for side in (-1, 1):
        e1 = el if side < 0 else er
        # the neighbours' boundaries on the same side, searched from this row's
        e0 = _edge(ink, wt, r - 1, int(e1 + 0.5), thr, side)
        e2 = _edge(ink, wt, r + 1, int(e1 + 0.5), thr, side)
        if e0 < 0 or e2 < 0 or abs(e1 - e0) > 1.5 or abs(e2 - e1) > 1.5 or \
                abs(e2 - 2.0 * e1 + e0) > 0.75:
            continue
        s = 0.5 * (e2 - e0)
        x = e1 - side * rho * np.sqrt(1.0 + s * s)   # moved in from the boundary
        if side * (x - mid) < 0:   # past the run's middle
            continue
        if best < 0 or abs(x - c) < abs(best - c):
            best = x
    return best


@njit(cache=True, nogil=True)
def _steep_half_width(ink, wt, top, bot, thr, steep_len, reach):  # pragma: no cover - numba
    """Half the stroke's width across steep flanks: the median half length of the row
    runs (between half-darkness boundaries) where the stroke is near vertical (its
    centre moves under 0.3 px per row), each row counted in the column of its centre.
    That is the width the flank offsets need; a column's run on a flat stretch also
    holds the signal's jitter within the column and reads wider. 0 when under 8 rows."""
    h, w = ink.shape
    vals = np.empty(h * 4, np.float64)
    n = 0
    for c in range(w):
        if bot[c] - top[c] + 1 < steep_len:
            continue
        for r in range(top[c] + 1, bot[c]):
            if ink[r, c] < thr or n >= vals.shape[0]:
                continue
            el, er = _edge(ink, wt, r, c, thr, -1), _edge(ink, wt, r, c, thr, 1)
            if el < 0 or er < 0 or er - el > reach or abs(0.5 * (el + er) - c) >= 0.5:
                continue
            la, ra = _edge(ink, wt, r - 1, c, thr, -1), _edge(ink, wt, r - 1, c, thr, 1)
            lb, rb = _edge(ink, wt, r + 1, c, thr, -1), _edge(ink, wt, r + 1, c, thr, 1)
            if min(la, ra, lb, rb) < 0 or abs(lb + rb - la - ra) > 1.2:
                continue
            sl = 0.25 * (lb + rb - la - ra)   # columns per row
            vals[n] = 0.5 * (er - el) / np.sqrt(1.0 + sl * sl)
            n += 1
    if n < 8:
        return 0.0
    return np.median(vals[:n])


@njit(cache=True, nogil=True)
def column_points(ink, wt, path, thr, half_width, envelope=True,  # pragma: no cover
                  rho=0.0):
    """Sub-pixel (x, y) points of the stroke centre line along ``path``.

    Parameters
    ----------
    ink : float32 (h, w); path : int64 (w,) row per column.
    wt : float32 (h, w), weights for the centres (``ink`` before its noise floor:
        anti-aliased edge pixels carry the sub-pixel position).
    thr : float, ink level that counts as stroke.
    half_width : float, half the stroke thickness (rows) trimmed from run tips.
    envelope : bool, keep peak and trough tips (else the run centre only).
    rho : float, the stroke's half width (px) between its half-darkness boundaries,
        for the flanks of narrow spikes (below); negative: measured here
        (:func:`_steep_half_width`); under ``_FLANK_MIN_RHO`` (thin strokes, whose
        spikes barely merge): no flank points.

    Returns
    -------
    x, y : float64 arrays (columns, rows), x increasing. A flat column gives one
        point, its ink-weighted row centre. A steep column (a vertical ink run
        longer than the stroke: a QRS edge) gives one point per row of its run,
        at that row's ink-weighted column centre: on a steep edge the stroke is
        crossed across its width by rows, not by columns, so the row centre is
        the sub-pixel centre line while a column centroid would average the edge
        over the stroke's width and smear it in time. A peak or trough keeps its
        tip (run end less half a stroke). Where a thick stroke merges the two
        flanks of a narrow spike, a row's run spans both and has no centre; each
        flank's centre is then its outer boundary moved in by the half width
        (:func:`_row_flank`). Without them a spike's upper part kept only its
        tip and the column centres of the merged blob, which lie between the
        flanks: a 1.6-pt trace lost 6 dB on QRS complexes.
    good : bool per point, False where the path crossed paper (to interpolate over);
    on_ink : bool (w,), whether the path pixel is ink.
    rho : float, the half width used (0: none).
    """
    h, w = ink.shape
    top = np.empty(w, np.int64)
    bot = np.empty(w, np.int64)
    cen = np.empty(w, np.float64)
    on_ink = np.zeros(w, np.bool_)
    for c in range(w):
        p = path[c]
        t = p
        b = p
        if ink[p, c] >= thr:
            on_ink[c] = True
            while t > 0 and ink[t - 1, c] >= thr:
                t -= 1
            while b < h - 1 and ink[b + 1, c] >= thr:
                b += 1
        top[c] = t
        bot[c] = b
        s = 0.0
        sw = 0.0
        # one partly covered pixel beyond each end of the run carries the sub-pixel edge
        for r in range(max(0, t - 1), min(h, b + 2)):
            s += r * wt[r, c]
            sw += wt[r, c]
        cen[c] = s / sw if sw > 0 else p
    steep_len = 2.0 * half_width + 3.0
    # a row's run wider than the stroke's own thickness (2 x half_width + 1 px, the
    # vertical run of a flat stretch) holds more than one stroke: the two flanks of a
    # narrow spike. Its centre lies between them, so it gives no centre point (the flank
    # points come from _row_flank). At thickness + 1 px the runs of merged flanks one
    # pixel apart passed as one stroke and put the up-flank's points between the flanks:
    # QRS up-strokes read 0.5 px late (clean 200-dpi pages 22.3 -> 24.2 dB, ecg-image-kit
    # clean 23.4 -> 24.2, blurred 19.1 -> 21.6, blurred 100-dpi 11.9 -> 14.2)
    reach = int(2.0 * half_width + 1.0)
    if rho < 0:
        rho = _steep_half_width(ink, wt, top, bot, thr, steep_len, reach)
    cap = 0
    for c in range(w):
        cap += 1 + max(0, bot[c] - top[c] + 1)
    xs = np.empty(cap, np.float64)
    ys = np.empty(cap, np.float64)
    good = np.zeros(cap, np.bool_)
    n = 0
    for c in range(w):
        t = top[c] + half_width
        b = bot[c] - half_width
        if b - t < 1.0 or not envelope or not on_ink[c]:
            xs[n] = c
            ys[n] = cen[c]
            good[n] = on_ink[c]
            n += 1
            continue
        pl = cen[c - 1] if c > 0 else cen[c]
        pr = cen[c + 1] if c < w - 1 else cen[c]
        m = 0.5 * (t + b)
        lo = top[c]
        hi = bot[c]
        if pl > m and pr > m:
            xs[n] = c
            ys[n] = t   # a peak: both neighbours lower on the page, keep the tip
            good[n] = True
            n += 1
            lo = int(t + 1.0)
        elif pl < m and pr < m:
            xs[n] = c
            ys[n] = b   # a trough
            good[n] = True
            n += 1
            hi = int(b - 1.0)
        elif bot[c] - top[c] + 1 < steep_len:
            xs[n] = c
            ys[n] = cen[c]
            good[n] = True
            n += 1
            continue
        if bot[c] - top[c] + 1 < steep_len:
            continue
        n0 = n
        for r in range(lo, hi + 1):
            if ink[r, c] < thr:
                continue
            xc = _row_centre(ink, wt, r, c, thr, reach)
            if xc < 0 and rho >= _FLANK_MIN_RHO:
                xc = _row_flank(ink, wt, r, c, thr, rho)
            if xc >= c - 0.5 and xc < c + 0.5:   # each row point belongs to one column
                xs[n] = xc
                ys[n] = r
                good[n] = True
                n += 1
        if n == n0:   # no row crosses the stroke cleanly: the column centre
            xs[n] = c
            ys[n] = cen[c]
            good[n] = True
            n += 1
    order = np.argsort(xs[:n], kind="mergesort")
    return xs[:n][order], ys[:n][order], good[:n][order], on_ink, rho
