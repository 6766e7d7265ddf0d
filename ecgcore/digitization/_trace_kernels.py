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
    ptr = np.empty((h, w), np.int32)
    prev = np.empty(h, np.float64)
    best = np.empty(h, np.float64)
    src = np.empty(h, np.int32)
    node = np.empty(h, np.float64)
    for r in range(h):
        d = (r - base_row) / base_scale
        node[r] = w_base * d * d
        prev[r] = node[r] + 1.0 - ink[r, 0]
        ptr[r, 0] = r
    for c in range(1, w):
        for r in range(h):
            best[r] = prev[r]
            src[r] = r
        # downward sweep: reach row r from r-1 by passing through row r of this column
        for r in range(1, h):
            g = ink[r, c]
            if ink[r, c - 1] > g:
                g = ink[r, c - 1]
            # half-covered pixels count as stroke: a thin, anti-aliased QRS edge at low
            # resolution is never fully dark, and a tall one must not cost more than
            # cutting across the paper under it
            g = 2.0 * g if g < 0.5 else 1.0
            cand = best[r - 1] + w_gap * (1.0 - g) + w_step
            if cand < best[r]:
                best[r] = cand
                src[r] = src[r - 1]
        for r in range(h - 2, -1, -1):
            g = ink[r, c]
            if ink[r, c - 1] > g:
                g = ink[r, c - 1]
            g = 2.0 * g if g < 0.5 else 1.0
            cand = best[r + 1] + w_gap * (1.0 - g) + w_step
            if cand < best[r]:
                best[r] = cand
                src[r] = src[r + 1]
        for r in range(h):
            prev[r] = best[r] + node[r] + 1.0 - ink[r, c]
            ptr[r, c] = src[r]
    path = np.empty(w, np.int64)
    r = 0
    for k in range(1, h):
        if prev[k] < prev[r]:
            r = k
    total = prev[r]
    for c in range(w - 1, -1, -1):
        path[c] = r
        r = ptr[r, c]
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
def column_points(ink, wt, path, thr, half_width, envelope=True):  # pragma: no cover - numba
    """Sub-pixel (x, y) points of the stroke centre line along ``path``.

    Parameters
    ----------
    ink : float32 (h, w); path : int64 (w,) row per column.
    wt : float32 (h, w), weights for the centres (``ink`` before its noise floor:
        anti-aliased edge pixels carry the sub-pixel position).
    thr : float, ink level that counts as stroke.
    half_width : float, half the stroke thickness (rows) trimmed from run tips.
    envelope : bool, keep peak and trough tips (else the run centre only).

    Returns
    -------
    x, y : float64 arrays (columns, rows), x increasing. A flat column gives one
        point, its ink-weighted row centre. A steep column (a vertical ink run
        longer than the stroke: a QRS edge) gives one point per row of its run,
        at that row's ink-weighted column centre: on a steep edge the stroke is
        crossed across its width by rows, not by columns, so the row centre is
        the sub-pixel centre line while a column centroid would average the edge
        over the stroke's width and smear it in time. A peak or trough keeps its
        tip (run end less half a stroke).
    good : bool per point, False where the path crossed paper (to interpolate over);
    on_ink : bool (w,), whether the path pixel is ink.
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
    reach = int(2.0 * half_width + 2.0)
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
    return xs[:n][order], ys[:n][order], good[:n][order], on_ink
