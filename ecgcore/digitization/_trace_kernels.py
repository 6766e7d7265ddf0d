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
            cand = best[r - 1] + w_gap * (1.0 - g) + w_step
            if cand < best[r]:
                best[r] = cand
                src[r] = src[r - 1]
        for r in range(h - 2, -1, -1):
            g = ink[r, c]
            if ink[r, c - 1] > g:
                g = ink[r, c - 1]
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
def column_points(ink, path, thr, half_width, envelope=True):  # pragma: no cover - numba
    """Sub-column (x, y) points along ``path`` from the vertical ink runs.

    Parameters
    ----------
    ink : float32 (h, w); path : int64 (w,) row per column.
    thr : float, ink level that counts as stroke.
    half_width : float, half the stroke thickness (rows) trimmed from run tips.

    Returns
    -------
    x, y : float64 arrays (columns, rows) of at most 2 w points, x increasing;
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
        for r in range(t, b + 1):
            s += r * ink[r, c]
            sw += ink[r, c]
        cen[c] = s / sw if sw > 0 else p
    xs = np.empty(2 * w, np.float64)
    ys = np.empty(2 * w, np.float64)
    good = np.zeros(2 * w, np.bool_)
    n = 0
    for c in range(w):
        t = top[c] + half_width
        b = bot[c] - half_width
        good[n] = on_ink[c]
        good[n + 1] = on_ink[c]
        if b - t < 1.0 or not envelope:
            xs[n] = c
            ys[n] = cen[c]
            n += 1
            continue
        pl = cen[c - 1] if c > 0 else cen[c]
        pr = cen[c + 1] if c < w - 1 else cen[c]
        m = 0.5 * (t + b)
        if pl > m and pr > m:
            xs[n] = c
            ys[n] = t   # a peak: both neighbours lower on the page, keep the tip
            n += 1
        elif pl < m and pr < m:
            xs[n] = c
            ys[n] = b   # a trough
            n += 1
        else:
            # a steep edge: the ink-weighted centre of the run (two-point entry/exit
            # placements zig-zag on anti-aliased strokes)
            xs[n] = c
            ys[n] = cen[c]
            n += 1
    return xs[:n], ys[:n], good[:n], on_ink
